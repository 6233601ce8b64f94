"""Checkpoints that survive a crash and never run code: atomic writes, strict checked loads.

A checkpoint is one ``.npz`` file of named arrays, read with ``allow_pickle=False``:

``param/<name>``
    Every parameter.
``optim/<param name>/<path>``
    The optimizer's per-parameter state (:mod:`bucketrnn.training.optim_state`; never the pickle of
    ``gluon.Trainer.save_states``).
``meta``
    UTF-8 JSON: the format number, the fingerprint of the configuration that made it, the
    optimizer's structure and counters, and the caller's ``meta`` (loop position, loader
    ``state_dict``, the seed the random state is derived from at every step, metrics so far).
    Non-finite numbers are written as ``null``: the document is strict JSON.
``checksum``
    SHA-256 (hex, ASCII) over every other array's name, dtype, shape and bytes.

:func:`load` refuses, with one :class:`~bucketrnn.errors.CheckpointError` naming the file and
what is wrong (and the member, for one of the zip), anything that is not such a file: truncated
or bit-flipped files (the checksum), missing or mistyped fields, pickles, object arrays,
non-finite parameters. The zip's directory is checked before any member is read, so a crafted
file costs no more memory or time than its size: ``np.savez`` stores members uncompressed, so a
compressed member (a zip bomb), one larger than the file, members that overlap, an unexpected
name or more than :data:`MAX_MEMBERS` members are refused unread. Each member must be a ``.npy``
array of a numeric dtype whose header's shape matches its bytes. :func:`save` refuses to write
non-finite values (:class:`~bucketrnn.errors.NonFiniteError`).

Trust: a checkpoint is trusted data. Loading one can never run code (nothing is unpickled or
evaluated: invariant 7), and damage (truncation, bit flips, a torn copy) is caught by the zip's
CRC-32 and the checksum. The checksum is not a MAC: whoever can write the file can recompute it,
so a deliberately forged checkpoint (other parameters, a moved loader position, an edited
history) is not detected. :func:`load` checks cheap structural invariants (types, ranges,
shapes, the history's structure) so that a forged value fails at load with a
:class:`~bucketrnn.errors.CheckpointError` rather than mid-training, but it cannot tell a forged
value of the right shape from a real one: resume only from checkpoints your own runs wrote.

Writes go through :func:`~bucketrnn.files.atomic_write` (re-exported here): a temporary
file in
the same directory (``<name>.XXXXXXXX.tmp``), flushed and ``fsync``-ed, then ``os.replace``-d
over the target, and the directory ``fsync``-ed: a crash at any moment leaves either the previous
checkpoint or the new one, never a torn file (and :func:`clean_temporaries` removes the
temporary file a killed writer leaves).

Examples
--------
>>> import os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.npz")
>>> save(path, {"w": np.ones(2)}, None, {"step": 3}, fingerprint={"lr": 0.1})
>>> ckpt = load(path, fingerprint={"lr": 0.1}, required={"step": int})
>>> ckpt.meta["step"], ckpt.params["w"].tolist(), ckpt.optimizer
(3, [1.0, 1.0], None)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from bucketrnn.errors import CheckpointError, NonFiniteError, StateMismatchError
from bucketrnn.files import atomic_write, not_regular
from bucketrnn.training.optim_state import PREFIX as OPTIM_PREFIX
from bucketrnn.training.optim_state import OptimizerState
from bucketrnn.training.rundir import CHECKPOINT, clean_temporaries
from bucketrnn.validation import differences, is_int

__all__ = ["Checkpoint", "FILENAME", "HISTORY_TALLY", "atomic_write", "check_fingerprint",
           "clean_temporaries", "json_dumps", "load", "save"]

FORMAT = 2
FILENAME = CHECKPOINT  # in a run directory (bucketrnn.training.rundir names its files)
PARAM_PREFIX = "param/"
# Bounds on what load reads: members (parameters and optimizer states, with room to spare) and
# the dtypes an array may have (numbers: bool, integers, floats, complex).
MAX_MEMBERS = 10_000
NUMERIC_KINDS = "biufc"
LEGACY = "trainer"  # format 1's pickled Trainer state: named in the refusal, never read
# The sums the training loop keeps over an epoch (``history.epoch_acc``): the fields of a
# bucketrnn.training.metrics tally, defined here because a checkpoint's format depends on them.
HISTORY_TALLY = ("loss", "count", "correct", "rows", "real", "slots", "steps", "skipped",
                 "seconds")


def _finite_or_none(value):
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def json_dumps(obj, **kwargs) -> str:
    """Strict JSON text of ``obj``: NaN and infinities become ``null`` (``json.dumps`` would
    write ``NaN``/``Infinity``, which JSON parsers other than Python's reject)."""
    return json.dumps(_finite_or_none(obj), allow_nan=False, **kwargs)


def _checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name != "checksum":
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
            h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Checkpoint:
    """What :func:`load` returns: parameter arrays, optimizer state (or None), metadata."""

    params: dict
    optimizer: OptimizerState | None
    meta: dict


def save(path: str, params: dict, optimizer: OptimizerState | None, meta: dict,
         fingerprint: dict | None = None) -> None:
    """Atomically write a checkpoint.

    Parameters
    ----------
    path : str
        The ``.npz`` file to (over)write.
    params : dict of str to numpy.ndarray
        Parameter values by name.
    optimizer : OptimizerState or None
        From :func:`bucketrnn.training.optim_state.capture`; None when there is none to save (the
        optimizer runs on kvstore servers).
    meta : dict
        JSON-able loop state.
    fingerprint : dict, optional
        Flat description of the configuration; :func:`load` refuses another one.

    Raises
    ------
    NonFiniteError
        A parameter or optimizer array holds NaN or infinity; nothing is written.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> array, got {type(params).__name__}")
    if optimizer is not None and not isinstance(optimizer, OptimizerState):
        raise TypeError(f"optimizer must be an optim_state.OptimizerState or None, got "
                        f"{type(optimizer).__name__} (the pickle of Trainer.save_states is "
                        "never stored)")
    arrays = {f"{PARAM_PREFIX}{name}": np.asarray(value) for name, value in params.items()}
    if optimizer is not None:
        arrays.update(optimizer.arrays)
    for name, a in arrays.items():
        if a.dtype.kind not in NUMERIC_KINDS or a.dtype.hasobject:
            raise TypeError(f"{name} has dtype {a.dtype}; a checkpoint holds numbers only")
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise NonFiniteError(f"refusing to write {path!r}: {name} holds non-finite values "
                                 "(NaN or infinity); any previous checkpoint is kept", what=name)
    doc = {"format": FORMAT, "fingerprint": fingerprint or {}, "meta": meta,
           "optimizer": None if optimizer is None else optimizer.doc}
    arrays["meta"] = np.frombuffer(json_dumps(doc, sort_keys=True).encode(), dtype=np.uint8)
    arrays["checksum"] = np.frombuffer(_checksum(arrays).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def check_fingerprint(saved: dict, current: dict, where: str = "checkpoint") -> None:
    """Raise :class:`~bucketrnn.StateMismatchError` listing every key whose value differs."""
    diff = differences(saved, current, where, "now")
    if diff:
        raise StateMismatchError(
            f"the {where} was made with another configuration; it differs in "
            + "; ".join(diff)
            + ". Run with the original settings, or start a new run (resume='')"
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_counts(key: str, value, bad) -> None:
    """Every number inside ``value`` is finite and >= 0 (a count, a sum of losses, seconds)."""
    stack = [(key, value)]
    while stack:  # no recursion: the JSON may nest as deep as the parser allowed
        where, v = stack.pop()
        if isinstance(v, dict):
            stack.extend((f"{where}.{k}", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in enumerate(v))
        elif _is_number(v) and not (v >= 0 and (isinstance(v, int) or math.isfinite(v))):
            raise bad(f"field {where!r} must be a finite number >= 0, got {v!r}")


def _check_epochs(key: str, value, bad) -> None:
    """One record per finished epoch, as the training loop appends them: ``kind`` "epoch",
    epochs numbered 0, 1, ... in order, ``global_step`` an int that never decreases, every
    other figure a number or null (finiteness: ``_check_counts`` on ``history``)."""
    last_step = 0
    for i, record in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(record, dict):
            raise bad(f"field {where!r} must be a dict, got {record!r:.60}")
        if record.get("kind") != "epoch":
            raise bad(f"field '{where}.kind' must be 'epoch', got {record.get('kind')!r:.60}")
        if record.get("epoch") != i or not is_int(record.get("epoch")):
            raise bad(f"field '{where}.epoch' must be {i} (records number the epochs 0, 1, ... "
                      f"in order), got {record.get('epoch')!r:.60}")
        step = record.get("global_step")
        if not is_int(step) or step < last_step:
            raise bad(f"field '{where}.global_step' must be an int >= {last_step} (steps never "
                      f"go back), got {step!r:.60}")
        last_step = step
        for name, v in record.items():
            if name != "kind" and v is not None and not _is_number(v):
                raise bad(f"field '{where}.{name}' must be a number or null, got {v!r:.60}")


def _check_tally(key: str, value, bad) -> None:
    if value is None:
        return
    if set(value) != set(HISTORY_TALLY):
        raise bad(f"field {key!r} must have the keys {sorted(HISTORY_TALLY)}: missing "
                  f"{sorted(set(HISTORY_TALLY) - set(value))}, unexpected "
                  f"{sorted(set(value) - set(HISTORY_TALLY))[:5]}")
    for name, v in value.items():
        if not _is_number(v):
            raise bad(f"field '{key}.{name}' must be a number, got {v!r:.60}")
    _check_counts(key, value, bad)


def _check_digests(key: str, value, bad) -> None:
    """``{file name: SHA-256 as 64 lowercase hex digits}``."""
    for name, digest in value.items():
        if not (isinstance(digest, str) and len(digest) == 64
                and all(c in "0123456789abcdef" for c in digest)):
            raise bad(f"field '{key}.{name}' must be a SHA-256 (64 hex digits), got "
                      f"{digest!r:.80}")


# The training loop's history, checked further when ``required`` names these fields: a forged
# value of the right type must fail here, not mid-training.
def _check_batches_per_update(key: str, value, bad) -> None:
    """``accumulate``: batches per optimizer update, at least one."""
    if value < 1:
        raise bad(f"field {key!r} (batches per update) must be >= 1, got {value!r}")


_STRUCTURE = {"history": _check_counts, "history.epochs": _check_epochs,
              "history.epoch_acc": _check_tally, "window": _check_tally,
              "run_files": _check_digests, "accumulate": _check_batches_per_update}


def _field(meta: dict, key: str, bad, missing=None):
    """The value of the dotted ``key`` in ``meta``; ``missing`` when absent, or an error when
    ``missing`` is None."""
    value = meta
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            if missing is None:
                raise bad(f"field {key!r} is missing")
            return missing
        value = value[part]
    return value


def _check_fields(meta: dict, required: dict, bad, optional: dict | None = None) -> None:
    absent = object()
    fields = [(key, kind, _field(meta, key, bad)) for key, kind in required.items()]
    fields += [(key, kind, value) for key, kind in (optional or {}).items()
               if (value := _field(meta, key, bad, missing=absent)) is not absent]
    for key, kind, value in fields:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise bad(f"field {key!r} must be {' or '.join(k.__name__ for k in kinds)}, got "
                      f"{value!r:.60}")
        if int in kinds and isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise bad(f"field {key!r} must be >= 0, got {value!r}")
        if key in _STRUCTURE:
            _STRUCTURE[key](key, value, bad)
        elif key.startswith("history."):
            _check_counts(key, value, bad)
    if "history.epochs" in required:
        _check_epochs_done(meta, required, bad)


def _check_epochs_done(meta: dict, required: dict, bad) -> None:
    """The training loop appends one record per finished epoch and then counts ``epoch`` up,
    so at any checkpoint (mid-epoch, at an epoch end, at the end of a run) the records are the
    epochs before ``epoch``, none of them past ``global_step``."""
    records = meta["history"]["epochs"]
    if "epoch" in required and len(records) != meta["epoch"]:
        raise bad(f"field 'history.epochs' holds {len(records)} epoch records, but field "
                  f"'epoch' says {meta['epoch']} epochs are done")
    if "global_step" in required and records and records[-1]["global_step"] > meta["global_step"]:
        raise bad(f"field 'history.epochs[{len(records) - 1}].global_step' is "
                  f"{records[-1]['global_step']}, past field 'global_step' "
                  f"({meta['global_step']})")


def _strict_constant(name):
    raise ValueError(f"{name} is not strict JSON (save writes non-finite numbers as null)")


def _strict_float(text):
    value = float(text)
    if not math.isfinite(value):  # 1e400: Python would read infinity
        _strict_constant(text)
    return value


def _member_name(name: str) -> str | None:
    """The array name of a zip member ``np.savez`` wrote for :func:`save` (or a format 1 one's
    pickled ``trainer``, which is never read), else None."""
    if not name.endswith(".npy"):
        return None
    key = name[:-4]
    if key in ("meta", "checksum", LEGACY):
        return key
    prefix = next((p for p in (PARAM_PREFIX, OPTIM_PREFIX) if key.startswith(p)), None)
    parts = key.split("/")
    if prefix is None or len(key) == len(prefix) or "" in parts or ".." in parts:
        return None
    return key


def _read_npy(f, size: int) -> np.ndarray:
    """The array of one ``.npy`` member of ``size`` bytes; ``ValueError`` saying what is wrong
    with anything else (never a pickle: object dtypes are refused from the header)."""
    try:
        version = np.lib.format.read_magic(f)
    except ValueError:
        raise ValueError("not a .npy array (no .npy magic string)") from None
    if version != (1, 0):  # np.savez writes 1.0 for every header of ours
        raise ValueError(f".npy format {version[0]}.{version[1]}, not 1.0")
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
    if dtype.kind not in NUMERIC_KINDS or dtype.hasobject or dtype.subdtype is not None:
        raise ValueError(f"dtype {dtype.str} is not numeric")
    nbytes = math.prod(shape) * dtype.itemsize
    left = size - f.tell()
    if nbytes != left:
        raise ValueError(f"its header declares shape {shape} of {dtype}: {nbytes} bytes, it "
                         f"holds {left}")
    data = bytearray(f.read(nbytes))
    if len(data) != nbytes or f.read(1):  # reading to the end also checks the zip's CRC-32
        raise ValueError("its size changed while it was read")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran_order else "C")


def _read_members(path: str, bad) -> dict:
    """Every array of the checkpoint at ``path`` (None for a :data:`LEGACY` member, unread);
    the zip's directory is checked before any member is read, so a crafted file costs no more
    memory and time than its own size."""
    size = os.path.getsize(path)
    # A damaged zip fails in many ways (BadZipFile, EOFError, ValueError, OSError...): each is
    # "unreadable", one CheckpointError.
    try:
        archive = zipfile.ZipFile(path)
    except Exception as e:
        raise bad(f"unreadable ({type(e).__name__}: {e})") from e
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise bad(f"{len(infos)} members, more than {MAX_MEMBERS}")
        keys = {}
        for info in infos:
            member = info.filename
            key = _member_name(member)
            if key is None:
                raise bad(f"unexpected member {member!r} (a checkpoint holds param/..., "
                          "optim/..., meta and checksum)")
            if key in keys:
                raise bad(f"member {member!r} appears twice")
            if info.compress_type != zipfile.ZIP_STORED:
                raise bad(f"member {member!r} is compressed (method {info.compress_type}); "
                          "a checkpoint's members are stored, never inflated")
            if info.file_size > size:
                raise bad(f"member {member!r} declares {info.file_size} bytes, in a file of "
                          f"{size}")
            if info.compress_size != info.file_size:  # stored: the two are one number
                raise bad(f"member {member!r} declares {info.file_size} bytes and stores "
                          f"{info.compress_size}")
            keys[key] = info
        total = sum(info.file_size for info in infos)
        if total > size:
            raise bad(f"members overlap: together they declare {total} bytes, in a file of "
                      f"{size}")
        arrays = {}
        for key, info in keys.items():
            if key == LEGACY:
                arrays[key] = None
                continue
            try:
                with archive.open(info) as f:
                    arrays[key] = _read_npy(f, info.file_size)
            # Whatever a member holds (raw bytes, a pickle, a lying header, a bad CRC), reading
            # it is one CheckpointError naming it, never a traceback from deep inside numpy.
            except Exception as e:
                why = str(e) if type(e) is ValueError else f"{type(e).__name__}: {e}"
                raise bad(f"member {info.filename!r} is unreadable ({why})") from e
    return arrays


def load(path: str, fingerprint: dict | None = None, required: dict | None = None,
         optional: dict | None = None) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save`.

    Parameters
    ----------
    path : str
    fingerprint : dict, optional
        The current configuration's; a different saved one raises ``StateMismatchError``.
    required : dict, optional
        ``{"key" or "key.sub": type or tuple of types}`` the ``meta`` must hold (an ``int``
        field must also be >= 0; ``bool`` is not an ``int`` here). The training loop's
        ``history`` fields are checked further: every number in ``history`` or a
        ``history.<field>`` is finite and >= 0; ``history.epochs`` is a list of the records
        the loop appends at each epoch end (``kind`` "epoch", ``epoch`` 0, 1, ... in order, an
        int ``global_step`` that never decreases, numbers or null), as many as ``epoch`` when
        that is required too, none past ``global_step``; ``history.epoch_acc`` is None or maps
        exactly :data:`HISTORY_TALLY` to numbers.
    optional : dict, optional
        Like ``required``, for fields checked only when present (ones older checkpoints lack);
        ``window`` (the training loop's open metrics window) maps exactly
        :data:`HISTORY_TALLY` to numbers; ``run_files`` maps file names to SHA-256 digests.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        Not a readable, intact bucketrnn checkpoint: truncated, bit-flipped (checksum), a
        pickle or object array, a compressed, oversized, overlapping, misnamed or non-array
        member, fields missing or mistyped, non-finite parameters.
    StateMismatchError
        Another format or configuration.
    """
    if not os.path.isfile(path):
        why = not_regular(path)
        raise FileNotFoundError(f"no checkpoint at {path!r}" + (f": it is {why}" if why else ""))

    def bad(what):
        return CheckpointError(f"checkpoint {path!r} is corrupted or not a bucketrnn "
                               f"checkpoint: {what}")

    arrays = _read_members(path, bad)
    meta_bytes = arrays.get("meta")
    if meta_bytes is None or meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
        raise bad("no 'meta' record")
    try:
        doc = json.loads(meta_bytes.tobytes().decode("utf-8"), parse_constant=_strict_constant,
                         parse_float=_strict_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"its 'meta' record is not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise bad("its 'meta' record is not a JSON object")
    if doc.get("format") != FORMAT:
        old = (" (an older bucketrnn; its optimizer state is a pickle, which is never loaded: "
               "start a new run)" if doc.get("format") == 1 else "")
        raise StateMismatchError(f"checkpoint {path!r} has format {doc.get('format')!r}{old}; "
                                 f"this bucketrnn reads format {FORMAT}")
    if LEGACY in arrays:
        raise bad(f"unexpected member '{LEGACY}.npy' (a pickle; never read)")
    stored = arrays.get("checksum")
    if stored is None or stored.dtype != np.uint8 or stored.tobytes() != _checksum(
            arrays).encode():
        raise bad("checksum mismatch: the file was damaged or modified after it was written")
    if not (isinstance(doc.get("meta"), dict) and isinstance(doc.get("fingerprint"), dict)
            and (doc.get("optimizer") is None or isinstance(doc["optimizer"], dict))):
        raise bad("'meta', 'fingerprint' or 'optimizer' is missing or has the wrong type")
    for name, a in arrays.items():
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise bad(f"{name} holds non-finite values (NaN or infinity)")
    _check_fields(doc["meta"], required or {}, bad, optional)
    if fingerprint is not None:
        check_fingerprint(doc["fingerprint"], fingerprint)
    params = {k[len(PARAM_PREFIX):]: a for k, a in arrays.items() if k.startswith(PARAM_PREFIX)}
    optimizer = None
    if doc["optimizer"] is not None:
        optimizer = OptimizerState(
            arrays={k: a for k, a in arrays.items() if k.startswith(OPTIM_PREFIX)},
            doc=doc["optimizer"])
    return Checkpoint(params=params, optimizer=optimizer, meta=doc["meta"])
