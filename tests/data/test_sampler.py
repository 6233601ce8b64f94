import pickle
from collections import Counter

import numpy as np
import pytest
from conftest import assert_resumes

from bucketrnn.data.plan import plan_buckets
from bucketrnn.data.sampler import BucketBatchSampler, FillSlot, decode_slots
from bucketrnn.errors import StateMismatchError

LENGTHS = np.random.default_rng(7).integers(1, 40, size=203)
BOUNDS = (8, 16, 30, 40)


def make(lengths=LENGTHS, batch_size=8, boundaries=BOUNDS, **kw):
    plan = plan_buckets(lengths, strategy="fixed", boundaries=boundaries, batch_size=batch_size,
                        on_overflow=kw.get("on_overflow", "error"))
    return BucketBatchSampler(lengths, plan, **kw)


def real(batches):
    return [i for b in batches for i in b if i >= 0]


CONFIGS = [
    dict(last_batch=lb, shuffle=sh, num_shards=ns)
    for lb in ("fill", "keep", "discard", "rollover")
    for sh in (True, False)
    for ns in (1, 3)
]


def config_id(c):
    return f"{c['last_batch']}-{'shuf' if c['shuffle'] else 'seq'}-{c['num_shards']}shards"


# ---------------------------------------------------------------- contract, every configuration
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_resume_equals_uninterrupted(config):
    for rank in range(config["num_shards"]):
        assert_resumes(lambda: make(shard_index=rank, seed=3, **config))  # noqa: B023


def test_state_from_another_seed_is_refused():
    run = make(seed=3)
    it = iter(run)
    head = [next(it) for _ in range(3)]
    other = make(seed=99)
    with pytest.raises(StateMismatchError, match=r"differs in seed: state 3, here 99\. Build "
                                                 r"the sampler \(or loader\) with seed=3"):
        other.load_state_dict(run.state_dict())
    assert (other.seed, other.epoch, other.step) == (99, 0, 0)  # untouched
    resumed = make(seed=3)
    resumed.load_state_dict(run.state_dict())
    assert head + list(resumed) == list(make(seed=3))


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_len_is_exact_and_epochs_differ(config):
    sampler = make(seed=11, **config)
    epochs = []
    for e in range(3):
        n = len(sampler)
        epochs.append(list(sampler))
        assert len(epochs[-1]) == n, e
        assert sampler.epoch == e + 1
    if config["shuffle"]:
        assert epochs[0] != epochs[1]


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_ranks_agree_on_steps_and_buckets(config):
    ranks = [make(shard_index=r, seed=2, **config) for r in range(config["num_shards"])]
    for epoch in range(2):
        buckets = [s.buckets(epoch) for s in ranks]
        for b in buckets[1:]:
            np.testing.assert_array_equal(b, buckets[0])
        plays = [list(s.batches(epoch)) for s in ranks]
        assert len({len(p) for p in plays}) == 1
        for step, k in enumerate(buckets[0]):
            for play in plays:
                index, _ = decode_slots(play[step])
                assert set(ranks[0].bucket_ids[index].tolist()) == {k}


# ---------------------------------------------------------------- tail policies
@pytest.mark.parametrize("shards", [1, 2, 5])
def test_fill_sees_every_example_once_with_full_batches(shards):
    ranks = [make(num_shards=shards, shard_index=r, seed=1) for r in range(shards)]
    plays = [list(s) for s in ranks]
    assert sorted(i for p in plays for i in real(p)) == list(range(LENGTHS.size))
    sizes = ranks[0].batch_sizes
    for s, play in zip(ranks, plays):
        for k, batch in zip(s.buckets(0), play):
            assert len(batch) == sizes[k]
            index, is_real = decode_slots(batch)
            # fill rows copy an example of the same bucket, so their lengths stay >= 1 ...
            assert (s.bucket_ids[index] == k).all()
            # ... and a real row of their own batch when it has one
            if is_real.any():
                assert set(index[~is_real]) <= set(index[is_real])


def test_fill_rows_copy_a_real_row_of_their_batch():
    sampler = make(seed=0)
    filled = [b for b in sampler if min(b) < 0]
    assert filled
    for b in filled:
        sources, is_real = decode_slots(b)
        assert set(sources[~is_real]) <= set(sources[is_real])


def test_keep_yields_partial_batches_and_one_fill_row_for_idle_ranks():
    lengths = np.array([3, 3, 3, 20, 20])
    ranks = [make(lengths, batch_size=4, boundaries=(5, 20), last_batch="keep",
                  num_shards=4, shard_index=r) for r in range(4)]
    plays = [list(s) for s in ranks]
    assert [len(p) for p in plays] == [2, 2, 2, 2]
    assert sorted(real(sum(plays, []))) == [0, 1, 2, 3, 4]
    assert sorted(len(b) for p in plays for b in p) == [1] * 8
    assert sum(1 for p in plays for b in p if b[0] < 0) == 3


