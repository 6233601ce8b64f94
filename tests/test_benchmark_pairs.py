"""benchmarks.pairs at its tiny size: both arms train on the same pairs, the table is complete."""

import pytest

from benchmarks.pairs import TINY, markdown, measure


def test_tiny_pairs_benchmark():
    r = measure(**TINY)
    bucketed, padded = r["arms"]["bucketed"], r["arms"]["padded"]
    assert padded["keys"] == 1 and bucketed["keys"] == TINY["buckets"]
    assert bucketed["plan_waste"] < padded["plan_waste"]
    # Same pairs, same epochs: the same real target tokens went through both arms.
    assert sum(e["target_tokens"] for e in bucketed["epochs"]) == pytest.approx(
        sum(e["target_tokens"] for e in padded["epochs"]))
    assert len(r["ratios"]) == TINY["epochs"] and r["median_ratio"] > 0
    assert {"greedy", "beam"} <= set(bucketed) and bucketed["greedy"]["pairs"] == 12
    table = markdown(r)
    for text in ("| bucketed | 3 |", "| padded | 1 |", "median", "| beam 2 |", "load average"):
        assert text in table
