"""Checkpoints that survive a crash: atomic writes, strict loads, a config fingerprint.

A checkpoint is one ``.npz`` file (no pickle of ours): every parameter as an array under
``param/<name>``, the optimizer state bytes from ``gluon.Trainer.save_states`` under
``trainer``, and a JSON document under ``meta`` (loop position, loader ``state_dict``, the
seed the random state is derived from at every step, metrics so far, and the fingerprint of
the configuration that made it).

Writes go to a temporary file in the same directory, are flushed and ``fsync``-ed, then
``os.replace``-d over the target and the directory is ``fsync``-ed: a crash at any moment leaves
either the previous checkpoint or the new one, never a torn file.

Examples
--------
>>> import os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.npz")
>>> save(path, {"w": np.ones(2)}, b"", {"step": 3}, fingerprint={"lr": 0.1})
>>> ckpt = load(path, fingerprint={"lr": 0.1})
>>> ckpt.meta["step"], ckpt.params["w"].tolist()
(3, [1.0, 1.0])
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from bucketrnn.errors import StateMismatchError

__all__ = ["Checkpoint", "atomic_write", "check_fingerprint", "load", "save"]

FORMAT = 1
FILENAME = "checkpoint.npz"


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing else.

    Parameters
    ----------
    path : str
        Target file; its directory must exist.
    data : bytes
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # The rename itself is durable only once the directory entry is on disk.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass
class Checkpoint:
    """What :func:`load` returns: parameter arrays, optimizer state bytes, metadata."""

    params: dict
    trainer_states: bytes
    meta: dict


def save(path: str, params: dict, trainer_states: bytes, meta: dict,
         fingerprint: dict | None = None) -> None:
    """Atomically write a checkpoint.

    Parameters
    ----------
    path : str
        The ``.npz`` file to (over)write.
    params : dict of str to numpy.ndarray
        Parameter values by name.
    trainer_states : bytes
        ``gluon.Trainer.save_states`` output (optimizer moments, update counts).
    meta : dict
        JSON-able loop state.
    fingerprint : dict, optional
        Flat description of the configuration; :func:`load` refuses another one.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> array, got {type(params).__name__}")
    doc = {"format": FORMAT, "fingerprint": fingerprint or {}, "meta": meta}
    arrays = {f"param/{name}": np.asarray(value) for name, value in params.items()}
    arrays["trainer"] = np.frombuffer(bytes(trainer_states), dtype=np.uint8)
    arrays["meta"] = np.frombuffer(json.dumps(doc, sort_keys=True).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def check_fingerprint(saved: dict, current: dict, where: str = "checkpoint") -> None:
    """Raise :class:`~bucketrnn.StateMismatchError` listing every key whose value differs."""
    diff = [f"{k}: {where} {saved.get(k, '<absent>')!r}, now {current.get(k, '<absent>')!r}"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diff:
        raise StateMismatchError(
            f"the {where} was made with another configuration; it differs in "
            + "; ".join(diff)
            + ". Run with the original settings, or start a new run (resume='')"
        )


def load(path: str, fingerprint: dict | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    Parameters
    ----------
    path : str
    fingerprint : dict, optional
        The current configuration's; a different saved one raises ``StateMismatchError``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    StateMismatchError
        Another format or configuration, or a file that is not a bucketrnn checkpoint.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            doc = json.loads(z["meta"].tobytes().decode())
            params = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
            trainer_states = z["trainer"].tobytes()
    except (OSError, ValueError, KeyError) as e:
        raise StateMismatchError(f"{path!r} is not a readable bucketrnn checkpoint: {e}") from e
    if doc.get("format") != FORMAT:
        raise StateMismatchError(f"checkpoint {path!r} has format {doc.get('format')!r}; this "
                                 f"bucketrnn reads format {FORMAT}")
    if fingerprint is not None:
        check_fingerprint(doc.get("fingerprint", {}), fingerprint)
    return Checkpoint(params=params, trainer_states=trainer_states, meta=doc["meta"])
