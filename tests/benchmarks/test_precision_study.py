"""benchmarks/precision.py: both arms run the app with the precision they name."""

import pytest

from bucketrnn.graphs.precision import cpu_has_bf16


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU lacks AVX512_BF16")
def test_precision_benchmark_tiny():
    from benchmarks.precision import measure

    result = measure(rounds=1, limit=60, steps=2, threads=1,
                     extra=("dataset.valid_limit=40", "dataset.test_limit=40"))
    assert [(row["arm"], row["precision"]) for row in result["rows"]] == [("fp32", "fp32"),
                                                                          ("bf16", "bf16")]
    assert len(result["ratios"]) == len(result["cpu_ratios"]) == 1
    assert all(row["tokens_per_s"] > 0 and row["steps"] == 2 for row in result["rows"])
    assert all(row["threads"].startswith("as set by the user (OMP_NUM_THREADS=1)")
               for row in result["rows"])
    assert abs(result["ppl_differences"][0]) < 0.02
