import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucketrnn.buckets import (
    bucket_batch_sizes,
    exp_boundaries,
    length_histogram,
    optimal_boundaries,
    plan_buckets,
    quantile_boundaries,
)


def slot_cost(values, counts, sizes, bounds):
    """Computed slots of a boundary choice, written plainly (the definition, not the DP)."""
    total, lo = 0, 0
    for b in bounds:
        hi = int(np.searchsorted(values, b, side="right"))
        n = int(counts[lo:hi].sum())
        t = hi - 1
        total += -(-n // int(sizes[t])) * int(sizes[t]) * int(values[t]) if n else 0
        lo = hi
    return total


def brute_force(values, counts, num_buckets, sizes):
    d = len(values)
    best = None
    for k in range(1, num_buckets + 1):
        for comb in itertools.combinations(range(d - 1), k - 1):
            bounds = [values[i] for i in comb] + [values[-1]]
            cost = slot_cost(values, counts, sizes, bounds)
            best = cost if best is None else min(best, cost)
    return best


@settings(max_examples=250, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(1, 40), st.integers(1, 30)), min_size=1, max_size=8,
                  unique_by=lambda t: t[0]),
    num_buckets=st.integers(1, 8),
    batch_size=st.integers(1, 16),
    token_budget=st.booleans(),
)
def test_optimal_equals_brute_force(data, num_buckets, batch_size, token_budget):
    data.sort()
    values = np.array([v for v, _ in data])
    counts = np.array([c for _, c in data])
    k = min(num_buckets, len(values))
    sizes = bucket_batch_sizes(values, batch_size, 48 if token_budget else None)
    bounds = optimal_boundaries(values, counts, k, sizes)
    assert len(bounds) <= k
    assert bounds[-1] == values[-1]
    assert np.all(np.diff(bounds) > 0)
    assert slot_cost(values, counts, sizes, bounds) == brute_force(values, counts, k, sizes)


def test_optimal_is_the_plans_computed_slots_and_beats_other_strategies():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 84, size=5000)
    opt = plan_buckets(lengths, num_buckets=8, batch_size=64)
    for strategy in ("quantile", "exp"):
        other = plan_buckets(lengths, num_buckets=8, batch_size=64, strategy=strategy)
        assert opt.computed_slots <= other.computed_slots
    values, counts = length_histogram(lengths)
    assert opt.computed_slots == slot_cost(values, counts, np.full(values.size, 64), opt.boundaries)


def test_optimal_may_use_fewer_buckets_when_more_would_only_add_fill():
    # 64 examples of length 10 and 64 of length 11 at batch 64: splitting costs nothing in fill
    # and saves time padding; one example of each costs two fill-heavy batches if split.
    plan = plan_buckets([10, 11], num_buckets=2, batch_size=64)
    assert plan.keys == (11,)
    assert plan.computed_slots == 64 * 11


def test_plan_counts_keys_stats_and_interval_convention():
    plan = plan_buckets([1, 2, 2, 3, 5, 8], strategy="fixed", boundaries=[2, 5, 8], batch_size=2)
    # Bucket k holds boundaries[k-1] < l <= boundaries[k].
    assert plan.keys == (2, 5, 8)
    assert plan.counts == (3, 2, 1)
    assert plan.real_tokens == 21
    assert plan.slots == 3 * 2 + 2 * 5 + 8
    assert plan.computed_slots == 4 * 2 + 2 * 5 + 2 * 8
    assert plan.waste == pytest.approx(1 - 21 / 34)
    assert plan.assign([1, 2, 3, 5, 6, 8]).tolist() == [0, 0, 1, 1, 2, 2]
    text = repr(plan)
    assert "waste=" in text and "padding" in text and "batches" in text


