"""The Hydra app itself under the launcher: two dist_sync workers, one server, loopback."""

import json
import re
import subprocess
import sys

from _app import ROOT, TINY

from bucketrnn.training import checkpoint as ckpt


def _two_workers(run_dir, *overrides):
    """Run the app on two dist_sync workers (one server); check that both evaluated the same
    parameters on the whole validation set; its summary."""
    app = [sys.executable, "-m", "bucketrnn", "trainer.kvstore=dist_sync", "trainer.epochs=1",
           "plots=false", f"hydra.run.dir={run_dir}", *overrides] + TINY
    cmd = [sys.executable, "-m", "bucketrnn.distributed.launch", "--workers", "2", "--servers", "1",
           "--timeout", "150", "--"] + app
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout + done.stderr
    valid = {m.group(1): m.group(2)
             for m in re.finditer(r"\[worker (\d)\]\s+valid\s+(loss [\d.]+)", out)}
    assert set(valid) == {"0", "1"}, out[-3000:]
    assert valid["0"] == valid["1"]
    return json.loads((run_dir / "summary.json").read_text())


def test_app_trains_on_two_dist_sync_workers(tmp_path):
    summary = _two_workers(tmp_path / "run", "trainer.max_steps=4")
    assert summary["steps"] == 4
    assert summary["config"]["trainer"]["kvstore"] == "dist_sync"


def test_accumulated_updates_on_two_dist_sync_workers_stay_equal(tmp_path):
    # One allreduce per update of 2 batches: the workers exchange gradients at the same steps
    # (or one would wait for good: the launcher's timeout) and hold the same parameters.
    run_dir = tmp_path / "run"
    summary = _two_workers(run_dir, "trainer.max_steps=3", "trainer.accumulate=2")
    assert summary["steps"] == 4  # max_steps=3 rounded up to the second update
    meta = ckpt.load(str(run_dir / "checkpoint.npz")).meta
    assert (meta["accumulate"], meta["history"]["updates"]) == (2, 2)
