"""Resume from any checkpoint equals the uninterrupted run; checkpoints that must be refused are.

"Equals" means: the same number of steps, bit-identical parameters, and the same
``metrics.jsonl`` records apart from timing fields.
"""

import errno
import json
import os
import pickle
import signal

import numpy as np
import pytest
from _resume import OPTIMIZERS, _assert_same_run, _crash, _loop, _records

from bucketrnn.errors import CheckpointError, StateMismatchError
from bucketrnn.training import checkpoint as ckpt


@pytest.fixture(scope="module", params=sorted(OPTIMIZERS))
def whole(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp(f"whole-{request.param}")
    loop = _loop(run_dir, request.param)
    loop.fit()
    return request.param, loop, run_dir


@pytest.mark.parametrize("where, crash_at, at_epoch_end", [
    ("mid-epoch", lambda spe: spe + 4, False),
    ("end of epoch 0", lambda spe: spe, True),
    ("end of epoch 1, one step after it", lambda spe: 2 * spe + 1, True),
])
def test_resume_from_any_checkpoint_equals_the_uninterrupted_run(tmp_path, whole, where,
                                                                 crash_at, at_epoch_end):
    optimizer, ref, ref_dir = whole
    crashed = _loop(tmp_path, optimizer)
    spe = crashed.loader.sampler.num_batches(0)
    assert spe % 4 and (2 * spe + 1) % 4  # the epoch-end checkpoints are the latest ones
    _crash(crashed, crash_at(spe))
    meta = ckpt.load(str(tmp_path / "checkpoint.npz")).meta
    assert meta["epoch_finished"] is at_epoch_end
    resumed = _loop(tmp_path, optimizer)
    resumed.fit(resume=True)
    _assert_same_run(ref, resumed, ref_dir, tmp_path)
    assert [r["epoch"] for r in resumed.history["epochs"]] == [0, 1, 2]


def test_a_finished_run_given_more_epochs_trains_exactly_the_missing_ones(tmp_path, whole):
    optimizer, ref, ref_dir = whole
    # The learning-rate curve spans the whole run's steps from the start (schedule_steps):
    # without it, the first part would decay over one epoch alone.
    _loop(tmp_path, optimizer, epochs=1, schedule_steps=ref.planned_steps).fit()
    more = _loop(tmp_path, optimizer, epochs=3, schedule_steps=ref.planned_steps)
    more.fit(resume=True)
    _assert_same_run(ref, more, ref_dir, tmp_path)


def test_resuming_a_finished_run_trains_nothing(tmp_path, whole):
    optimizer, ref, ref_dir = whole
    first = _loop(tmp_path, optimizer)
    first.fit()
    again = _loop(tmp_path, optimizer)
    again.fit(resume=True)
    _assert_same_run(ref, again, ref_dir, tmp_path)
    assert _records(tmp_path) == _records(ref_dir)


def test_max_steps_at_an_epoch_end_then_the_rest(tmp_path, whole):
    optimizer, ref, ref_dir = whole
    stop = _loop(tmp_path, optimizer)
    stop.max_steps = stop.loader.sampler.num_batches(0)
    stop.fit()
    rest = _loop(tmp_path, optimizer)
    rest.fit(resume=True)
    _assert_same_run(ref, rest, ref_dir, tmp_path)


@pytest.mark.parametrize("epochs_done", [1, 2])
def test_an_epoch_that_ends_at_max_steps_is_recorded(tmp_path, epochs_done):
    loop = _loop(tmp_path, epochs=2)
    loop.max_steps = epochs_done * loop.loader.sampler.num_batches(0)
    history = loop.fit()
    assert [r["epoch"] for r in history["epochs"]] == list(range(epochs_done))
    assert [r["epoch"] for r in _records(tmp_path) if r["kind"] == "epoch"] == \
        list(range(epochs_done))
    meta = ckpt.load(str(tmp_path / "checkpoint.npz")).meta
    assert (meta["epoch"], meta["epoch_finished"], meta["global_step"]) == \
        (epochs_done, True, loop.max_steps)


def _stop_at(loop, at_step, signum):
    step = loop.train_step

    def train_step(batch):
        tally = step(batch)
        if loop.global_step == at_step:
            os.kill(os.getpid(), signum)  # as a user or a scheduler would, mid-step
        return tally

    loop.train_step = train_step


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stop_mid_window_then_resume_writes_the_uninterrupted_records(tmp_path, whole,
                                                                          signame):
    optimizer, ref, ref_dir = whole
    stopped = _loop(tmp_path, optimizer)
    spe = stopped.loader.sampler.num_batches(0)
    # Mid-epoch, mid-window (3 steps from the epoch's start), not at a checkpoint (4).
    at = spe + 4
    assert (at - spe) % 3 and at % 4
    _stop_at(stopped, at, getattr(signal, signame))
    with pytest.raises(KeyboardInterrupt, match=f"{signame} after step {at}"):
        stopped.fit()
    # The stopped run's file shows every step it trained, the last window's too.
    steps = [r for r in _records(tmp_path) if r["kind"] == "step"]
    assert steps[-1]["global_step"] == at
    resumed = _loop(tmp_path, optimizer)
    resumed.fit(resume=True)
    _assert_same_run(ref, resumed, ref_dir, tmp_path)


def test_max_steps_mid_window_then_more_steps_writes_the_uninterrupted_records(tmp_path,
                                                                               whole):
    optimizer, ref, ref_dir = whole
    # mid-window (3), not at a checkpoint (4); the learning-rate curve is the whole run's
    first = _loop(tmp_path, optimizer, max_steps=5)
    first.fit()
    assert [r["global_step"] for r in _records(tmp_path) if r["kind"] == "step"][-1] == 5
    rest = _loop(tmp_path, optimizer)
    rest.fit(resume=True)
    _assert_same_run(ref, rest, ref_dir, tmp_path)


# ---------------------------------------------------------------- refused checkpoints
def _edit(path, meta=None, drop_optimizer=False, arrays=None, drop_meta=()):
    """Rewrite a checkpoint as an attacker who knows the format would (valid checksum)."""
    with np.load(path, allow_pickle=False) as z:
        items = {k: z[k] for k in z.files}
    doc = json.loads(items["meta"].tobytes())
    doc["meta"].update(meta or {})
    for key in drop_meta:
        doc["meta"].pop(key)
    if drop_optimizer:
        doc["optimizer"] = None
        items = {k: a for k, a in items.items() if not k.startswith("optim/")}
    items.update(arrays or {})
    items["meta"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    items["checksum"] = np.frombuffer(ckpt._checksum(items).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **items)


def _stopped_run(run_dir):
    loop = _loop(run_dir, max_steps=6)
    loop.fit()
    return str(run_dir / "checkpoint.npz")


def test_a_checkpoint_without_optimizer_state_is_refused_not_reset(tmp_path):
    path = _stopped_run(tmp_path)
    _edit(path, drop_optimizer=True)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        _loop(tmp_path).fit(resume=True)


@pytest.mark.parametrize("offset, match", [
    (10**9, r"metrics_offset=1000000000, which is beyond the end of"),
    (-5, r"field 'metrics_offset' must be >= 0"),
    (7, "metrics_offset=7, which is not a line end"),
    ("12", "field 'metrics_offset' must be int"),
])
def test_absurd_metrics_offsets_are_refused_and_nothing_changes(tmp_path, offset, match):
    path = _stopped_run(tmp_path)
    _edit(path, meta={"metrics_offset": offset})
    metrics = (tmp_path / "metrics.jsonl").read_bytes()
    loop = _loop(tmp_path)
    with pytest.raises(CheckpointError, match=match):
        loop.fit(resume=True)
    assert loop.global_step == 0 and loop.loader.sampler.step == 0
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics


def test_a_broken_loader_state_is_one_clear_error(tmp_path):
    path = _stopped_run(tmp_path)
    _edit(path, meta={"loader": {"nothing": 1}})
    with pytest.raises(StateMismatchError, match="sampler state must have keys"):
        _loop(tmp_path).fit(resume=True)


@pytest.mark.parametrize("meta", [{"epoch": 1}, {"epoch": 1, "epoch_finished": True}])
def test_an_epoch_that_disagrees_with_the_loader_is_refused(tmp_path, meta):
    # Checksum recomputed: the loop would skip the rest of epoch 0 if it believed the epoch.
    path = _stopped_run(tmp_path)
    # With a record for epoch 0 too, or load refuses it sooner (records != epochs done).
    history = ckpt.load(path).meta["history"]
    history["epochs"] = [{"kind": "epoch", "epoch": 0, "global_step": 6}]
    _edit(path, meta={**meta, "history": history})
    loop = _loop(tmp_path)
    with pytest.raises(CheckpointError, match="is inconsistent: the loop is at epoch 1"):
        loop.fit(resume=True)
    assert loop.global_step == 0


def test_a_checkpoint_of_the_pickle_format_is_refused_and_runs_no_code(tmp_path):
    path = _stopped_run(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with np.load(path, allow_pickle=False) as z:
        items = {k: z[k] for k in z.files if k.startswith("param/")}
    doc = json.loads(np.load(path)["meta"].tobytes())
    doc["format"] = 1  # what bucketrnn wrote before: the Trainer's pickle under "trainer"
    items["trainer"] = np.frombuffer(pickle.dumps(Payload()), dtype=np.uint8)
    items["meta"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **items)
    with pytest.raises(StateMismatchError, match="format 1"):
        _loop(tmp_path).fit(resume=True)
    assert not marker.exists()


def test_a_nan_checkpoint_is_refused_on_resume(tmp_path):
    path = _stopped_run(tmp_path)
    with np.load(path) as z:
        name = sorted(k for k in z.files if k.startswith("param/"))[0]
        bad = z[name].copy()
    bad.flat[0] = np.nan
    _edit(path, arrays={name: bad})
    with pytest.raises(CheckpointError, match=f"{name} holds non-finite values"):
        _loop(tmp_path).fit(resume=True)


@pytest.mark.parametrize("dtype", [np.int8, np.float64, np.float16])
def test_a_parameter_of_another_dtype_is_refused_naming_it(tmp_path, dtype):
    path = _stopped_run(tmp_path)
    with np.load(path) as z:
        name = sorted(k for k in z.files if k.startswith("param/"))[0]
        forged = z[name].astype(dtype)
    _edit(path, arrays={name: forged})
    with pytest.raises(CheckpointError, match=f"parameter {name[len('param/'):]} is "
                                              f"{np.dtype(dtype).name}, the model's float32"):
        _loop(tmp_path).fit(resume=True)


def test_run_file_digests_are_recorded_and_a_resume_with_others_is_refused(tmp_path):
    digests = {"vocab.json": "a" * 64, "classes.json": "b" * 64}
    _loop(tmp_path, max_steps=3, run_files=digests).fit()
    assert ckpt.load(str(tmp_path / "checkpoint.npz")).meta["run_files"] == digests
    with pytest.raises(StateMismatchError, match="classes.json differs from the one the "
                                                 "checkpoint was trained with"):
        _loop(tmp_path, run_files={**digests, "classes.json": "c" * 64}).fit(resume=True)
    _edit(str(tmp_path / "checkpoint.npz"), meta={"run_files": {"vocab.json": "no digest"}})
    with pytest.raises(CheckpointError, match="field 'run_files.vocab.json' must be a SHA-256"):
        _loop(tmp_path, run_files=digests).fit(resume=True)


# ---------------------------------------------------------------- files around a run
def test_a_torn_metrics_line_and_leftover_temporaries_are_cleaned_on_resume(tmp_path, whole):
    optimizer, ref, ref_dir = whole
    crashed = _loop(tmp_path, optimizer)
    _crash(crashed, crashed.loader.sampler.num_batches(0) + 4)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "glo')  # killed mid-write
    leftover = tmp_path / "checkpoint.npz.k1ll3d_x.tmp"
    leftover.write_bytes(b"PK\x03\x04 half a checkpoint")
    resumed = _loop(tmp_path, optimizer)
    resumed.fit(resume=True)
    assert not leftover.exists()
    _assert_same_run(ref, resumed, ref_dir, tmp_path)


def test_disk_full_during_training_names_the_path_and_keeps_the_checkpoint(tmp_path,
                                                                         monkeypatch):
    loop = _loop(tmp_path)
    step = loop.train_step
    path = tmp_path / "checkpoint.npz"

    def train_step(batch):
        if loop.global_step == 4:  # the step-4 checkpoint is written; fill the disk
            monkeypatch.setattr(os, "fdopen", full)
        return step(batch)

    def full(fd, mode):
        os.close(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    loop.train_step = train_step
    with pytest.raises(OSError, match=f"could not write '{path}': the disk is full") as e:
        loop.fit()
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    assert ckpt.load(str(path)).meta["global_step"] == 4
    assert sorted(os.listdir(tmp_path)) == [".lock", "checkpoint.npz", "metrics.jsonl"]


def test_a_checkpoint_of_another_schedule_is_refused(tmp_path):
    from bucketrnn.training import checkpoint as ckpt

    _loop(tmp_path, max_steps=5).fit()
    with pytest.raises(StateMismatchError, match=r"trained with lr_schedule='warmdown', "
                                                 r"schedule_steps=None, warmdown=0.5; this loop "
                                                 r"has lr_schedule='epoch', lr_decay=0.5"):
        _loop(tmp_path, lr_schedule="epoch").fit(resume=True)
    with pytest.raises(StateMismatchError, match=r"this loop has lr_schedule='warmdown', "
                                                 r"schedule_steps=None, warmdown=0.3"):
        _loop(tmp_path, warmdown=0.3).fit(resume=True)
    # A checkpoint written before the schedule was recorded halved the rate every epoch.
    assert ckpt.load(str(tmp_path / "checkpoint.npz")).meta["schedule"]["lr_schedule"] == \
        "warmdown"
    _edit(str(tmp_path / "checkpoint.npz"), drop_meta=["schedule"])
    with pytest.raises(StateMismatchError, match=r"trained with lr_schedule='epoch'"):
        _loop(tmp_path).fit(resume=True)
    _loop(tmp_path, lr_schedule="epoch").fit(resume=True)
    # A crafted schedule is named, not echoed whole.
    _edit(str(tmp_path / "checkpoint.npz"), meta={"schedule": {"lr_schedule": "x" * 10**6}})
    with pytest.raises(StateMismatchError, match=r"trained with lr_schedule='xxx") as e:
        _loop(tmp_path).fit(resume=True)
    assert len(str(e.value)) < 500
