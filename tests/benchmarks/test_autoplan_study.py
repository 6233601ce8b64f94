"""benchmarks/autoplan.py's arithmetic and report, on figures given by hand (the timed run is
`python -m benchmarks.autoplan`)."""

import numpy as np
import pytest

from benchmarks.autoplan import distributions, markdown, merge, plan_seconds
from bucketrnn.data.plan import plan_buckets


def test_plan_seconds_sums_each_buckets_batches_and_one_compile_per_graph():
    plan = plan_buckets([2, 2, 2, 5, 5], num_buckets=2, batch_size=2)  # keys 2 (2 batches), 5
    costs = {2: (0.1, 1.0), 5: (0.3, 2.0)}
    got = plan_seconds(plan, costs, epochs=3)
    assert got["seconds"] == pytest.approx(3 * (2 * 0.1 + 1 * 0.3) + 3.0)
    assert got["compile_share"] == pytest.approx(3.0 / got["seconds"])
    assert got["tokens_per_s"] == pytest.approx(3 * 16 / got["seconds"])


def test_the_synthetic_distributions_are_ptb_sized_and_one_is_heavy_tailed():
    d = distributions(n=2000)
    assert {k: v.size for k, v in d.items()} == {"ptb": 2000, "lognormal": 2000, "pareto": 2000}
    p = d["pareto"]
    assert p.min() >= 2 and np.quantile(p, 0.999) > 6 * np.median(p)


def test_markdown_merges_jobs_and_marks_the_best_fixed_k():
    def job(name, auto, k8, k16):
        arms = {"auto": {"tokens_per_s": auto, "buckets": 11, "compile_share": 0.02},
                "K=8": {"tokens_per_s": k8, "buckets": 8}, "K=16": {"tokens_per_s": k16,
                                                              "buckets": 16}}
        best = "K=8" if k8 > k16 else "K=16"
        return {"ks": [8, 16], "rows": 32, "epochs": 2.0, "threads": "1",
                "load_before": [1.0, 1.0, 1.0], "load_after": [2.0, 1.0, 1.0],
                "distributions": [{"name": name, "examples": 10, "max_length": 9,
                                   "arms": arms, "best_fixed": best,
                                   "auto_vs_best": auto / max(k8, k16), "probe_seconds": 1.5,
                                   "probe_share": 0.01}]}
    text = markdown(merge([job("ptb", 990, 1000, 900), job("pareto", 500, 400, 450)]))
    assert "| ptb (N=10, max 9) | 990 (K=11) | **1,000** | 900 | 0.990 | 2.0% |" in text
    assert "| pareto (N=10, max 9) | 500 (K=11) | 400 | **450** | 1.111 |" in text
    assert "Load average before (1.0, 1.0, 1.0), after (2.0, 1.0, 1.0)" in text
