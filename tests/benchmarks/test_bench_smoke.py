"""Smoke test of ``python -m benchmarks``: every arm and every extra, tiny, in a temporary dir.

It keeps the benchmark from rotting; it measures nothing. The file took 97 CPU-seconds (188 s
wall, 2-core AMD EPYC at load average 7-9, shared), 61 of them the tiny run of every arm; that
run took 47 CPU-seconds once the foreach study's smoke size shrank (``--tiny``; load 1.3).
"""

import json
import os
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_benchmarks_tiny_run_writes_every_arm_and_study_and_rerenders(tmp_path):
    # One tiny run with two studies: every arm, every extra and the study sections (each run
    # of the driver measures the GEMM peaks in four processes of its own, so the studies ride
    # along instead of needing a second run).
    out = tmp_path / "docs"
    devnull = stat.S_ISCHR(os.stat(os.devnull).st_mode)
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--tiny", "--studies",
                           "pairs,foreach", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "benchmarks.json").read_text())
    from benchmarks.arms import ARMS

    assert set(result["arms"]) == set(ARMS)
    for name, arm in result["arms"].items():
        assert "error" not in arm, (name, arm)
        assert arm["real_tokens"] > 0 and arm["tokens_per_s"] > 0, name
        assert 0.0 <= arm["waste_window"] < 1.0, name
        assert arm["graphs_compiled"] >= 1, name
    assert result["arms"]["ceiling"]["waste_window"] == 0.0
    # The thread arm runs on one thread; every other arm on bucketrnn's default, all cores.
    from bucketrnn.cores import physical_cores

    assert result["arms"]["bucketrnn_1thread"]["threads"] == 1
    assert result["arms"]["bucketrnn_default"]["threads"] == physical_cores()
    extras = result["extras"]
    for when in ("start", "end"):
        peaks = extras["gemm_peak"][when]
        assert peaks["all_cores"]["threads"] == physical_cores(), peaks
        assert peaks["one_thread"]["threads"] == 1 and peaks["one_thread"]["flops"] > 1e8
    assert "## Utilisation" in (out / "benchmarks.md").read_text()
    assert len(extras["loader_alone"]["rows"]) == 4
    assert [r["fraction"] for r in extras["scaling"]] == [0.1, 0.3, 1.0]
    assert all("error" not in r for r in extras["scaling"])
    assert [r["num_buckets"] for r in extras["compile_sweep"]["rows"]] == [1, 2, 4]
    assert extras["profile"]["step_unrolled"] > 0
    # The profile extra ran MXNet's profiler, which deletes the file it is given (as root, a
    # /dev/null given to it was replaced by a regular file): /dev/null is what it was.
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode) == devnull
    studies = extras["studies"]
    assert set(studies) == {"pairs", "foreach"}
    assert all("error" not in s for s in studies.values()), studies
    md = (out / "benchmarks.md").read_text()
    assert "python -m benchmarks --tiny" in md and "| arm |" in md and "nproc" in md
    assert result["machine"]["nproc"] >= 1 and result["machine"]["cpu_model"]
    assert "## Study: foreach" in md and "| heavy-tailed | K=4 | foreach |" in md
    assert "## Study: pairs" in md and "python -m benchmarks.pairs --tiny" in md

    # The report, the studies' sections included, can be re-rendered from the raw figures.
    again = tmp_path / "again"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--from-json",
                           str(out / "benchmarks.json"), "--out", str(again)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (again / "benchmarks.md").read_text() == md


def test_threads_benchmark_tiny():
    from benchmarks.threads import measure

    # 20 held-out sentences and a 12-unit model: the full held-out sets of the default model
    # were 90% of the time; the thread setting of each arm is what is tested.
    result = measure(rounds=1, limit=60, steps=2, held_out=20,
                     extra=["model.hidden_size=12", "model.num_layers=1",
                            "bucketing.num_buckets=3"])
    arms = [row["arm"] for row in result["rows"]]
    assert arms == ["1 thread", "all cores"] and len(result["ratios"]) == 1
    assert result["rows"][0]["threads"].startswith("as set by the user (OMP_NUM_THREADS=1)")
    assert "all physical cores" in result["rows"][1]["threads"]
    assert all(row["tokens_per_s"] > 0 for row in result["rows"])


def test_an_unknown_study_is_refused():
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--studies", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown studies ['nope']" in proc.stderr


def test_contention_benchmark_tiny(tmp_path):
    """Both settings alone and beside the busy loop; the
    settings reach the app whatever the caller's shell sets; the target reads the ratio."""
    from benchmarks import contention, report

    assert contention.setting_env("spin=300000+threads=1", {"OMP_WAIT_POLICY": "PASSIVE",
                                                             "OMP_NUM_THREADS": "2"}) == {
        "GOMP_SPINCOUNT": "300000", "OMP_NUM_THREADS": "1"}
    with pytest.raises(ValueError, match="unknown setting 'spin=fast'"):
        contention.setting_env("spin=fast", {})
    out = tmp_path / "c.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.contention", "--settings",
                           "default,spin=300000", "--rounds", "1", "--limit", "60", "--steps",
                           "2", "--held-out", "20", "--json", str(out),
                           # a 12-unit model: the settings and the busy loop are what is tested
                           "--override", "model.hidden_size=12", "--override",
                           "model.num_layers=1", "--override", "bucketing.num_buckets=3"],
                          cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_WAIT_POLICY="ACTIVE"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(x["setting"], x["busy"]) for x in rows] == [
        ("default", False), ("default", True), ("spin=300000", False), ("spin=300000", True)]
    assert all(x["tokens_per_s"] > 0 for x in rows)
    assert rows[0]["threads"].endswith("idle threads spin briefly, then sleep (GOMP_SPINCOUNT="
                                       "1000; set OMP_WAIT_POLICY or GOMP_SPINCOUNT to choose)")
    assert "wait as set by the user (GOMP_SPINCOUNT=300000)" in rows[2]["threads"]
    # The busy loop ran beside the run (it held a core) and only then.
    assert all(x["busy_cpu_seconds"] > 0.5 for x in rows if x["busy"])
    assert all(x["busy_cpu_seconds"] is None for x in rows if not x["busy"])
    f = result["settings"]["default"]
    assert f["ratios"] == [rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]]
    assert "busy / alone median" in proc.stdout
    target = report.targets({}, {"studies": {"contention": {"result": result}}})
    assert [t["measured"] for t in target] == [round(f["median"], 3)]
    assert target[0]["goal"] == 0.45 and target[0]["met"] == (f["median"] >= 0.45)
    assert "| round | setting | beside a busy loop |" in contention.markdown(result)


def test_id_check_benchmark_tiny():
    from benchmarks import id_check

    result = id_check.measure(rounds=1, steps=3)
    assert set(result) == {"graphs check", "no check", "loader check"}
    assert all(len(figs["cpu"]) == 1 and figs["wall"][0] > 0 for figs in result.values())
    assert "| graphs check |" in id_check.report(result)
