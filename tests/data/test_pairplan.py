"""The two-sided plan of (src, tgt) pairs (bucketrnn.data.pairplan through plan_buckets)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bucketrnn.data.plan import optimal_boundaries, plan_buckets
from bucketrnn.data.sampler import BucketBatchSampler, FillSlot

SETTINGS = settings(max_examples=150, deadline=None)


def pairs_of(draw_src, draw_tgt):
    return np.stack([np.asarray(draw_src), np.asarray(draw_tgt)], axis=1).astype(np.int64)


@st.composite
def pair_lengths(draw, max_len=9, max_n=40):
    n = draw(st.integers(1, max_n))
    src = draw(st.lists(st.integers(1, max_len), min_size=n, max_size=n))
    tgt = draw(st.lists(st.integers(1, max_len), min_size=n, max_size=n))
    return pairs_of(src, tgt)


def _splits(values):
    """Every way to cut sorted distinct ``values`` into contiguous groups (their last values)."""
    d = len(values)
    for r in range(d):
        for cuts in itertools.combinations(range(d - 1), r):
            yield [values[c] for c in cuts] + [values[-1]]


def _group_cost(n, key_len, batch):
    return -(-n // batch) * batch * key_len


def brute_force(lengths, num_buckets, batch):
    """Least computed slots over every source split and per-source-bucket target split."""
    src, tgt = lengths[:, 0], lengths[:, 1]
    best = None
    for bounds in _splits(sorted(set(src.tolist()))):
        lo = 0
        per_bucket = []  # for each source bucket: {number of keys: least cost}
        for b in bounds:
            inside = (src > lo) & (src <= b)
            t = tgt[inside]
            options = {}
            for tb in _splits(sorted(set(t.tolist()))):
                tlo, cost = 0, 0
                for top in tb:
                    cost += _group_cost(int(((t > tlo) & (t <= top)).sum()), b + top, batch)
                    tlo = top
                options[len(tb)] = min(cost, options.get(len(tb), cost))
            per_bucket.append(options)
            lo = b
        for combo in itertools.product(*(o.items() for o in per_bucket)):
            if sum(m for m, _ in combo) <= num_buckets:
                cost = sum(c for _, c in combo)
                best = cost if best is None else min(best, cost)
    return best


@SETTINGS
@given(pair_lengths(max_len=5, max_n=14), st.integers(1, 4), st.integers(1, 4))
def test_two_sided_plan_is_optimal_against_brute_force(lengths, num_buckets, batch):
    distinct = len({tuple(r) for r in lengths.tolist()})
    k = min(num_buckets, distinct)
    plan = plan_buckets(lengths, num_buckets=k, batch_size=batch)
    assert plan.computed_slots == brute_force(lengths, k, batch)
    assert plan.num_buckets <= k


@SETTINGS
@given(pair_lengths(), st.integers(1, 8), st.integers(1, 6))
def test_every_pair_exactly_once_in_a_key_that_holds_it(lengths, num_buckets, batch):
    distinct = len({tuple(r) for r in lengths.tolist()})
    plan = plan_buckets(lengths, num_buckets=min(num_buckets, distinct), batch_size=batch)
    ids = plan.example_buckets
    assert (ids >= 0).all() and sum(plan.counts) == len(lengths)
    keys = np.array(plan.keys)
    assert (lengths <= keys[ids]).all()
    # The plan's assignment is the one assign() gives, the sampler's.
    assert np.array_equal(plan.assign(lengths), ids)
    sampler = BucketBatchSampler(lengths, plan, shuffle=True, seed=3)
    seen = [i for batch in sampler for i in batch if not isinstance(i, FillSlot)]
    assert sorted(seen) == list(range(len(lengths)))
    # Each pair is in the source bucket of the convention, then the smallest target key.
    bounds = np.array(plan.boundaries)
    for i, (s, t) in enumerate(lengths.tolist()):
        sk = int(bounds[np.searchsorted(bounds, s)])
        holding = [k for k in plan.keys if k[0] == sk and k[1] >= t]
        assert plan.keys[ids[i]] == min(holding)


@SETTINGS
@given(pair_lengths(max_len=20, max_n=60), st.integers(1, 8), st.integers(1, 6))
def test_never_more_slots_than_the_source_side_plan(lengths, num_buckets, batch):
    k = min(num_buckets, len(set(lengths[:, 0].tolist())))
    values, counts = np.unique(lengths[:, 0], return_counts=True)
    one_sided = plan_buckets(lengths, strategy="fixed", batch_size=batch,
                             boundaries=optimal_boundaries(values, counts, k,
                                                           np.full(values.size, batch)).tolist())
    two_sided = plan_buckets(lengths, num_buckets=k, batch_size=batch)
    assert two_sided.computed_slots <= one_sided.computed_slots


def test_a_long_target_no_longer_pads_its_source_bucket():
    # 99 short targets and one long one, all with the same source length: one key (5, 16)
    # padded the 99 to 16 steps; two keys split them.
    lengths = pairs_of([5] * 100, [2] * 99 + [16])
    plan = plan_buckets(lengths, num_buckets=2, batch_size=1)
    assert plan.keys == ((5, 2), (5, 16))
    assert plan.counts == (99, 1)
    assert plan.waste == 0.0


def test_one_dimensional_plans_unchanged():
    lengths = [3, 3, 4, 9, 10, 12, 2, 7]
    plan = plan_buckets(lengths, num_buckets=3, batch_size=2)
    assert plan.keys == (4, 9, 12) and plan.counts == (4, 2, 2)


def test_num_buckets_is_bounded_by_distinct_pairs():
    lengths = pairs_of([3, 3, 3], [1, 2, 2])
    assert plan_buckets(lengths, num_buckets=2, batch_size=1).keys == ((3, 1), (3, 2))
    with pytest.raises(ValueError, match=r"num_buckets=3 is more than the 2 distinct "
                                         r"\(source, target\) length pairs"):
        plan_buckets(lengths, num_buckets=3, batch_size=1)


def test_target_overflow_policies_on_a_two_sided_plan():
    plan = plan_buckets(pairs_of([3, 3, 8], [2, 5, 2]), num_buckets=3, batch_size=1)
    assert plan.keys == ((3, 2), (3, 5), (8, 2))
    other = pairs_of([8, 3], [4, 1])
    with pytest.raises(ValueError, match="example 0 has target length 4, longer than its "
                                         "bucket's target length 2"):
        plan.assign(other)
    assert plan.assign(other, on_overflow="drop").tolist() == [-1, 0]
    assert plan.assign(other, on_overflow="truncate").tolist() == [2, 0]


def test_more_distinct_lengths_than_candidates_still_plans_every_pair():
    rng = np.random.default_rng(0)
    lengths = pairs_of(rng.integers(1, 300, 5000), rng.integers(1, 200, 5000))
    plan = plan_buckets(lengths, num_buckets=8, batch_size=16)
    keys = np.array(plan.keys)
    assert plan.num_buckets <= 8
    assert (lengths <= keys[plan.example_buckets]).all()


def test_fixed_two_sided_keys_are_planned_as_given():
    lengths = pairs_of([3, 3, 8, 2], [2, 5, 2, 1])
    plan = plan_buckets(lengths, strategy="fixed", boundaries=[(8, 2), (3, 5), (3, 2)],
                        batch_size=2)
    assert plan.keys == ((3, 2), (3, 5), (8, 2)) and plan.boundaries == (3, 8)
    assert plan.example_buckets.tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="must not repeat a key"):
        plan_buckets(lengths, strategy="fixed", boundaries=[(3, 5), (3, 5), (8, 2)])
    with pytest.raises(ValueError, match=r"example 0 has target length 4"):
        plan_buckets(pairs_of([8], [4]), strategy="fixed", boundaries=[(3, 5), (8, 2)])


def test_an_evaluation_loader_of_pairs_meets_the_training_keys():
    from bucketrnn.data.loader import BucketLoader, evaluation_loader

    rng = np.random.default_rng(1)

    def pairs(n, top):
        return [(rng.integers(2, 9, rng.integers(1, top)),
                 rng.integers(2, 9, rng.integers(1, top))) for _ in range(n)]

    train = BucketLoader(pairs(200, 12), batch_size=8, num_buckets=5, shuffle=False)
    held = pairs(60, 15)  # some sources and targets longer than any training key
    ev = evaluation_loader(train, held, batch_size=8)
    assert set(train.plan.keys) <= set(ev.plan.keys)
    keys = np.array(ev.plan.keys)
    assert (ev.lengths <= keys[ev.plan.example_buckets]).all()
    # A pair that a training key holds is evaluated in that key (its graph is reused).
    ids = train.plan.assign(ev.lengths, on_overflow="drop")
    assert (ids >= 0).any() and (ids < 0).any()
    for i in np.flatnonzero(ids >= 0):
        assert ev.plan.keys[ev.plan.example_buckets[i]] == train.plan.keys[ids[i]]
