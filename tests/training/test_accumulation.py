"""Gradient accumulation (``TrainLoop(accumulate=N)``): N batches per update, exact resume.

An update sums the gradients of N consecutive batches and divides by their real tokens, so N
batches of 8 rows update as one batch of 8N rows would; groups are aligned within an epoch, and
checkpoints and stops fall on their ends.
"""

import math
import os
import signal

import mxnet as mx
import numpy as np
import pytest
from _resume import _assert_same_run, _crash, _loop, _params, _Poison

from bucketrnn.data.loader import BucketLoader
from bucketrnn.errors import CheckpointError, NonFiniteError, StateMismatchError
from bucketrnn.models import LanguageModel, Seq2Seq
from bucketrnn.training import checkpoint as ckpt
from bucketrnn.training.accumulation import GradientSum
from bucketrnn.training.loop import TrainLoop

RNG = np.random.default_rng(3)
SEQS = [RNG.integers(1, 20, size=int(RNG.integers(3, 14))).tolist() for _ in range(64)]
PAIRS = [(RNG.integers(1, 12, size=int(RNG.integers(2, 9))).tolist(),
          RNG.integers(1, 9, size=int(RNG.integers(2, 9))).tolist()) for _ in range(64)]


def _one_bucket_loop(task, batch_size, accumulate, clip_norm, optimizer="sgd",
                     lr_schedule="epoch"):
    """One bucket, no shuffling, no dropout, a constant rate: the rows of an update and the
    arithmetic on them are the same whatever batch_size, only the batches that carry them
    differ."""
    if task == "lm":
        loader = BucketLoader(SEQS, batch_size=batch_size, num_buckets=1, shuffle=False)
        build = LanguageModel.factory(vocab_size=20, hidden_size=8, num_layers=1)
    else:
        loader = BucketLoader(PAIRS, batch_size=batch_size, num_buckets=1, shuffle=False,
                              task="seq2seq")
        build = Seq2Seq.factory(src_vocab_size=12, tgt_vocab_size=9, hidden_size=8)
    params = {"learning_rate": 0.05} if optimizer == "adam" else {"learning_rate": 1.0,
                                                                  "momentum": 0.5}
    return TrainLoop(build, loader, epochs=2, progress=False, seed=4, clip_norm=clip_norm,
                     lr_schedule=lr_schedule, accumulate=accumulate,
                     **({"lr_decay": 1.0} if lr_schedule == "epoch" else {}),
                     optimizer=optimizer, optimizer_params=params)


# SGD's step is proportional to the gradient: a group divided by another count moves
# the parameters elsewhere (Adam's would not show it; it is here for its state). The clip
# norm is above the gradients' (it is computed, not applied).
@pytest.mark.parametrize("task, clip_norm, optimizer", [
    ("lm", 5.0, "sgd"), pytest.param("seq2seq", None, "sgd", marks=pytest.mark.slow),
    pytest.param("seq2seq", 0.5, "adam", marks=pytest.mark.slow)])
def test_four_batches_of_8_update_as_one_batch_of_32(task, clip_norm, optimizer):
    small = _one_bucket_loop(task, 8, 4, clip_norm, optimizer)
    large = _one_bucket_loop(task, 32, 1, clip_norm, optimizer)
    # The same rows, in the same order: 4 batches of 8 hold what one batch of 32 does.
    rows = [b.indices.tolist() for b in small.loader]
    assert sum(rows, []) == sum((b.indices.tolist() for b in large.loader), [])
    for loop in (small, large):
        loop.loader.set_epoch(0)  # back to the start after the look
    start = _params(small)
    small.fit()
    large.fit()
    assert small.global_step == 4 * large.global_step == 16
    assert small.history["updates"] == large.history["updates"] == 4
    # Float rounding apart: a group that divided by another count, or updated per batch, is
    # off by far more.
    moved = 0.0
    for name, value in _params(large).items():
        np.testing.assert_allclose(_params(small)[name], value, rtol=1e-5, atol=1e-5,
                                   err_msg=name)
        moved = max(moved, np.abs(value - start[name]).max())
    assert moved > 0.01


