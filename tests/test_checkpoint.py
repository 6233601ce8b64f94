"""Checkpoint files: round trip, strict fingerprint, atomic writes, no code from a file, one clear
error for a corrupted file, no non-finite values, clean temporaries, disk full."""

import errno
import json
import os
import pickle
import re

import numpy as np
import pytest

from bucketrnn import StateMismatchError
from bucketrnn import checkpoint as ckpt
from bucketrnn.errors import CheckpointError, NonFiniteError


def test_round_trip(tmp_path):
    path = str(tmp_path / "c.npz")
    params = {"a_weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(1)}
    ckpt.save(path, params, None, {"step": 7, "nested": {"x": [1, 2]}},
              fingerprint={"model.hidden_size": 8})
    got = ckpt.load(path, fingerprint={"model.hidden_size": 8})
    assert got.meta == {"step": 7, "nested": {"x": [1, 2]}}
    assert got.optimizer is None
    np.testing.assert_array_equal(got.params["a_weight"], params["a_weight"])
    assert got.params["a_weight"].dtype == np.float32


def test_other_config_is_refused_naming_every_difference(tmp_path):
    path = str(tmp_path / "c.npz")
    ckpt.save(path, {}, None, {}, fingerprint={"model.hidden_size": 8, "seed": 0, "lr": 0.1})
    with pytest.raises(StateMismatchError, match=r"model\.hidden_size: checkpoint 8, now 16") as e:
        ckpt.load(path, fingerprint={"model.hidden_size": 16, "seed": 0, "lr": 0.2})
    assert "lr: checkpoint 0.1, now 0.2" in str(e.value)
    assert "seed" not in str(e.value)


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "c.npz")
    ckpt.save(path, {"w": np.zeros(3)}, None, {"step": 1})
    before = open(path, "rb").read()

    def crash(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save(path, {"w": np.ones(3)}, None, {"step": 2})
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind
    assert ckpt.load(path).meta["step"] == 1


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupted or not a bucketrnn checkpoint"):
        ckpt.load(str(bad))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ckpt.load(str(tmp_path / "absent.npz"))


def test_params_must_be_a_dict(tmp_path):
    with pytest.raises(TypeError, match="params must be a dict"):
        ckpt.save(str(tmp_path / "c.npz"), [np.zeros(1)], None, {})


# ---------------------------------------------------------------- no code from a file
class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _blob(marker):
    return np.frombuffer(pickle.dumps(_Payload(marker)), dtype=np.uint8)


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, arrays, fix_checksum=False):
    if fix_checksum:  # as an attacker who knows the format would
        arrays = dict(arrays)
        arrays["checksum"] = np.frombuffer(ckpt._checksum(arrays).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _saved(tmp_path):
    path = str(tmp_path / "checkpoint.npz")
    params = {"w": np.arange(64, dtype=np.float32), "ids": np.arange(5, dtype=np.uint8)}
    ckpt.save(path, params, None, {"global_step": 3}, fingerprint={"seed": 0})
    return path


def test_a_pickle_in_any_byte_blob_runs_no_code_and_is_refused(tmp_path):
    path = _saved(tmp_path)
    marker = tmp_path / "pwned"
    original = _arrays(path)
    blobs = [k for k, a in original.items() if a.dtype == np.uint8]
    assert {"meta", "checksum", "param/ids"} <= set(blobs)
    for key in blobs:
        _rewrite(path, {**original, key: _blob(marker)})
        with pytest.raises(CheckpointError, match=re.escape(repr(path))):
            ckpt.load(path, fingerprint={"seed": 0})
    # With a checksum that matches: the meta is still no JSON, and an array stays numbers.
    _rewrite(path, {**original, "meta": _blob(marker)}, fix_checksum=True)
    with pytest.raises(CheckpointError, match="'meta' record is not JSON"):
        ckpt.load(path)
    _rewrite(path, {**original, "param/ids": _blob(marker)}, fix_checksum=True)
    assert ckpt.load(path).params["ids"].tobytes() == _blob(marker).tobytes()
    # Every byte blob at once, the whole file a pickle, and an object array.
    _rewrite(path, {k: _blob(marker) if k in blobs else a for k, a in original.items()})
    with pytest.raises(CheckpointError, match="not a bucketrnn checkpoint"):
        ckpt.load(path)
    with open(path, "wb") as f:
        pickle.dump(_Payload(marker), f)
    with pytest.raises(CheckpointError, match="unreadable"):
        ckpt.load(path)
    with open(path, "wb") as f:
        np.savez(f, **{**original, "meta": np.array([_Payload(marker)], dtype=object)})
    with pytest.raises(CheckpointError, match="unreadable"):
        ckpt.load(path)
    assert not marker.exists()


def test_the_old_pickle_format_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "checkpoint.npz")
    doc = {"format": 1, "fingerprint": {}, "meta": {"global_step": 3}}
    with open(path, "wb") as f:
        np.savez(f, **{"param/w": np.zeros(2), "trainer": _blob(marker),
                       "meta": np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)})
    with pytest.raises(StateMismatchError, match=r"has format 1 .*pickle, which is never loaded"):
        ckpt.load(path)
    assert not marker.exists()