def test_discard_reports_dropped():
    sampler = make(last_batch="discard", num_shards=2, seed=4)
    played = real(sampler.batches(0))
    other = real(make(last_batch="discard", num_shards=2, shard_index=1, seed=4).batches(0))
    assert len(set(played + other)) == len(played) + len(other)
    assert sampler.num_dropped == LENGTHS.size - len(played) - len(other) > 0
    assert all(len(b) == sampler.batch_sizes[k] for b, k in zip(sampler.batches(0),
                                                               sampler.buckets(0)))


@pytest.mark.parametrize("shards", [1, 3])
def test_rollover_plays_every_example_exactly_once_per_pass(shards):
    ranks = [make(last_batch="rollover", num_shards=shards, shard_index=r, seed=8)
             for r in range(shards)]
    streams = {k: [] for k in range(4)}
    for epoch in range(5):
        per_rank = [list(s.batches(epoch)) for s in ranks]
        for step, k in enumerate(ranks[0].buckets(epoch)):
            for play in per_rank:  # rank order is stream order within a step
                streams[k].extend(play[step])
        assert ranks[0].num_dropped == 0
    for k, stream in streams.items():
        members = np.flatnonzero(ranks[0].bucket_ids == k)
        n, unit = members.size, ranks[0].batch_sizes[k] * shards
        assert len(stream) == (5 * n) // unit * unit
        assert min(stream) >= 0
        for p in range(len(stream) // n):
            assert sorted(stream[p * n:(p + 1) * n]) == members.tolist(), (k, p)


def test_rollover_carries_the_tail_first_into_next_epoch():
    lengths = np.full(10, 5)
    sampler = make(lengths, batch_size=4, boundaries=(5,), last_batch="rollover", shuffle=False)
    assert list(sampler) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(sampler) == [[8, 9, 0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]


# ---------------------------------------------------------------- determinism and position
def test_schedule_depends_on_seed_and_epoch_only():
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    assert list(a.batches(4)) == list(b.batches(4))
    assert list(a.batches(4)) != list(c.batches(4))
    assert list(a.batches(4)) != list(a.batches(3))


def test_global_rng_untouched():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    list(make(seed=3))
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_set_epoch():
    sampler = make(seed=1)
    it = iter(sampler)
    next(it), next(it)
    sampler.set_epoch(0)  # same epoch: keeps the position a resumed run is at
    assert sampler.step == 2
    sampler.set_epoch(3)
    assert (sampler.epoch, sampler.step) == (3, 0)
    assert list(sampler) == list(make(seed=1).batches(3))
    with pytest.raises(ValueError, match=r"epoch must be an integer >= 0, got epoch=-1"):
        sampler.set_epoch(-1)


# ---------------------------------------------------------------- state checks
def test_state_is_tiny_and_versioned():
    state = make().state_dict()
    assert set(state) == {"version", "seed", "epoch", "step", "fingerprint"}
    assert len(pickle.dumps(state)) < 600


@pytest.mark.parametrize("change, match", [
    (dict(lengths=LENGTHS[::-1].copy()), r"differs in data"),
    (dict(num_shards=2), r"num_shards: state 1, here 2"),
    (dict(last_batch="keep"), r"last_batch: state 'fill', here 'keep'"),
    (dict(batch_size=4), r"differs in plan"),
    (dict(shuffle=False), r"shuffle"),
])
def test_state_from_other_data_or_config_is_refused(change, match):
    state = make().state_dict()
    with pytest.raises(StateMismatchError, match=match):
        make(**change).load_state_dict(state)


def test_state_with_numpy_ints_and_at_an_epoch_end_is_accepted():
    run = make(seed=5)
    n = len(run)
    state = dict(run.state_dict(), epoch=np.int64(0), step=np.int64(n))
    resumed = make(seed=5)
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.step) == (1, 0)


def test_state_shard_index_is_not_part_of_fingerprint():
    make(num_shards=2, shard_index=1).load_state_dict(make(num_shards=2).state_dict())


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s.update(version=2), r"version 2 is not supported"),
    (lambda s: s.update(version=True), r"version True is not supported"),
    (lambda s: s.update(version="1"), r"version '1' is not supported"),
    (lambda s: s.pop("step"), r"must have keys"),
    (lambda s: s.update(extra=1), r"must have keys"),
    (lambda s: s.update(step=10_000), r"step=10000 is past the end of epoch 0"),
    (lambda s: s.update(step=-1), r"step must be in \[0, 9223372036854775807\], got step=-1"),
    (lambda s: s.update(epoch=-2), r"epoch must be in \[0, .*\], got epoch=-2: the state is "
                                   r"damaged"),
    (lambda s: s.update(epoch=2**70), r"epoch must be in \[0, .*\], got epoch=1180591620717"),
    (lambda s: s.update(step=2.0), r"step must be an int, got step=2\.0 \(float\)"),
    (lambda s: s.update(epoch="1"), r"epoch must be an int, got epoch='1' \(str\)"),
    (lambda s: s.update(step=True), r"step must be an int, got step=True \(bool\)"),
    (lambda s: s.update(seed=None), r"seed must be an int, got seed=None"),
    (lambda s: s.update(fingerprint="abc"), r"fingerprint must be a dict, got str"),
])
def test_bad_state_is_refused(mutate, match):
    state = make().state_dict()
    mutate(state)
    with pytest.raises(StateMismatchError, match=match):
        make().load_state_dict(state)