def test_updates_fall_on_the_group_ends_of_each_epoch():
    loader = BucketLoader(SEQS[:45], batch_size=4, num_buckets=3, seed=2)
    loop = TrainLoop(LanguageModel.factory(vocab_size=20, hidden_size=8), loader, epochs=3,
                     progress=False, accumulate=5)
    updated = []
    update = loop.trainer.update

    def record(batch_size):
        updated.append(loop.global_step)  # the 0-based step of the group's last batch
        return update(batch_size)

    loop.trainer.update = record
    loop.fit()
    per_epoch = [loop.loader.num_batches(e) for e in range(3)]
    assert len(set(loop.loader.buckets(0))) == 3 and per_epoch[0] % 5  # a shorter last group
    expected, first = [], 0
    for n in per_epoch:
        expected += [first + i for i in range(n) if (i + 1) % 5 == 0 or i == n - 1]
        first += n
    assert updated == expected
    assert loop.global_step == sum(per_epoch)
    assert loop.history["updates"] == sum(math.ceil(n / 5) for n in per_epoch)
    assert loop.trainer.optimizer.num_update == loop.history["updates"]


def test_gradient_sum_is_the_sum_over_the_count():
    grads = [mx.nd.array([[1.0, -2.0]]), mx.nd.array([4.0])]
    group = GradientSum()
    group.add(grads, count=3)
    for g in grads:
        g[:] = g * 2  # the next batch's gradients
    group.add(grads, count=5)
    assert (group.batches, group.count) == (2, 8)
    assert group.write_mean(grads, workers=2) == 2
    np.testing.assert_allclose(grads[0].asnumpy(), [[3 / 16, -6 / 16]])
    np.testing.assert_allclose(grads[1].asnumpy(), [12 / 16])
    assert group.write_mean(grads) == 0  # nothing added: left as they are
    np.testing.assert_allclose(grads[1].asnumpy(), [12 / 16])
    with pytest.raises(ValueError, match="got 1 gradient arrays, the group holds 2"):
        group.add(grads[:1], count=1)


