"""benchmarks/step.py: the arms time the formulation they name and agree on the loss."""

import os
import stat

from benchmarks.step import LOSSES, markdown, measure


def test_step_study_tiny():
    # Two buckets, not the study's eight: every arm compiles each bucket's graph of the
    # 10,000-word model, and one bucket shows the formulations as well as eight.
    devnull = stat.S_ISCHR(os.stat(os.devnull).st_mode)
    result = measure(rounds=1, steps=2, arms=("before", "after"), threads=1, limit=200,
                     buckets=2, loss_rounds=1, profile=5, log=None)
    # MXNet's profiler deletes the file it is given: handed /dev/null by a root process, it
    # replaced the machine's /dev/null with a regular file. Still the device it was.
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode) == devnull
    assert [row["arm"] for row in result["rows"]] == ["before", "after"]
    assert all(row["steps"] == 2 and row["tokens_per_s"] > 0 and 0 < row["peak_fraction"] < 1
               for row in result["rows"])
    # The same model on the same batches from the same parameters, one formulation each: the
    # losses differ by float rounding only.
    assert result["summary"]["after"]["max_loss_difference"] < 1e-4
    # The before arm really runs Gluon's unroll: more operators per step than the hoisted one.
    calls = {arm: sum(op["calls"] for op in p["operators"] if op["name"] == "FullyConnected")
             for arm, p in result["profiles"].items()}
    assert calls["before"] > calls["after"] > 0
    assert set(result["loss"]["cpu_ms"]) == set(LOSSES)
    md = markdown(result)
    assert "| before |" in md and "| after |" in md and "| SoftmaxOutput |" in md