# ---------------------------------------------------------------- as a gluon batch_sampler
SEQS = [list(range(1, n + 1)) for n in LENGTHS.tolist()]


def test_fill_slots_order_like_negative_codes_but_index_nothing():
    sampler = make(seed=0)
    fills = [s for b in sampler.batches(0) for s in b if isinstance(s, FillSlot)]
    assert fills and all(s < 0 and not s >= 0 and s.code == -1 - s.index for s in fills)
    assert pickle.loads(pickle.dumps(fills[0])) == fills[0]
    with pytest.raises(TypeError, match=r"FillSlot\(\d+\) is a fill row of a partial batch, "
                                        r"not a dataset index: iterate with BucketLoader"):
        SEQS[fills[0]]
    index, real = decode_slots([3, fills[0]])
    assert index.tolist() == [3, fills[0].index] and real.tolist() == [True, False]


def _gluon(dataset, **kwargs):
    from mxnet.gluon.data import DataLoader

    return DataLoader(dataset, batch_sampler=make(seed=0, **kwargs),
                      batchify_fn=lambda rows: rows)


@pytest.mark.parametrize("wrap", ["list", "SimpleDataset"])
def test_sampler_as_gluon_batch_sampler_fails_loudly_not_silently(wrap):
    # The GluonNLP habit: DataLoader(dataset, batch_sampler=sampler, batchify_fn=...). A fill
    # row used to be a negative int, which Python indexing wraps to another real example.
    from mxnet.gluon.data import SimpleDataset

    dataset = SimpleDataset(SEQS) if wrap == "SimpleDataset" else SEQS
    with pytest.raises(TypeError, match=r"not a dataset index: iterate with BucketLoader, or "
                                        r"read the sampler's batches through SlotDataset"):
        for _ in _gluon(dataset):
            pass


def test_sampler_as_gluon_batch_sampler_over_an_array_dataset_fails_loudly():
    with pytest.raises(IndexError):
        for _ in _gluon(np.zeros((LENGTHS.size, 40), dtype=np.int32)):
            pass


def test_sampler_as_gluon_batch_sampler_without_fill_rows_just_works():
    rows = [len(b) for b in _gluon(SEQS, last_batch="discard")]
    assert rows and set(rows) == {8}


def test_sampler_as_gluon_batch_sampler_over_slot_dataset_is_right():
    from mxnet.gluon.data import DataLoader

    from bucketrnn.data.batchify import PadToBucket, SlotDataset

    sampler = make(seed=0)
    loader = DataLoader(SlotDataset(SEQS, sampler.bucket_ids), batch_sampler=sampler,
                        batchify_fn=PadToBucket(sampler.plan.keys))
    seen, fills = [], 0
    for batch in loader:
        data, weight = batch.data.asnumpy(), batch.weight.asnumpy()
        for row, i, w in zip(data, batch.indices.tolist(), weight, strict=True):
            fills += w == 0
            if i >= 0:
                seen.append(i)
                assert w == 1 and row[:len(SEQS[i])].tolist() == SEQS[i]
    assert sorted(seen) == list(range(LENGTHS.size)) and fills > 0


# ---------------------------------------------------------------- overflow
def test_overflow_policies():
    lengths = np.array([3, 9, 4, 12])
    with pytest.raises(ValueError, match=r"example 3 has length 12.*largest bucket \(10\)"):
        make(lengths, boundaries=(5, 10))
    dropped = make(lengths, boundaries=(5, 10), on_overflow="drop")
    assert sorted(real(dropped)) == [0, 1, 2] and dropped.num_dropped == 1
    truncated = make(lengths, boundaries=(5, 10), on_overflow="truncate")
    assert truncated.bucket_ids.tolist() == [0, 1, 0, 1] and truncated.num_dropped == 0