def test_save_refuses_bytes_for_the_optimizer_state(tmp_path):
    with pytest.raises(TypeError, match="pickle of Trainer.save_states is never stored"):
        ckpt.save(str(tmp_path / "c.npz"), {}, b"\x80\x04", {})


# ---------------------------------------------------------------- corrupted files
@pytest.mark.parametrize("keep", [0, 1, 5, 30, 100, 0.5, -100, -22, -1])
def test_truncated_files_are_one_clear_error(tmp_path, keep):
    path = _saved(tmp_path)
    data = open(path, "rb").read()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    with open(path, "wb") as f:
        f.write(data[:cut])
    with pytest.raises(CheckpointError, match=re.escape(repr(path)) + ".* corrupted"):
        ckpt.load(path)


def test_a_bit_flip_in_a_parameter_is_caught(tmp_path):
    path = _saved(tmp_path)
    data = bytearray(open(path, "rb").read())
    at = data.find(np.arange(64, dtype=np.float32).tobytes()) + 41
    data[at] ^= 0x04
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):  # the zip's CRC-32
        ckpt.load(path)
    # Rewritten with a valid zip around it: the checksum over the arrays still sees it.
    path = _saved(tmp_path)
    arrays = _arrays(path)
    arrays["param/w"] = arrays["param/w"].copy()
    arrays["param/w"].view(np.uint32)[10] ^= 1
    _rewrite(path, arrays)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        ckpt.load(path)


def test_missing_and_mistyped_fields_are_named(tmp_path):
    path = _saved(tmp_path)
    original = _arrays(path)
    for drop, match in (("checksum", "checksum mismatch"), ("meta", "no 'meta' record"),
                        ("param/w", "checksum mismatch")):
        _rewrite(path, {k: a for k, a in original.items() if k != drop})
        with pytest.raises(CheckpointError, match=match):
            ckpt.load(path)
    _rewrite(path, original)
    with pytest.raises(CheckpointError, match="field 'epoch' is missing"):
        ckpt.load(path, required={"global_step": int, "epoch": int})
    for value, match in (("3", "must be int"), (-3, "must be >= 0"), (True, "must be int")):
        ckpt.save(path, {}, None, {"global_step": value})
        with pytest.raises(CheckpointError, match=f"field 'global_step' {match}"):
            ckpt.load(path, required={"global_step": int})
    ckpt.save(path, {}, None, {"history": {"epochs": 3}})
    with pytest.raises(CheckpointError, match="field 'history.epochs' must be list"):
        ckpt.load(path, required={"history.epochs": list})


def test_non_finite_values_are_never_written_nor_loaded(tmp_path):
    path = _saved(tmp_path)
    before = open(path, "rb").read()
    bad = {"w": np.array([1.0, np.nan], dtype=np.float32)}
    with pytest.raises(NonFiniteError, match="param/w holds non-finite values"):
        ckpt.save(path, bad, None, {"global_step": 4})
    assert open(path, "rb").read() == before
    _rewrite(path, {**_arrays(path), "param/w": bad["w"]}, fix_checksum=True)
    with pytest.raises(CheckpointError, match="param/w holds non-finite values"):
        ckpt.load(path)


def test_meta_is_strict_json_with_non_finite_numbers_as_null(tmp_path):
    path = str(tmp_path / "c.npz")
    ckpt.save(path, {}, None, {"loss": float("nan"), "x": [float("inf"), 1.5]})
    assert ckpt.load(path).meta == {"loss": None, "x": [None, 1.5]}
    assert ckpt.json_dumps({"a": np.float32("nan"), "b": 2.0}) == '{"a": null, "b": 2.0}'


# ---------------------------------------------------------------- killed and failed writes
def test_disk_full_names_the_path_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    before = open(path, "rb").read()
    real = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real(fd, mode)))
    with pytest.raises(OSError, match=re.escape(repr(path)) + ": the disk is full") as e:
        ckpt.save(path, {"w": np.ones(3)}, None, {"global_step": 4})
    monkeypatch.undo()
    assert e.value.errno == errno.ENOSPC
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz"]


def test_leftover_temporaries_of_a_killed_write_are_cleaned(tmp_path):
    names = ["checkpoint.npz.ab_d1234.tmp", "checkpoint.npz.x.tmp", "summary.json.abcd1234.tmp",
             "checkpoint.npz", "notes.tmp", "checkpoint.npz.abcd1234.tmp.keep"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = ckpt.clean_temporaries(str(tmp_path))
    assert removed == [str(tmp_path / "checkpoint.npz.ab_d1234.tmp")]
    assert sorted(os.listdir(tmp_path)) == sorted(names[1:])
