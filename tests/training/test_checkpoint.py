"""Checkpoint files: round trip, strict fingerprint, atomic writes, no code from a file, one clear
error for a corrupted file, no non-finite values, clean temporaries, disk full; hostile zips
(bombs, overlapping or unexpected members, raw bytes) refused before or while reading, naming the
member."""

import errno
import io
import json
import os
import pickle
import re
import struct
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from bucketrnn import StateMismatchError
from bucketrnn.errors import CheckpointError, NonFiniteError
from bucketrnn.training import checkpoint as ckpt


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


def test_a_checkpoint_path_that_is_no_regular_file_says_what_it_is(tmp_path):
    (tmp_path / "zero.npz").symlink_to("/dev/zero")
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "gone.npz")
    for path, what in (("/dev/zero", r"it is not a regular file \(a character device\)"),
                       (str(tmp_path / "zero.npz"), r"it is a symbolic link to '/dev/zero', "
                                                    r"not a regular file \(a character "
                                                    r"device\)"),
                       (str(tmp_path / "dangling.npz"), r"it is a symbolic link to the missing "
                                                        r"'.*gone\.npz'"),
                       (str(tmp_path), r"it is not a regular file \(a directory\)")):
        with pytest.raises(FileNotFoundError, match=rf"^no checkpoint at '{path}': {what}$"):
            ckpt.load(path)


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


# ---------------------------------------------------------------- hostile zip structure
def _npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _zip(path, members):
    """Write a zip by hand: ``members`` are ``(name, payload)`` (stored) or ``(name, payload,
    method, declared_size)``; the CRCs are those of the payloads as given."""
    out, central = bytearray(), bytearray()
    for name, payload, *rest in members:
        method, size = rest or (zipfile.ZIP_STORED, len(payload))
        crc, raw = zlib.crc32(payload), name.encode()
        fields = (method, 0, 0, crc, len(payload), size, len(raw))
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, 0,
                               len(out)) + raw
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, *fields, 0) + raw + payload
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                      len(out), 0)
    with open(path, "wb") as f:
        f.write(bytes(out + central + end))


def _members(path):
    """The members of a saved checkpoint as ``(name, payload)``, stored."""
    return [(f"{k}.npy", _npy(a)) for k, a in _arrays(path).items()]