# ---------------------------------------------------------------- argument validation
PLAN = plan_buckets(LENGTHS, strategy="fixed", boundaries=BOUNDS, batch_size=8)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(seed=-1), ValueError, r"seed must be an integer >= 0, got seed=-1"),
    (dict(seed=1.5), TypeError, r"seed must be an int, got seed=1.5"),
    (dict(last_batch="pad"), ValueError, r"last_batch must be one of .*got last_batch='pad'"),
    (dict(num_shards=0), ValueError, r"num_shards must be an integer >= 1, got num_shards=0"),
    (dict(num_shards=2, shard_index=2), ValueError,
     r"shard_index must be an integer in \[0, 2\), got shard_index=2"),
    (dict(on_overflow="clip"), ValueError, r"on_overflow must be one of .*'clip'"),
    (dict(shuffle="yes"), TypeError, r"shuffle must be a bool, got shuffle='yes'"),
    (dict(plan=None), TypeError, r"plan must be a BucketPlan, got plan=NoneType"),
    (dict(lengths=np.array([], dtype=np.int64)), ValueError, r"the dataset is empty"),
    (dict(lengths=np.array([1.5, 2.0])), TypeError, r"lengths must be integers"),
    (dict(lengths=np.array([3, 0, 2])), ValueError, r"example 1 is an empty sequence \(length 0\)"),
    (dict(lengths=None, bucket_ids=np.array([0, 7])), ValueError,
     r"bucket_ids\[1\]=7 is not a bucket of a plan with 4 buckets"),
    (dict(lengths=None), TypeError, r"pass lengths or bucket_ids"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(lengths=LENGTHS, plan=PLAN)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        BucketBatchSampler(args.pop("lengths"), args.pop("plan"), **args)


def test_bad_batch_size_in_plan():
    class Plan:
        keys, batch_sizes = (5,), (0,)

        def assign(self, lengths, on_overflow):
            return np.zeros(len(lengths), dtype=np.int64)

    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got batch_size=0"):
        BucketBatchSampler(np.array([1, 2]), Plan())


def test_bucket_ids_instead_of_lengths():
    sampler = BucketBatchSampler(None, PLAN, bucket_ids=np.array([0, 0, 1, -1, 3]), seed=0)
    assert sorted(real(sampler)) == [0, 1, 2, 4]
    assert sampler.num_dropped == 1
    assert Counter(len(b) for b in sampler) == Counter({8: 3})


def test_rollover_epoch_without_a_full_step_still_advances():
    sampler = make(np.full(3, 5), batch_size=4, boundaries=(5,), last_batch="rollover",
                   shuffle=False)
    assert len(sampler) == 0 and list(sampler) == [] and sampler.epoch == 1
    assert list(sampler) == [[0, 1, 2, 0]] and sampler.epoch == 2


@pytest.mark.parametrize("last_batch", ["fill", "keep", "discard", "rollover"])
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_real_rows_per_rank_is_what_each_rank_plays(last_batch, shards):
    # The distributed check asks for these counts instead of re-deriving the tail split.
    lengths = np.random.default_rng(3).integers(1, 30, size=53)
    plan = plan_buckets(lengths, num_buckets=3, batch_size=4)
    for epoch in (0, 1):
        played = []
        for rank in range(shards):
            s = BucketBatchSampler(lengths, plan, seed=2, last_batch=last_batch,
                                   num_shards=shards, shard_index=rank)
            played.append(sum(int(i >= 0) for b in s.batches(epoch) for i in b))
        mine = BucketBatchSampler(lengths, plan, seed=2, last_batch=last_batch,
                                  num_shards=shards, shard_index=0)
        assert mine.real_rows_per_rank(epoch).tolist() == played


def test_seek_and_end_epoch_are_the_public_position():
    lengths = [3, 4, 5, 6, 7, 8]
    plan = plan_buckets(lengths, num_buckets=2, batch_size=2)
    s = BucketBatchSampler(lengths, plan, seed=0)
    s.seek(0, s.num_batches(0))  # past the last batch: the start of the next epoch
    assert (s.epoch, s.step) == (1, 0)
    s.end_epoch(1)  # epoch 1 has batches: nothing moves
    assert (s.epoch, s.step) == (1, 0)
    with pytest.raises(ValueError, match="step must be an integer >= 0, got step=-1"):
        s.seek(0, -1)