# ---------------------------------------------------------------- resume (slow: whole runs)
@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run of 3 batches per update (checkpoint_every=4 falls inside
    groups)."""
    run_dir = tmp_path_factory.mktemp("whole-accumulate")
    loop = _loop(run_dir, accumulate=3)
    loop.fit()
    return loop, run_dir


@pytest.mark.slow
def test_max_steps_inside_a_group_stops_at_its_end_and_resumes_exactly(tmp_path, whole):
    ref, ref_dir = whole
    first = _loop(tmp_path, accumulate=3, max_steps=5)
    first.fit()
    assert first.global_step == 6  # rounded up to the group's update
    assert ckpt.load(str(tmp_path / "checkpoint.npz")).meta["global_step"] == 6
    rest = _loop(tmp_path, accumulate=3)
    rest.fit(resume=True)
    _assert_same_run(ref, rest, ref_dir, tmp_path)
    assert rest.history["updates"] == ref.history["updates"]


@pytest.mark.slow
@pytest.mark.parametrize("crash_in_epoch", [0, 1])
def test_a_checkpoint_due_inside_a_group_is_written_at_its_end(tmp_path, whole,
                                                               crash_in_epoch):
    ref, ref_dir = whole
    crashed = _loop(tmp_path, accumulate=3)
    spe = crashed.loader.sampler.num_batches(0)
    # checkpoint_every=4: due after step 8 of the epoch's groups of 3 (in-epoch steps 6-8),
    # written after 9; the crash comes before the next one is due.
    first = crash_in_epoch * spe
    groups = [first + i + 1 for i in range(spe) if (i + 1) % 3 == 0 or i == spe - 1]
    due = next(s for s in range(first + 1, first + spe) if s % 4 == 0 and s not in groups)
    written = next(g for g in groups if g >= due)
    _crash(crashed, written + 1)
    meta = ckpt.load(str(tmp_path / "checkpoint.npz")).meta
    assert (meta["global_step"], meta["accumulate"]) == (written, 3)
    resumed = _loop(tmp_path, accumulate=3)
    resumed.fit(resume=True)
    _assert_same_run(ref, resumed, ref_dir, tmp_path)


@pytest.mark.slow
def test_a_stop_request_inside_a_group_waits_for_its_update(tmp_path, whole):
    ref, ref_dir = whole
    stopped = _loop(tmp_path, accumulate=3)
    step = stopped.train_step

    def train_step(batch):
        tally = step(batch)
        if stopped.global_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return tally

    stopped.train_step = train_step
    with pytest.raises(KeyboardInterrupt, match="SIGTERM after step 6: checkpoint saved"):
        stopped.fit()
    resumed = _loop(tmp_path, accumulate=3)
    resumed.fit(resume=True)
    _assert_same_run(ref, resumed, ref_dir, tmp_path)


def test_resuming_with_another_accumulate_is_refused_naming_both(tmp_path):
    _loop(tmp_path, accumulate=2, max_steps=4).fit()
    with pytest.raises(StateMismatchError, match=r"trained with accumulate=2 \(batches per "
                                                 r"update\); this loop has accumulate=3"):
        _loop(tmp_path, accumulate=3).fit(resume=True)
    with pytest.raises(StateMismatchError, match=r"accumulate=2 .* has accumulate=1"):
        _loop(tmp_path).fit(resume=True)
    # A crafted checkpoint (checksum made anew) claiming no batches per update: damaged, not a
    # value to resume with.
    path = str(tmp_path / "checkpoint.npz")
    saved = ckpt.load(path)
    ckpt.save(path, saved.params, saved.optimizer, {**saved.meta, "accumulate": 0},
              fingerprint=_loop(tmp_path).fingerprint)
    with pytest.raises(CheckpointError, match=r"field 'accumulate' \(batches per update\) must "
                                              r"be >= 1, got 0"):
        _loop(tmp_path, accumulate=2).fit(resume=True)


@pytest.mark.slow
def test_a_checkpoint_written_before_accumulate_existed_is_one_batch_per_update(
        tmp_path, monkeypatch):
    save = ckpt.save

    def old_save(path, params, optim, meta, **kw):
        history = {k: v for k, v in meta["history"].items() if k != "updates"}
        meta = {**{k: v for k, v in meta.items() if k != "accumulate"}, "history": history}
        return save(path, params, optim, meta, **kw)

    whole = _loop(tmp_path / "whole", epochs=1)
    whole.fit()
    with monkeypatch.context() as m:
        m.setattr(ckpt, "save", old_save)
        _loop(tmp_path / "run", epochs=1, max_steps=4).fit()
    assert "accumulate" not in ckpt.load(str(tmp_path / "run" / "checkpoint.npz")).meta
    with pytest.raises(StateMismatchError, match=r"trained with accumulate=1 .* has "
                                                 r"accumulate=2"):
        _loop(tmp_path / "run", epochs=1, accumulate=2).fit(resume=True)
    resumed = _loop(tmp_path / "run", epochs=1)
    resumed.fit(resume=True)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "run")
    assert resumed.history["updates"] == whole.history["updates"] == whole.global_step


# ---------------------------------------------------------------- bad input, non-finite
@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                          (True, TypeError), ("x", TypeError)])
def test_bad_accumulate_is_refused_naming_it(value, error):
    loader = BucketLoader(SEQS[:8], batch_size=4, num_buckets=1)
    with pytest.raises(error, match=rf"accumulate must be .*, got accumulate={value!r}"):
        TrainLoop(LanguageModel.factory(vocab_size=20, hidden_size=8), loader,
                  progress=False, accumulate=value)



def _constant_loop(seqs=SEQS[:48], **kw):
    loader = BucketLoader(seqs, batch_size=4, num_buckets=1, shuffle=False)
    return TrainLoop(LanguageModel.factory(vocab_size=20, hidden_size=8), loader, epochs=1,
                     progress=False, seed=4, lr_schedule="epoch", lr_decay=1.0,
                     optimizer_params={"learning_rate": 0.05}, **kw)


@pytest.mark.slow
def test_skip_leaves_a_non_finite_batch_out_of_its_group():
    # Step 4 (rows 16-19) is the middle batch of the group of steps 3-5.
    loop = _constant_loop(accumulate=3, on_nonfinite="skip")
    loop.graphs = _Poison(loop, {4})
    loop.fit()
    assert (loop.global_step, loop.history["skipped_steps"], loop.history["updates"]) == \
        (12, 1, 4)
    poisoned = _constant_loop(accumulate=3, on_nonfinite="skip", max_steps=6)
    poisoned.graphs = _Poison(poisoned, {4})
    poisoned.fit()
    # Its second update is that of a group of steps 3 and 5 alone, tokens counted alike: the
    # last, shorter group of a run without rows 16-19.
    clean = _constant_loop(SEQS[:16] + SEQS[20:24], accumulate=3)
    clean.fit()
    assert clean.history["updates"] == poisoned.history["updates"] == 2
    for name, value in _params(clean).items():
        np.testing.assert_allclose(_params(poisoned)[name], value, rtol=1e-5, atol=1e-7,
                                   err_msg=name)


def test_error_raises_at_the_batch_and_a_non_finite_group_norm_is_named():
    loop = _constant_loop(accumulate=3)
    loop.graphs = _Poison(loop, {4})
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(nan\) at global step 5"):
        loop.fit()
    assert loop.history["updates"] == 1
    # Finite losses, an infinite gradient: caught by the norm of the group's update.
    loop = _constant_loop(accumulate=3)
    grads = loop._grads

    def infinite():
        out = grads()
        if loop.global_step == 4:  # the batch's own gradients, before they are added
            out[0][:] = float("inf")
        return out

    loop._grads = infinite
    with pytest.raises(NonFiniteError, match=r"non-finite gradient norm of the update of 3 "
                                             r"batches ending there \(accumulate=3\) \(\w+\) at "
                                             r"global step 6"):
        loop.fit()


# ------------------------------------------------------------------ review: epoch's last group
@pytest.mark.parametrize("accumulate", [1, 4])
@pytest.mark.parametrize("epoch", [0, 1])  # epoch 1 ends in the warm-down: its rate is lower
def test_a_stop_at_an_epochs_last_batch_keeps_the_epochs_last_step_record(tmp_path, epoch,
                                                                           accumulate):
    # 10 batches an epoch. With groups of 4 the last group is batches 9-10: a SIGTERM after
    # batch 9 waits for the group's end, the epoch's last batch (with 1, a SIGTERM during the
    # last batch stops there too). The resumed run must still write the step record that closes
    # the epoch's window, with the rate of its last update, as the uninterrupted run does, not
    # carry the window into the next epoch.
    whole = _loop(tmp_path / "whole", accumulate=accumulate)
    whole.fit()
    stopped = _loop(tmp_path / "run", accumulate=accumulate)
    spe = stopped.loader.sampler.num_batches(0)
    assert spe % 4 == 2
    at = (epoch + 1) * spe - (accumulate > 1)
    step = stopped.train_step

    def train_step(batch):
        tally = step(batch)
        if stopped.global_step == at:
            os.kill(os.getpid(), signal.SIGTERM)
        return tally

    stopped.train_step = train_step
    with pytest.raises(KeyboardInterrupt, match=f"SIGTERM after step {(epoch + 1) * spe}: "):
        stopped.fit()
    resumed = _loop(tmp_path / "run", accumulate=accumulate)
    resumed.fit(resume=True)
    _assert_same_run(whole, resumed, tmp_path / "whole", tmp_path / "run")


@pytest.mark.parametrize("lr_schedule", ["warmdown", "cosine"])
def test_a_group_updates_at_the_rate_one_batch_of_its_rows_would(lr_schedule):
    # The schedules follow the planned steps, which count batches: 4 batches of 8 plan 4 times
    # the steps of batches of 32. Update k of the batches of 32 is step k of 4 planned (t = k/4);
    # the group standing for it is steps 4k..4k+3 of 16, whose first has the same t. At its
    # last (t = (4k + 3)/16) the rate is lower: the warm-down's last update ran at a quarter of
    # the rate of the one batch of 32 rows.
    small = _one_bucket_loop("lm", 8, 4, 5.0, lr_schedule=lr_schedule)
    large = _one_bucket_loop("lm", 32, 1, 5.0, lr_schedule=lr_schedule)
    small.fit()
    large.fit()
    assert small.global_step == 4 * large.global_step == 16
    for name, value in _params(large).items():
        np.testing.assert_allclose(_params(small)[name], value, rtol=1e-5, atol=1e-5,
                                   err_msg=name)


def test_accumulate_above_an_epochs_batches_warns_of_one_update_per_epoch(caplog):
    loop = _constant_loop(accumulate=10**9)  # 12 batches an epoch
    with caplog.at_level("WARNING", logger="bucketrnn.training.loop"):
        loop.fit()
    assert loop.history["updates"] == 1
    assert ("accumulate=1000000000 is more than the 12 batches of epoch 0: every epoch makes "
            "one update, of all its batches (updates left in the run: 1)") in caplog.text
