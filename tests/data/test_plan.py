import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucketrnn.data.plan import (
    bucket_batch_sizes,
    exp_boundaries,
    find_outliers,
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
    with pytest.raises(ValueError,
                       match=r"example 2 has length 9, longer than the largest bucket \(5\)"):
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
        (dict(max_tokens=4, batch_size=None),
         r"max_tokens=4 leaves no room for a bucket of length 5"),
        (dict(batch_size_multiple=0), r"batch_size_multiple must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_buckets([1, 3, 3, 5], **{"num_buckets": 2, **kwargs})


def test_bad_lengths():
    with pytest.raises(ValueError, match=r"the dataset is empty: got 0 examples"):
        plan_buckets([])
    with pytest.raises(ValueError, match=r"example 1 is an empty sequence \(length 0\)"):
        plan_buckets([3, 0])
    with pytest.raises(TypeError, match="lengths must be integers"):
        plan_buckets([1.5, 2.0])


def test_fingerprint_changes_with_what_shapes_batches():
    a = plan_buckets([1, 2, 3, 4], num_buckets=2, batch_size=2)
    b = plan_buckets([1, 2, 3, 4], num_buckets=2, batch_size=3)
    assert a.fingerprint() == plan_buckets([1, 2, 3, 4], num_buckets=2, batch_size=2).fingerprint()
    assert a.fingerprint() != b.fingerprint()


# ---------------------------------------------------------------------------------------------
# outliers: judged before any boundary is chosen
# ---------------------------------------------------------------------------------------------
def _sentences_and_one_huge_line(n=300, huge=10**6, seed=0):
    lengths = np.random.default_rng(seed).integers(3, 40, size=n + 1)
    lengths[123] = huge
    return lengths


def test_one_pathological_length_is_refused_fast_with_the_example_and_the_fix():
    lengths = _sentences_and_one_huge_line()
    rest = int(np.delete(lengths, 123).max())
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        plan_buckets(lengths, num_buckets=8, batch_size=32)
    assert time.perf_counter() - start < 2.0
    msg = str(info.value)
    assert "example 123 has length 1000000" in msg
    assert f"rest of the data needs ({rest} at most" in msg
    assert f"max_length={rest} with on_overflow='truncate' or 'drop'" in msg
    assert "outliers='allow'" in msg and "BucketLoader and plan_buckets take both" in msg


@pytest.mark.parametrize("strategy", ["optimal", "quantile", "exp"])
def test_every_planned_strategy_judges_outliers(strategy):
    with pytest.raises(ValueError, match="example 123 has length 1000000"):
        plan_buckets(_sentences_and_one_huge_line(), num_buckets=4, strategy=strategy)


def test_outlier_opt_outs_max_length_fixed_boundaries_and_allow():
    lengths = _sentences_and_one_huge_line()
    rest = int(np.delete(lengths, 123).max())
    cut = plan_buckets(lengths, num_buckets=8, max_length=rest, on_overflow="truncate")
    assert cut.keys[-1] == rest and cut.num_truncated == 1 and cut.num_examples == 301
    dropped = plan_buckets(lengths, num_buckets=8, max_length=rest, on_overflow="drop")
    assert dropped.num_dropped == 1 and dropped.num_examples == 300
    with pytest.raises(ValueError, match="example 123 has length 1000000, longer than the largest"):
        plan_buckets(lengths, num_buckets=8, max_length=rest)  # on_overflow='error'
    with pytest.raises(ValueError, match="example 123 has length 5000, far beyond"):
        plan_buckets(lengths, num_buckets=8, max_length=5000, on_overflow="truncate")
    fixed = plan_buckets(lengths, strategy="fixed", boundaries=[10, 20, 10**6])
    assert fixed.keys == (10, 20, 10**6)
    allowed = plan_buckets(lengths, num_buckets=8, outliers="allow")
    assert allowed.keys[-1] == 10**6
    with pytest.raises(ValueError, match=r"outliers must be one of 'error', 'allow', got"):
        plan_buckets(lengths, outliers="ignore")
    with pytest.raises(ValueError, match="max_length is not used with strategy='fixed'"):
        plan_buckets(lengths, strategy="fixed", boundaries=[10, 40], max_length=40)


@pytest.mark.parametrize("bad", [10**30, 2**31, 2**63, -1, 0])
def test_max_length_out_of_range_names_max_length_not_the_lengths(bad):
    with pytest.raises(ValueError, match=rf"max_length must be an integer in \[1, 2147483648\), "
                                         rf"got max_length={bad}"):
        plan_buckets([3, 4, 5, 9], num_buckets=2, batch_size=2, max_length=bad)
    with pytest.raises(TypeError, match="max_length must be an int, got max_length=4.0"):
        plan_buckets([3, 4, 5, 9], num_buckets=2, batch_size=2, max_length=4.0)
    top = plan_buckets([3, 4, 5, 9], num_buckets=2, batch_size=2, max_length=2**31 - 1)
    assert top.keys[-1] == 9


def test_bucket_loader_blames_max_length_not_the_lengths():
    from bucketrnn.data.loader import BucketLoader

    seqs = [np.arange(n) for n in (3, 4, 5, 9)]
    with pytest.raises(ValueError, match="max_length must be an integer in .*max_length=10{30}"):
        BucketLoader(seqs, batch_size=2, num_buckets=2, max_length=10**30)


def test_pair_outliers_name_source_or_target():
    lengths = np.stack([_sentences_and_one_huge_line(huge=20), _sentences_and_one_huge_line()], 1)
    with pytest.raises(ValueError, match="example 123 has target length 1000000"):
        plan_buckets(lengths, num_buckets=4)
    with pytest.raises(ValueError, match="example 123 has source length 1000000"):
        plan_buckets(lengths[:, ::-1].copy(), num_buckets=4)


def test_outlier_rule_reference_limit_and_rest():
    found = find_outliers(_sentences_and_one_huge_line())
    assert found.indices.tolist() == [123] and found.lengths.tolist() == [10**6]
    assert found.excused == 5 and found.limit == 1024 and found.rest_max == 39
    # A few pathological examples cannot raise the reference: all three are found.
    lengths = _sentences_and_one_huge_line()
    lengths[[7, 8]] = [3000, 2 * 10**6]
    assert find_outliers(lengths).indices.tolist() == [8, 123, 7]
    # The floor keeps short data whole; one example is never an outlier.
    assert not find_outliers([2] * 50 + [1000])
    assert not find_outliers([10**7])
    assert find_outliers([5, 10**6]).indices.tolist() == [1]
    with pytest.raises(ValueError, match="factor must be a finite number > 1, got factor=nan"):
        find_outliers([1, 2], factor=float("nan"))


def test_natural_long_tails_are_not_outliers():
    rng = np.random.default_rng(0)
    tails = {
        "uniform 2..83 (the tests' synthetic data)": rng.integers(2, 84, size=50_000),
        "lognormal sigma 1": np.maximum(1, rng.lognormal(3.0, 1.0, 1_000_000)).astype(np.int64),
        "lognormal sigma 1.5, 10**4": np.maximum(1, rng.lognormal(3.0, 1.5, 10_000)).astype(int),
        "zipf a=3": rng.zipf(3.0, 1_000_000),
        "zipf a=2.5, 1000 examples": rng.zipf(2.5, 1000),
    }
    for name, lengths in tails.items():
        found = find_outliers(lengths)
        assert not found, (name, found)
    plan_buckets(tails["lognormal sigma 1"], num_buckets=8)


# ---------------------------------------------------------------------------------------------
# bad arguments accepted silently before
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [1, 1.0, 0.5, 0, -2.0, float("nan"), float("inf"), True, "2"])
def test_exp_ratio_must_be_finite_and_above_one(ratio):
    values, counts = length_histogram(np.arange(1, 101))
    match = rf"ratio must be a finite number > 1 .*got ratio={ratio!r}".replace("(", r"\(")
    with pytest.raises(ValueError, match=match.replace(")", r"\)")):
        exp_boundaries(values, counts, 4, ratio=ratio)
    with pytest.raises(ValueError, match=r"ratio must be a finite number > 1"):
        plan_buckets(np.arange(1, 101), num_buckets=4, strategy="exp", ratio=ratio)


def test_exp_huge_ratio_stays_finite():
    values, counts = length_histogram(np.arange(1, 101))
    assert exp_boundaries(values, counts, 8, ratio=1e300).tolist() == [1, 100]


@pytest.mark.parametrize("name", ["num_buckets", "batch_size", "max_tokens", "batch_size_multiple"])
@pytest.mark.parametrize("value", [True, 2.0, float("nan")])
def test_integer_arguments_refuse_bool_float_and_nan_with_a_type_error(name, value):
    # The library's one policy: not an integer is a TypeError, out of range a ValueError.
    with pytest.raises(TypeError, match=rf"{name} must be an int, got {name}="):
        plan_buckets([1, 3, 3, 5], **{"num_buckets": 2, name: value})


@pytest.mark.parametrize("name", ["num_buckets", "batch_size", "max_tokens", "batch_size_multiple"])
def test_integer_arguments_refuse_negative_with_a_value_error(name):
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= 1, got {name}=-1"):
        plan_buckets([1, 3, 3, 5], **{"num_buckets": 2, name: -1})


def test_num_buckets_is_checked_for_fixed_boundaries_too():
    with pytest.raises(ValueError, match="num_buckets must be an integer >= 1, got num_buckets=0"):
        plan_buckets([1, 3], num_buckets=0, strategy="fixed", boundaries=[3])


@pytest.mark.parametrize("fn", [quantile_boundaries, exp_boundaries])
def test_public_strategies_refuse_a_bad_num_buckets(fn):
    values, counts = length_histogram(np.arange(1, 11))
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"num_buckets must be an integer >= 1, got "
                                             f"num_buckets={bad!r}"):
            fn(values, counts, bad)
    for bad in (True, 2.5):
        with pytest.raises(TypeError, match=f"num_buckets must be an int, got "
                                            f"num_buckets={bad!r}"):
            fn(values, counts, bad)
    sizes = np.full(values.size, 4)
    with pytest.raises(ValueError, match="num_buckets must be an integer >= 1"):
        optimal_boundaries(values, counts, 0, sizes)


