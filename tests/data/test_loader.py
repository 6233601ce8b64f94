import multiprocessing
import os
import pickle
import signal
import time

import mxnet as mx
import numpy as np
import pytest
from conftest import assert_resumes, make_flat
from mxnet.gluon.data import ArrayDataset, SimpleDataset

from bucketrnn.data.loader import BucketLoader, evaluation_loader
from bucketrnn.errors import StateMismatchError

RNG = np.random.default_rng(5)
TOKENS = [RNG.integers(1, 50, size=n).tolist() for n in RNG.integers(2, 30, size=120)]
LABELS = RNG.integers(0, 3, size=120).tolist()


def forms():
    arrays = [np.asarray(s, dtype=np.int64) for s in TOKENS]
    feats = [RNG.standard_normal((len(s), 3)) for s in TOKENS]
    pairs = [(s, s[::-1][: max(1, len(s) // 2)]) for s in TOKENS]
    return {
        "token lists": (TOKENS, "lm"),
        "numpy arrays": (arrays, "lm"),
        "flat": (make_flat(TOKENS), "lm"),
        "flat with labels": (make_flat(TOKENS, LABELS), "classify"),
        "features": (feats, None),
        "feature tuples": (list(zip(feats, LABELS)), "classify"),
        "tuples": (list(zip(TOKENS, LABELS)), "classify"),
        "gluon dataset": (SimpleDataset(list(zip(arrays, LABELS))), "classify"),
        "pairs": (pairs, "seq2seq"),
        "gluon ndarrays": (ArrayDataset(mx.nd.array(np.vstack([a[:2] for a in arrays]),
                                                    dtype="int32"), LABELS), "classify"),
        "2-d numpy": (np.vstack([a[:2] for a in arrays]), "lm"),
    }


@pytest.mark.parametrize("name", list(forms()))
def test_every_form_gives_static_shapes_and_each_example_once(name):
    dataset, task = forms()[name]
    fixed_length = name in ("gluon ndarrays", "2-d numpy")
    loader = BucketLoader(dataset, batch_size=16, num_buckets=1 if fixed_length else 3, seed=1)
    assert loader.task == task
    seen = []
    batches = list(loader)
    assert len(batches) == len(loader.sampler.buckets(0))
    for batch in batches:
        k = loader.plan.keys.index(batch.bucket_key)
        length = batch.bucket_key[0] if task == "seq2seq" else batch.bucket_key
        assert batch.data.shape[:2] == (loader.plan.batch_sizes[k], length)
        assert batch.weight.asnumpy().sum() == batch.num_real
        seen += batch.indices[batch.indices >= 0].tolist()
        if task == "classify":
            rows = batch.indices >= 0
            assert batch.label.asnumpy()[rows].tolist() == [LABELS[i] for i in batch.indices[rows]]
        if task == "seq2seq":
            assert batch.label.shape == (batch.data.shape[0], batch.bucket_key[1])
    assert sorted(seen) == list(range(len(dataset)))


def test_lm_batches_hold_the_shifted_sequences():
    loader = BucketLoader(TOKENS, batch_size=8, num_buckets=4, seed=2)
    for batch in loader:
        data, label = batch.data.asnumpy(), batch.label.asnumpy()
        for row, i in enumerate(batch.indices):
            if i >= 0:
                n = len(TOKENS[i]) - 1
                assert batch.valid_length.asnumpy()[row] == n
                assert data[row, :n].tolist() == TOKENS[i][:-1]
                assert label[row, :n].tolist() == TOKENS[i][1:]
                assert not label[row, n:].any()


def test_state_counts_delivered_batches_not_prefetched_ones():
    kwargs = dict(batch_size=8, num_buckets=4, seed=4)
    expected = [b.indices.tolist() for b in BucketLoader(TOKENS, **kwargs)]
    loader = BucketLoader(TOKENS, num_workers=2, prefetch=4, **kwargs)
    it = iter(loader)
    got = [next(it).indices.tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state["step"] == 3
    resumed = BucketLoader(TOKENS, **kwargs)
    resumed.load_state_dict(state)
    assert got + [b.indices.tolist() for b in resumed] == expected
    loader.close()


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(last_batch="rollover", shuffle=False),
    dict(last_batch="keep", num_shards=2, shard_index=1),
    dict(last_batch="discard", num_workers=2),
], ids=["fill", "rollover", "keep-shard", "discard-workers"])
def test_loader_resumes_like_an_uninterrupted_run(kwargs):
    assert_resumes(lambda: BucketLoader(TOKENS, batch_size=8, num_buckets=3, seed=2, **kwargs),
                   key=lambda b: (b.bucket_key, b.indices.tolist(), b.data.asnumpy().tolist()))


def test_epochs_advance_and_pickled_loader_continues():
    loader = BucketLoader(TOKENS, batch_size=8, num_buckets=4, seed=4)
    first = [b.indices.tolist() for b in loader]
    assert loader.epoch == 1
    clone = pickle.loads(pickle.dumps(loader))
    second = [b.indices.tolist() for b in clone]
    assert second != first
    loader.set_epoch(1)
    assert [b.indices.tolist() for b in loader] == second


def test_state_from_another_dataset_is_refused():
    state = BucketLoader(TOKENS, batch_size=8, num_buckets=4).state_dict()
    with pytest.raises(StateMismatchError, match=r"differs in data"):
        BucketLoader(TOKENS[:-1], batch_size=8, num_buckets=4).load_state_dict(state)


def test_ctx_and_repr():
    loader = BucketLoader(TOKENS, batch_size=8, num_buckets=2, ctx=mx.cpu(1))
    batch = next(iter(loader))
    assert batch.data.context == mx.cpu(1)
    text = repr(loader)
    assert text.startswith("BucketLoader(examples=120, task='lm', buckets=2, last_batch='fill'")
    assert "step=1/" in text and "key" in text and "padding" in text


def test_dropped_examples_are_reported():
    long = TOKENS + [list(range(1, 60))]
    loader = BucketLoader(long, batch_size=8, strategy="fixed", boundaries=[10, 30],
                          on_overflow="drop")
    assert loader.num_dropped == 1
    assert 120 not in [i for b in loader for i in b.indices.tolist()]
    discard = BucketLoader(TOKENS, batch_size=8, num_buckets=3, last_batch="discard")
    played = sum(b.num_real for b in discard)
    assert played + discard.num_dropped == 120 and discard.num_dropped > 0


def test_truncate_cuts_overlong_sequences():
    long = TOKENS + [list(range(1, 60))]
    loader = BucketLoader(long, batch_size=8, strategy="fixed", boundaries=[10, 30],
                          on_overflow="truncate", shuffle=False)
    (batch,) = [b for b in loader if 120 in b.indices.tolist()]
    row = batch.indices.tolist().index(120)
    assert batch.data.shape[1] == 30
    assert batch.data.asnumpy()[row].tolist() == list(range(1, 31))


class _Crashes:
    """Ends the worker process that reads example 5 (``os._exit(3)`` or a signal to itself);
    fine in the main process. ``slow``: seconds each worker read of another example takes."""

    def __init__(self, data, how="exit", slow=0.0):
        self.data, self.parent, self.how, self.slow = data, os.getpid(), how, slow

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        if os.getpid() != self.parent:
            if i == 5 and self.how == "exit":
                os._exit(3)
            if i == 5 and self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(self.slow)
        return self.data[i]


@pytest.mark.parametrize("how, prefetch, match", [
    ("exit", 0, r"loader worker process \d+ exited with code 3 while the loader was preparing "
                r"batches \(epoch 0, step \d+\); its batches are lost.*num_workers=0"),
    ("exit", None, r"exited with code 3"),
    ("kill", 2, r"loader worker process \d+ was killed by signal 9 \(SIGKILL\)"),
])
def test_dead_worker_is_noticed_within_seconds_not_after_the_timeout(how, prefetch, match):
    # With the default 120 s timeout the loop used to wait it out; the batch of the dead
    # worker is never answered (the pool replaces the worker without a word).
    loader = BucketLoader(_Crashes(TOKENS, how), batch_size=8, num_buckets=2, num_workers=2,
                          prefetch=prefetch, timeout=120, shuffle=False)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=match):
        for _ in loader:
            pass
    assert time.monotonic() - start < 20
    assert loader._loader is None  # the broken pool is gone; a new iteration starts afresh


def test_worker_killed_from_outside_is_noticed():
    loader = BucketLoader(_Crashes(TOKENS, how="none", slow=0.01), batch_size=8, num_buckets=2,
                          num_workers=2, prefetch=2, timeout=120, shuffle=False)
    it = iter(loader)
    next(it)
    workers = multiprocessing.active_children()
    start = time.monotonic()
    os.kill(workers[0].pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match=rf"loader worker process {workers[0].pid} was killed "
                                           r"by signal 9 \(SIGKILL\)"):
        for _ in it:
            pass
    assert time.monotonic() - start < 20
    assert not any(p.is_alive() for p in workers)  # no orphaned worker left behind


def test_stuck_worker_raises_after_the_timeout():
    loader = BucketLoader(_Crashes(TOKENS, how="none", slow=5.0), batch_size=8, num_buckets=2,
                          num_workers=1, prefetch=0, timeout=1, shuffle=False)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no batch from the loader workers within "
                                           r"timeout=1s .*a loader worker is stuck or too slow"):
        next(iter(loader))
    assert time.monotonic() - start < 20


def test_worker_errors_reach_the_training_process():
    bad = TOKENS[:10] + [[1, 2.5, 3]] + TOKENS[10:]
    loader = BucketLoader(bad, batch_size=8, num_buckets=2, num_workers=2, timeout=20)
    with pytest.raises(TypeError, match=r"example 10 has non-integer token id 2\.5"):
        list(loader)


@pytest.mark.parametrize("dataset, kwargs, error, match", [
    ([], {}, ValueError, r"the dataset is empty: got 0 examples"),
    (42, {}, TypeError, r"dataset must support len\(\) and indexing, got int"),
    (TOKENS, dict(batch_size=0), ValueError, r"batch_size must be an integer >= 1, got "
                                             r"batch_size=0"),
    (TOKENS, dict(batch_size=2.5), TypeError,
     r"batch_size must be None or an int, got batch_size=2.5"),
    (TOKENS, dict(num_workers=-1), ValueError, r"num_workers must be an integer >= 0"),
    (TOKENS, dict(prefetch=-2), ValueError, r"prefetch must be an integer >= 0"),
    (TOKENS, dict(prefetch=1.5), TypeError, r"prefetch must be None or an int, got "),
    (TOKENS, dict(timeout=0), ValueError, r"timeout must be a finite number of seconds > 0"),
    (TOKENS, dict(timeout=-5), ValueError, r"got timeout=-5"),
    (TOKENS, dict(timeout=float("nan")), ValueError, r"got timeout=nan"),
    (TOKENS, dict(timeout=float("inf")), ValueError, r"got timeout=inf"),
    (TOKENS, dict(timeout=True), ValueError, r"got timeout=True"),
    (TOKENS, dict(task="mlm"), ValueError, r"task must be one of .*got task='mlm'"),
    (TOKENS, dict(ctx="gpu"), TypeError, r"ctx must be an mxnet Context .*got ctx='gpu'"),
    (TOKENS, dict(task="seq2seq"), ValueError, r"task='seq2seq' does not fit the dataset"),
    ([[1, 2], [3], [4, 5]], {}, ValueError, r"example 1 has 1 token; task='lm' needs at least 2"),
    ([[1, 2], [], [4, 5]], {}, ValueError, r"example 1 is an empty sequence"),
    (TOKENS, dict(strategy="fixed", boundaries=[5, 10]), ValueError,
     r"example \d+ has length \d+, longer than the largest bucket \(10\)"),
    (TOKENS, dict(num_buckets=200), ValueError, r"num_buckets=200 is more than the"),
    (TOKENS, dict(last_batch="pad"), ValueError, r"last_batch must be one of"),
    (TOKENS, dict(num_shards=2, shard_index=5), ValueError,
     r"shard_index must be an integer in \[0, 2\)"),
])
def test_bad_arguments(dataset, kwargs, error, match):
    with pytest.raises(error, match=match):
        BucketLoader(dataset, **kwargs)


@pytest.mark.parametrize("dataset, error, match", [
    ([np.ones((3, 2)), np.array([[1.0, np.nan]]), np.ones((2, 2))], ValueError,
     r"example 1 has NaN in its features at step 0"),
    ([np.ones((3, 2)), np.ones((2, 2)), np.ones((2, 5))], ValueError,
     r"example 2 has feature shape \(2, 5\), expected \(T, 2\): ragged feature dims"),
    ([[1, 2], [3, 4], [5, 6.5]], TypeError, r"example 2 has non-integer token id 6\.5"),
])
def test_bad_examples_are_named_by_dataset_index(dataset, error, match):
    loader = BucketLoader(dataset, batch_size=4, num_buckets=1, shuffle=True, seed=3)
    with pytest.raises(error, match=match):
        list(loader)


def test_unsorted_boundaries_are_refused():
    with pytest.raises(ValueError, match=r"boundaries must be strictly increasing"):
        BucketLoader(TOKENS, strategy="fixed", boundaries=[30, 10])


def test_sharded_loaders_split_every_epoch_and_agree_on_buckets():
    loaders = [BucketLoader(TOKENS, batch_size=8, num_buckets=3, num_shards=3, shard_index=r,
                            seed=6) for r in range(3)]
    for _ in range(2):
        plays = [list(loader) for loader in loaders]
        assert len({len(p) for p in plays}) == 1
        for step in zip(*plays):
            assert len({b.bucket_key for b in step}) == 1
            assert len({b.data.shape for b in step}) == 1
            assert [b.meta["step"] for b in step] == [step[0].meta["step"]] * 3
        seen = [i for p in plays for b in p for i in b.indices.tolist() if i >= 0]
        assert sorted(seen) == list(range(len(TOKENS)))


def test_breaking_out_continues_where_it_stopped():
    loader = BucketLoader(TOKENS, batch_size=8, num_buckets=3, seed=6)
    expected = [b.indices.tolist() for b in BucketLoader(TOKENS, batch_size=8, num_buckets=3,
                                                         seed=6)]
    got = []
    for batch in loader:
        got.append(batch.indices.tolist())
        if len(got) == 4:
            break
    assert (loader.epoch, loader.state_dict()["step"]) == (0, 4)
    got += [b.indices.tolist() for b in loader]
    assert got == expected and loader.epoch == 1
    loader.set_epoch(0)
    assert [b.meta["step"] for b in loader] == list(range(len(expected)))


def test_example_batch_is_a_full_batch_and_keeps_the_position():
    from bucketrnn.data.loader import BucketLoader

    data = [[1] * n for n in (3, 3, 4, 4, 4, 8, 9)]
    loader = BucketLoader(data, batch_size=4, num_buckets=2, seed=0)
    before = loader.state_dict()
    batch = loader.example_batch()
    assert batch.bucket_key == loader.plan.keys[-1]
    assert batch.data.shape == (4, loader.plan.keys[-1])
    real = min(loader.plan.counts[-1], 4)
    assert real < 4  # the bucket is short of a batch: masked fill rows complete it
    assert batch.weight.asnumpy().tolist() == [1] * real + [0] * (4 - real)
    assert loader.state_dict() == before
    with pytest.raises(ValueError, match=r"bucket must be an int in \[0, 2\), got bucket=5"):
        loader.example_batch(5)


def test_evaluation_loader_reuses_the_training_buckets():
    from bucketrnn.data.loader import evaluation_loader

    train = BucketLoader(TOKENS[:100], batch_size=8, num_buckets=3, seed=0)
    longer = TOKENS[100:] + [list(range(1, 40))]  # longer than every training sequence
    ev = evaluation_loader(train, longer, batch_size=8)
    keys = list(train.plan.keys)
    assert list(ev.plan.keys) == keys + [38] and ev.task == train.task
    assert sorted(i for b in ev for i in b.indices if i >= 0) == list(range(len(longer)))
    same = evaluation_loader(train, TOKENS[100:], batch_size=8)
    assert set(same.plan.keys) <= set(keys)


# ---------------------------------------------------------------- id and label ranges
def _with(data, i, value):
    out = [list(s) for s in data]
    out[i] = out[i][:1] + [value] + out[i][2:]
    return out


@pytest.mark.parametrize("form", ["lists", "flat"])
@pytest.mark.parametrize("value, match", [
    (50, r"example 17 has token id 50, outside \[0, 50\) for vocab_size=50"),
    (-4, r"example 17 has token id -4"),
])
def test_loader_names_the_dataset_index_of_an_out_of_range_token_id(form, value, match):
    data = _with(TOKENS, 17, value)
    dataset = make_flat(data) if form == "flat" else data
    loader = BucketLoader(dataset, batch_size=8, num_buckets=3, vocab_size=50)
    with pytest.raises(ValueError, match=match):
        list(loader)
    assert list(BucketLoader(TOKENS, batch_size=8, num_buckets=3, vocab_size=50))  # clean data


@pytest.mark.parametrize("label, match", [
    (3, r"example 12 has label 3, outside \[0, 3\) for num_classes=3"),
    (1.5, r"example 12 has label 1\.5; num_classes=3 needs whole-number class labels"),
])
def test_loader_names_the_dataset_index_of_a_bad_label(label, match):
    labels = list(LABELS)
    labels[12] = label
    loader = BucketLoader(list(zip(TOKENS, labels)), batch_size=8, num_buckets=2,
                          vocab_size=50, num_classes=3)
    with pytest.raises(ValueError, match=match):
        list(loader)


def test_id_check_in_workers_and_installed_later():
    loader = BucketLoader(TOKENS, batch_size=8, num_buckets=2, num_workers=1, timeout=30)
    assert loader.vocab_size is None and len(list(loader)) == len(loader)
    loader.set_id_limits(vocab_size=40)
    assert loader.vocab_size == 40 and "vocab_size=40" in repr(loader.batchify)
    with pytest.raises(ValueError, match=r"example \d+ has token id 4\d, outside \[0, 40\) for "
                                         r"vocab_size=40"):
        list(loader)
    loader.set_id_limits()  # None removes the check
    assert len(list(loader)) == len(loader)


def test_evaluation_loader_carries_the_id_limits_and_timeout():
    pairs = list(zip(TOKENS, LABELS))
    train = BucketLoader(pairs, batch_size=8, num_buckets=2, vocab_size=50, num_classes=3,
                         timeout=9)
    ev = evaluation_loader(train, pairs[:30], batch_size=8)
    assert (ev.vocab_size, ev.num_classes, ev.timeout) == (50, 3, 9)
    bad = evaluation_loader(train, [(s, 7) for s in TOKENS[:30]], batch_size=8)
    with pytest.raises(ValueError, match=r"has label 7, outside \[0, 3\)"):
        list(bad)


@pytest.mark.parametrize("dataset, pad_val, match", [
    (TOKENS, 1.5, r"pad_val=1\.5 does not fit int32 token ids"),
    (list(zip(TOKENS, LABELS)), -1, r"pad_val=-1 does not fit int32 token ids"),
    ([np.ones((3, 2)), np.ones((2, 2))], float("nan"), r"pad_val=nan does not fit float32"),
])
def test_loader_refuses_a_pad_val_that_does_not_fit_at_construction(dataset, pad_val, match):
    with pytest.raises(ValueError, match=match):
        BucketLoader(dataset, batch_size=2, num_buckets=1, pad_val=pad_val)


def test_an_outlier_is_refused_unless_max_length_caps_it_or_it_is_allowed():
    seqs = [[1 + i % 5] * (3 + i % 9) for i in range(60)] + [[2] * 100_000]
    with pytest.raises(ValueError, match="example 60 has length 99999.*max_length=10 with "
                                         "on_overflow=.truncate. or .drop."):
        BucketLoader(seqs, batch_size=8, num_buckets=3)
    for policy, rows in (("truncate", 61), ("drop", 60)):
        loader = BucketLoader(seqs, batch_size=8, num_buckets=3, max_length=16,
                              on_overflow=policy)
        assert loader.plan.keys[-1] <= 16
        seen = [i for b in loader for i in b.indices.tolist() if i >= 0]
        assert len(seen) == rows and max(b.data.shape[1] for b in loader) <= 16
    assert BucketLoader(seqs, batch_size=8, num_buckets=3, outliers="allow").plan.keys[-1] \
        == 100_000 - 1