def _bomb(floats_mb=2861):
    """A raw DEFLATE stream of a .npy of ``floats_mb`` MiB of float64 zeros (2861: ~375M
    floats, 3.0 GB), made in a blink: full-flushed blocks are independent, so one compressed
    MiB of zeros repeats."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    count = floats_mb * 2**20 // 8
    head = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    head["shape"] = (count,)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, head)
    npy_head = buffer.getvalue()
    first = z.compress(npy_head) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(bytes(2**20)) + z.flush(zlib.Z_FULL_FLUSH)
    return first + block * floats_mb + z.flush(), len(npy_head) + count * 8


def test_a_zip_bomb_is_refused_before_anything_is_inflated(tmp_path):
    path = _saved(tmp_path)
    payload, size = _bomb()
    members = [m for m in _members(path) if m[0] != "param/w.npy"]
    _zip(path, members + [("param/w.npy", payload, zipfile.ZIP_DEFLATED, size)])
    assert os.path.getsize(path) < 4_000_000 and size > 2.9e9
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CheckpointError, match=re.escape(repr(path)) + ".*member "
                           "'param/w.npy' is compressed"):
            ckpt.load(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2 and peak < 20_000_000


def test_sizes_names_and_counts_of_members_are_checked_before_reading(tmp_path):
    path = _saved(tmp_path)
    members = _members(path)
    size = os.path.getsize(path)
    # A stored member declaring more bytes than the whole file holds.
    name, payload = members[0]
    _zip(path, [(name, payload, zipfile.ZIP_STORED, size * 10)] + members[1:])
    with pytest.raises(CheckpointError, match=f"member {name!r} declares {size * 10} bytes"):
        ckpt.load(path)
    for name in ("evil.npy", "param/w", "meta", "../param/x.npy", "optim"):
        _zip(path, members + [(name, _npy(np.zeros(1)))])
        with pytest.raises(CheckpointError, match=f"unexpected member {re.escape(repr(name))}"):
            ckpt.load(path)
    _zip(path, members + [members[0]])
    with pytest.raises(CheckpointError, match=f"member {members[0][0]!r} appears twice"):
        ckpt.load(path)
    many = [(f"param/p{i}.npy", b"") for i in range(ckpt.MAX_MEMBERS + 1 - len(members))]
    _zip(path, members + many)
    with pytest.raises(CheckpointError, match=f"{ckpt.MAX_MEMBERS + 1} members, more than "
                                              f"{ckpt.MAX_MEMBERS}"):
        ckpt.load(path)


def test_overlapping_members_are_refused(tmp_path):
    """Stored members that quote each other (one member's data holds the next one whole):
    each is no bigger than the file, together they are many times it."""
    path = str(tmp_path / "checkpoint.npz")
    inner = _npy(np.zeros(100_000))
    quoted = b""
    for depth in range(4):
        name = f"param/p{depth}.npy".encode()
        body = inner if depth == 0 else quoted
        quoted = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(body),
                             len(body), len(body), len(name), 0) + name + body
    # Central directory: each member starts inside the previous one's data.
    central, offset, entries = bytearray(), 0, []
    body = quoted
    for depth in reversed(range(4)):
        name = f"param/p{depth}.npy".encode()
        data = body[30 + len(name):]
        entries.append((name, offset, data))
        offset += 30 + len(name)
        body = data
    for name, at, data in entries:
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0,
                               zlib.crc32(data), len(data), len(data), len(name), 0, 0, 0, 0, 0,
                               at) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 4, 4, len(central), len(quoted), 0)
    with open(path, "wb") as f:
        f.write(quoted + bytes(central) + end)
    assert len(zipfile.ZipFile(path).read("param/p3.npy")) > 0  # a valid zip, as far as it goes
    with pytest.raises(CheckpointError, match="members overlap"):
        ckpt.load(path)


@pytest.mark.parametrize("content, match", [
    (b"\x01\x02raw bytes, not an array", "not a .npy array"),
    (_npy(np.array(["abc"])), "dtype <U3 is not numeric"),
    (_npy(np.zeros(2, dtype=[("a", "<f4")])), "is not numeric"),
    (_npy(np.zeros(4))[:-8], "header declares shape \\(4,\\) of float64: 32 bytes, it holds 24"),
    (_npy(np.zeros(4)) + b"\0" * 8, "32 bytes, it holds 40"),
])
def test_every_broken_member_is_one_error_naming_the_file_and_member(tmp_path, content, match):
    path = _saved(tmp_path)
    members = [m for m in _members(path) if m[0] != "param/w.npy"]
    _zip(path, members + [("param/w.npy", content)])
    with pytest.raises(CheckpointError, match=re.escape(repr(path)) + ".*member 'param/w.npy'.*"
                       + match):
        ckpt.load(path)


@pytest.mark.parametrize("key", ["param/raw", "param/w", "meta", "checksum"])
def test_a_member_stored_as_raw_bytes_is_a_checkpoint_error(tmp_path, key):
    # The tester's file: np.load hands back ``bytes`` for a member without the .npy suffix;
    # with the checksum made to match, loading died with "AttributeError: 'bytes' object has no
    # attribute 'dtype'".
    path = _saved(tmp_path)
    raw = b"\x00" * 16
    arrays = {k: a for k, a in _arrays(path).items() if k != key}
    arrays["checksum"] = np.frombuffer(ckpt._checksum(
        {**arrays, key: np.ascontiguousarray(raw)}).encode(), dtype=np.uint8)
    if key == "checksum":
        del arrays["checksum"]
    _zip(path, [(f"{k}.npy", _npy(a)) for k, a in arrays.items()] + [(key, raw)])
    with pytest.raises(CheckpointError, match=re.escape(repr(path)) + f".*member '{key}'"):
        ckpt.load(path)


def test_members_in_fortran_order_load_as_the_arrays_they_are(tmp_path):
    path = _saved(tmp_path)
    arrays = _arrays(path)
    arrays["param/m"] = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    _rewrite(path, arrays, fix_checksum=True)
    got = ckpt.load(path).params["m"]
    np.testing.assert_array_equal(got, arrays["param/m"])
    got += 1  # writable, like np.load's arrays


# ---------------------------------------------------------------- forged but well-typed meta
# As the training loop asks for them (bucketrnn.training.loop._META): the history's structure is
# checked by load itself, so a forged value fails at load, not mid-training.
_HISTORY_REQUIRED = {"history": dict, "history.epochs": list,
                     "history.train_seconds": (int, float), "history.epoch_acc": (dict, type(None))}


def _record(epoch, global_step=None, **figures):
    """An epoch record as the training loop appends it."""
    return {"kind": "epoch", "epoch": epoch,
            "global_step": 5 * (epoch + 1) if global_step is None else global_step,
            "train_loss": 4.5, "valid_loss": None, **figures}


def _history(**changes):
    acc = {key: 0 for key in ckpt.HISTORY_TALLY}
    acc.update(loss=12.5, seconds=0.25)
    history = {"epochs": [_record(0)],
               "train_seconds": 3.5, "real_tokens": 10, "slots": 12, "skipped_steps": 0,
               "epoch_acc": acc}
    history.update(changes)
    return history


def test_the_tally_keys_are_the_training_loops():
    from bucketrnn.training.metrics import tally as _tally

    assert sorted(_tally()) == sorted(ckpt.HISTORY_TALLY)


def test_a_well_formed_history_loads(tmp_path):
    path = str(tmp_path / "c.npz")
    for history in (_history(), _history(epoch_acc=None, epochs=[])):
        ckpt.save(path, {}, None, {"history": history})
        assert ckpt.load(path, required=_HISTORY_REQUIRED).meta["history"] == history


def _acc(**changes):
    return {**_history()["epoch_acc"], **changes}


@pytest.mark.parametrize("history, match", [
    # The tester's: "can only concatenate str (not "float") to str" mid-training.
    (_history(epoch_acc=_acc(loss="12.5")), r"'history\.epoch_acc\.loss' must be a number"),
    (_history(epoch_acc=_acc(rows=True)), r"'history\.epoch_acc\.rows' must be a number"),
    (_history(epoch_acc={k: v for k, v in _acc().items() if k != "slots"}),
     r"'history\.epoch_acc' must have the keys .*missing \['slots'\]"),
    (_history(epoch_acc=_acc(extra=1)), r"'history\.epoch_acc' .*unexpected \['extra'\]"),
    (_history(epoch_acc=_acc(seconds=-1.0)), r"'history\.epoch_acc\.seconds' must be a finite "
                                             r"number >= 0, got -1\.0"),
    (_history(epochs=[_record(0), 3]), r"'history\.epochs\[1\]' must be a dict, got 3"),
    (_history(epochs=[{"train_loss": -2.0}]), r"'history\.epochs\[0\]\.train_loss' must be a "
                                              "finite number >= 0"),
    (_history(train_seconds=-5.0), r"'history\.train_seconds' must be a finite number >= 0"),
    # The tester's: accepted, and the resumed run reported 5 epochs done with junk entries.
    (_history(epochs=[{"epoch": "x", "kind": [1]}] * 3),
     r"'history\.epochs\[0\]\.kind' must be 'epoch', got \[1\]"),
    (_history(epochs=[{"kind": "epoch", "epoch": "x", "global_step": 1}]),
     r"'history\.epochs\[0\]\.epoch' must be 0 .*got 'x'"),
    (_history(epochs=[_record(0), _record(2)]), r"'history\.epochs\[1\]\.epoch' must be 1"),
    (_history(epochs=[_record(1)]), r"'history\.epochs\[0\]\.epoch' must be 0"),
    (_history(epochs=[_record(0), _record(0)]), r"'history\.epochs\[1\]\.epoch' must be 1"),
    (_history(epochs=[{**_record(0), "epoch": False}]),
     r"'history\.epochs\[0\]\.epoch' must be 0"),
    (_history(epochs=[{**_record(0), "epoch": 0.0}]),
     r"'history\.epochs\[0\]\.epoch' must be 0"),
    (_history(epochs=[{k: v for k, v in _record(0).items() if k != "global_step"}]),
     r"'history\.epochs\[0\]\.global_step' must be an int >= 0 .*got None"),
    (_history(epochs=[_record(0, global_step="7")]),
     r"'history\.epochs\[0\]\.global_step' must be an int >= 0"),
    (_history(epochs=[_record(0, global_step=9), _record(1, global_step=4)]),
     r"'history\.epochs\[1\]\.global_step' must be an int >= 9"),
    (_history(epochs=[_record(0, train_loss="4.5")]),
     r"'history\.epochs\[0\]\.train_loss' must be a number or null, got '4\.5'"),
    (_history(epochs=[_record(0, valid_perplexity=[1])]),
     r"'history\.epochs\[0\]\.valid_perplexity' must be a number or null"),
])
def test_a_forged_history_is_refused_at_load(tmp_path, history, match):
    path = str(tmp_path / "c.npz")
    ckpt.save(path, {}, None, {"history": history})
    with pytest.raises(CheckpointError, match=re.escape(repr(path)) + ".*field " + match):
        ckpt.load(path, required=_HISTORY_REQUIRED)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_in_meta_are_refused(tmp_path, text):
    """save writes them as null; Python's json would read these back as floats."""
    path = _saved(tmp_path)
    arrays = _arrays(path)
    doc = json.loads(arrays["meta"].tobytes())
    doc["meta"]["history"] = {"train_seconds": "@"}
    arrays["meta"] = np.frombuffer(json.dumps(doc).replace('"@"', text).encode(), np.uint8)
    _rewrite(path, arrays, fix_checksum=True)
    with pytest.raises(CheckpointError, match=f"{text} is not strict JSON"):
        ckpt.load(path)


# As bucketrnn.training.loop._META asks: the epoch count and global step checked against
# the records.
_LOOP_REQUIRED = {"epoch": int, "epoch_finished": bool, "global_step": int, **_HISTORY_REQUIRED}


@pytest.mark.parametrize("finished", [True, False])
@pytest.mark.parametrize("epoch, records, step, match", [
    (2, 3, 20, r"field 'history\.epochs' holds 3 epoch records, but field 'epoch' says 2"),
    (2, 0, 20, r"field 'history\.epochs' holds 0 epoch records, but field 'epoch' says 2"),
    (0, 1, 20, r"field 'history\.epochs' holds 1 epoch records, but field 'epoch' says 0"),
    (1, 1, 4, r"field 'history\.epochs\[0\]\.global_step' is 5, past field 'global_step' "
              r"\(4\)"),
])
def test_the_records_must_be_the_epochs_done(tmp_path, finished, epoch, records, step, match):
    path = str(tmp_path / "c.npz")
    meta = {"epoch": epoch, "epoch_finished": finished, "global_step": step,
            "history": _history(epochs=[_record(i) for i in range(records)])}
    ckpt.save(path, {}, None, meta)
    with pytest.raises(CheckpointError, match=re.escape(repr(path)) + ".*" + match):
        ckpt.load(path, required=_LOOP_REQUIRED)


def test_real_checkpoints_mid_epoch_at_an_epoch_end_and_at_the_end_load(tmp_path):
    """The relation enforced above is the training loop's own: checked on the checkpoints it
    writes mid-epoch, at an epoch end and at the end of the run, with its own _META."""
    from _resume import _crash, _loop

    from bucketrnn.training.loop import _META

    seen = set()
    for name, stop in (("mid-epoch 1", lambda spe: ("max_steps", spe + 2)),
                       ("mid-epoch 0", lambda spe: ("max_steps", spe - 2)),
                       # max_steps on an epoch's last step finishes that epoch
                       ("at the last step of epoch 0", lambda spe: ("max_steps", spe)),
                       ("epoch 0's end, crashed after", lambda spe: ("crash", spe + 1)),
                       ("end of the run", lambda spe: ("max_steps", None))):
        loop = _loop(tmp_path / name, epochs=2, checkpoint_every=1000)
        how, step = stop(loop.loader.sampler.num_batches(0))
        if how == "crash":
            _crash(loop, step)
        else:
            loop.max_steps = step
            loop.fit()
        meta = ckpt.load(str(tmp_path / name / "checkpoint.npz"), required=_META).meta
        assert len(meta["history"]["epochs"]) == meta["epoch"], name
        seen.add((meta["epoch"], meta["epoch_finished"]))
    assert seen == {(1, False), (0, False), (1, True), (2, True)}