def test_num_buckets_above_distinct_lengths_is_one_rule_for_every_planned_strategy():
    for strategy in ("optimal", "quantile", "exp"):
        with pytest.raises(ValueError, match=r"num_buckets=4 is more than the 3 distinct lengths"):
            plan_buckets([1, 3, 3, 5], num_buckets=4, strategy=strategy)


@pytest.mark.parametrize("fn", [optimal_boundaries, quantile_boundaries, exp_boundaries])
def test_public_strategies_refuse_more_buckets_than_distinct_lengths(fn):
    # The rule plan_buckets applies, in the public strategy functions too: no silently fewer
    # boundaries, no empty exp buckets (3 distinct lengths and 5 buckets once gave 5 edges).
    values, counts = length_histogram([4, 4, 6, 9])
    args = (np.ones(values.size, dtype=np.int64),) if fn is optimal_boundaries else ()
    with pytest.raises(ValueError, match=r"num_buckets=5 is more than the 3 distinct lengths in "
                                         r"the data; use num_buckets <= 3"):
        fn(values, counts, 5, *args)
    bounds = fn(values, counts, 3, *args).tolist()
    # exp edges need not be lengths of the data; the others choose among them.
    assert bounds == ([6, 8, 9] if fn is exp_boundaries else [4, 6, 9])


