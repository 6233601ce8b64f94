"""Smoke test of benchmarks/distributed.py: one tiny round of the three configurations."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_distributed_benchmark_reports_every_configuration():
    cmd = [sys.executable, "-m", "benchmarks.distributed", "--steps", "2", "--probe", "1",
           "--warmup", "1", "--repeat", "1", "--examples", "400", "--buckets", "2",
           "--batch-size", "8", "--ceiling-loops", "1000000"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    rows = report["rows"]
    assert [(r["kvstore"], r["workers"]) for r in rows] == [("local", 1), ("dist_sync", 1),
                                                            ("dist_sync", 2)]
    assert all(r["tokens_per_s"] > 0 and r["steps_per_worker"] == 2 for r in rows)
    # The probe steps ran and timed both halves of a distributed step.
    assert all(r["compute_ms_per_step"] > 0 and r["sync_ms_per_step"] > 0 for r in rows[1:])
    assert rows[2]["speedup_vs_1_dist_sync"] > 0 and "target 1.6x" in report["verdict"]
