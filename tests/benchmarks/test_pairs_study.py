"""benchmarks.pairs at its tiny size: both arms train on the same pairs, the table is complete."""

import pytest

from benchmarks.pairs import TINY, markdown, measure


@pytest.fixture(scope="module")
def tiny():
    """The study at its tiny size, measured once: two tests read it."""
    return measure(**TINY)


def test_tiny_pairs_benchmark(tiny):
    r = tiny
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


def test_length_breakdown_counts_every_held_out_pair_once():
    from benchmarks.pairs import length_breakdown

    r = length_breakdown(bucketed_epochs=1, padded_epochs=1, pairs=100, test_pairs=10,
                         max_length=12, hidden=8, buckets=3, bands=((3, 6), (7, 12)))
    for arm in ("bucketed", "padded"):
        test = r[arm]["test"]
        assert sum(b["pairs"] for b in test["bands"].values()) == 10
        assert 0 <= test["exact_match"] <= 1 and 0 <= test["ran_on"] <= 10


def test_the_learning_rate_halves_each_epoch_as_in_the_app(tiny):
    """The arms train on TrainLoop's schedule (lr * lr_decay ** epoch, lr_decay=0.5 by default);
    lr_decay=1 keeps the constant rate the benchmark had before issue 20."""
    halved = tiny
    flat = measure(**{**TINY, "lr_decay": 1.0})
    assert halved["config"]["lr_decay"] == 0.5 and flat["config"]["lr_decay"] == 1.0
    for arm in ("bucketed", "padded"):
        first = [r["arms"][arm]["epochs"][0]["loss"] for r in (halved, flat)]
        second = [r["arms"][arm]["epochs"][1]["loss"] for r in (halved, flat)]
        assert first[0] == first[1]  # epoch 0: the same rate, the same run
        assert second[0] != second[1]  # epoch 1: half the rate