def test_histogram_and_batch_sizes_refuse_bad_lengths():
    with pytest.raises(TypeError, match="lengths must be integers, got dtype float64"):
        length_histogram([1.5, 2.7])
    with pytest.raises(TypeError, match="lengths must be integers, got dtype float64"):
        length_histogram([float("nan")])
    with pytest.raises(ValueError, match=r"example 1 is an empty sequence \(length -3\)"):
        length_histogram([2, -3])
    with pytest.raises(ValueError, match=r"the dataset is empty: got 0 examples"):
        length_histogram([])
    with pytest.raises(ValueError, match=r"bucket_lengths must be >= 1, got 0 at index 0"):
        bucket_batch_sizes([0], batch_size=2)
    with pytest.raises(ValueError, match="give batch_size or max_tokens, got neither"):
        bucket_batch_sizes([10, 20])
    with pytest.raises(TypeError, match="bucket_lengths must be integers"):
        bucket_batch_sizes([10.5], batch_size=2)


def test_a_batch_larger_than_mxnet_can_hold_is_refused_before_any_allocation():
    # 10**9 rows x 5 steps: no array of the batch could exist (MXNet: 2**31 - 1 elements); the
    # plan refuses it, so no sampler ever allocates 10**9 fill slots.
    with pytest.raises(ValueError, match=r"batch_size=1000000000 gives bucket 5 batches of "
                                         r"1000000000 rows x 5 steps = 5000000000 elements, more "
                                         r"than MXNet's limit of 2147483647"):
        plan_buckets([3, 4, 5], num_buckets=2, batch_size=10**9)
    with pytest.raises(ValueError, match=r"max_tokens=4294967296 gives bucket 1 batches of "
                                         r"4294967296 rows x 1 steps"):
        plan_buckets([1, 1], num_buckets=1, max_tokens=2**32, batch_size=None)
    with pytest.raises(ValueError, match=r"bucket \(3, 9\) batches of 300000000 rows x 9 steps"):
        plan_buckets(np.array([[3, 9], [3, 2]]), num_buckets=1, batch_size=3 * 10**8)
    # At the limit itself a plan is made (an ordinary batch size stays far below it).
    plan = plan_buckets([1, 2], num_buckets=1, batch_size=(2**31 - 1) // 2)
    assert plan.batch_sizes == ((2**31 - 1) // 2,)