def test_token_budget_batch_sizes_and_multiple():
    plan = plan_buckets([10, 20, 40], strategy="fixed", boundaries=[10, 20, 40],
                        batch_size=None, max_tokens=200, batch_size_multiple=4)
    assert plan.batch_sizes == (20, 8, 4)
    capped = plan_buckets([10, 20, 40], strategy="fixed", boundaries=[10, 20, 40],
                          batch_size=12, max_tokens=200)
    assert capped.batch_sizes == (12, 10, 5)


def test_quantile_and_exp_boundaries_cover_the_longest():
    values, counts = length_histogram(np.arange(1, 101))
    q = quantile_boundaries(values, counts, 4)
    assert q.tolist() == [25, 50, 75, 100]
    e = exp_boundaries(values, counts, 5, ratio=2.0)
    assert e[-1] == 100 and np.all(np.diff(e) > 0)
    widths = np.diff(np.concatenate([[1], e]))
    assert widths[-1] > widths[0]  # geometric: later buckets are wider


def test_pairs_key_is_source_boundary_and_longest_target():
    lengths = np.array([[3, 5], [4, 2], [9, 7], [10, 3]])
    plan = plan_buckets(lengths, num_buckets=2, batch_size=2)
    assert plan.keys == ((4, 5), (10, 7))
    assert plan.assign(lengths).tolist() == [0, 0, 1, 1]


def test_overflow_policies():
    lengths = [2, 3, 9]
    with pytest.raises(ValueError, match=r"example 2 has length 9, longer than the largest bucket \(5\)"):
        plan_buckets(lengths, strategy="fixed", boundaries=[3, 5])
    dropped = plan_buckets(lengths, strategy="fixed", boundaries=[3, 5], on_overflow="drop")
    assert dropped.num_dropped == 1 and dropped.counts == (2, 0)
    cut = plan_buckets(lengths, strategy="fixed", boundaries=[3, 5], on_overflow="truncate")
    assert cut.num_truncated == 1 and cut.counts == (2, 1) and cut.real_tokens == 2 + 3 + 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch_size=0), r"batch_size must be an integer >= 1, got batch_size=0"),
        (dict(batch_size=None), r"give batch_size or max_tokens"),
        (dict(num_buckets=0), r"num_buckets must be an integer >= 1, got num_buckets=0"),
        (dict(num_buckets=5), r"num_buckets=5 is more than the 3 distinct lengths"),
        (dict(strategy="best"), r"strategy must be one of .*got strategy='best'"),
        (dict(strategy="fixed", boundaries=[5, 3]), r"strictly increasing.*\[5, 3\]"),
        (dict(strategy="fixed", boundaries=[3, 3, 5]), r"strictly increasing.*\[3, 3, 5\]"),
        (dict(strategy="fixed"), r"needs boundaries"),
        (dict(boundaries=[3]), r"only used with strategy='fixed'"),
        (dict(on_overflow="ignore"), r"on_overflow must be one of"),
        (dict(max_tokens=4, batch_size=None), r"max_tokens=4 leaves no room for a bucket of length 5"),
        (dict(batch_size_multiple=0), r"batch_size_multiple must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_buckets([1, 3, 3, 5], **{"num_buckets": 2, **kwargs})


def test_bad_lengths():
    with pytest.raises(ValueError, match="lengths is empty"):
        plan_buckets([])
    with pytest.raises(ValueError, match=r"lengths must be >= 1, got length 0 at index 1"):
        plan_buckets([3, 0])
    with pytest.raises(TypeError, match="lengths must be integers"):
        plan_buckets([1.5, 2.0])


def test_fingerprint_changes_with_what_shapes_batches():
    a = plan_buckets([1, 2, 3, 4], num_buckets=2, batch_size=2)
    b = plan_buckets([1, 2, 3, 4], num_buckets=2, batch_size=3)
    assert a.fingerprint() == plan_buckets([1, 2, 3, 4], num_buckets=2, batch_size=2).fingerprint()
    assert a.fingerprint() != b.fingerprint()
