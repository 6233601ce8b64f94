"""benchmarks.pairplan at its tiny size: both plans train the same pairs, the table is complete."""

import pytest

from benchmarks.pairplan import TINY, markdown, measure


def test_tiny_pairplan_benchmark():
    r = measure(**TINY)
    for corpus in ("toy", "weak"):
        out = r["corpora"][corpus]
        one, two = out["arms"]["source-side"], out["arms"]["two-sided"]
        assert len(two["keys"]) <= len(one["keys"]) <= TINY["buckets"]
        assert two["computed_slots"] <= one["computed_slots"]
        # The same pairs went through both plans, every round.
        for a, b in zip(one["epochs"], two["epochs"]):
            assert a["real_tokens"] == pytest.approx(b["real_tokens"])
        assert len(out["speedup"]["per_round"]) == TINY["rounds"]
    assert r["corpora"]["weak"]["correlation"] < r["corpora"]["toy"]["correlation"]
    table = markdown(r)
    for text in ("| source-side |", "| two-sided |", "toy (r = ", "weak (r = "):
        assert text in table
