"""A run directory: the names of the files a run writes, how it writes them, and the lock that
gives it one writer.

Every file a training run keeps lives in its run directory under a name defined here, so the
training loop, the app and the commands that read a finished run agree on them.

No link planted in a run directory makes a run write outside it: whole files are written with
:func:`bucketrnn.files.atomic_write`, files written in place (the lock, ``metrics.jsonl``) are
opened with :func:`bucketrnn.files.open_regular` (see :mod:`bucketrnn.files`).

One writer at a time (invariant 8): :class:`RunLock` holds an exclusive POSIX record lock
(``fcntl.lockf``) on ``<run_dir>/.lock`` for the life of a run. The kernel drops the lock when
the process dies, however it dies (``kill -9`` included), so a crashed run never leaves a stale
lock behind; the PID written into the file only serves the message a second writer gets. A POSIX
lock belongs to the process and is not inherited by ``fork``: loader worker processes never hold
it, so none can outlive the run and keep its directory locked. Locks are re-entrant within a
process: the app takes the lock before it writes anything, and the training loop it starts takes
the same lock again.

Examples
--------
>>> import tempfile
>>> run_dir = tempfile.mkdtemp()
>>> with RunLock(run_dir) as lock:
...     with RunLock(run_dir):          # the same process may take it again
...         pass
...     lock.held
True
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading

from bucketrnn._aliases import moved_names
from bucketrnn.files import open_fd

__all__ = ["CHECKPOINT", "CLASSES", "CONFIG", "LOCK", "LOG", "METRICS", "SUMMARY", "TAGS",
           "TGT_VOCAB", "VOCAB", "RunLock", "RunLockedError", "clean_temporaries"]

# Whole-file I/O moved to bucketrnn.files (data and graphs use it too).
__getattr__ = moved_names(__name__, {name: "bucketrnn.files" for name in (
    "MAX_JSON_BYTES", "atomic_write", "file_kind", "open_regular", "read_json", "read_regular")})

CHECKPOINT = "checkpoint.npz"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
VOCAB = "vocab.json"
TAGS = "tags.json"  # a tagger's class map: tag names, index = tag id
TGT_VOCAB = "tgt_vocab.json"  # a sequence-pair model's target vocabulary (vocab.json: source)
LOCK = ".lock"
LOG = "bucketrnn.log"
CLASSES = "classes.json"  # a classifier's class map: {"label": ..., "classes": [name, ...]}


class RunLockedError(RuntimeError):
    """Another process holds the run directory (its PID is :attr:`pid`, when known)."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


# Held locks of this process: realpath -> [fd, depth]. Closing any descriptor of the lock file
# drops a POSIX lock, so the file is opened once per process and the depth counts the holders.
_HELD: dict = {}
_GUARD = threading.Lock()


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def clean_temporaries(directory: str, name: str = CHECKPOINT) -> list:
    """Remove the temporary files a killed :func:`atomic_write` of ``name`` left in
    ``directory`` (``<name>.XXXXXXXX.tmp``, nothing else); returns the paths removed."""
    pattern = re.compile(re.escape(name) + r"\.[a-z0-9_]{8}\.tmp")
    removed = []
    for entry in os.listdir(directory) if os.path.isdir(directory) else ():
        path = os.path.join(directory, entry)
        if pattern.fullmatch(entry) and os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            removed.append(path)
    return removed


# Text or binary is the caller's choice ("b" is added by os.fdopen's mode); "w" truncates only
# once the file is known to be a plain file of its own.
class RunLock:
    """Exclusive, re-entrant lock on a run directory for the life of a run.

    Parameters
    ----------
    run_dir : str
        The run directory (created if missing).

    Raises
    ------
    RunLockedError
        On :meth:`acquire`, when another process holds the directory; the message names its PID.
    """

    def __init__(self, run_dir: str):
        if not isinstance(run_dir, (str, os.PathLike)) or not str(run_dir):
            raise TypeError(f"run_dir must be a directory path, got run_dir={run_dir!r}")
        self.run_dir = os.fspath(run_dir)
        self._key = None

    @property
    def path(self) -> str:
        return os.path.join(self.run_dir, LOCK)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._key is not None

    def acquire(self) -> "RunLock":
        if self._key is not None:
            return self
        os.makedirs(self.run_dir, exist_ok=True)
        key = os.path.realpath(self.run_dir)
        with _GUARD:
            if key in _HELD:
                _HELD[key][1] += 1
                self._key = key
                return self
            # Never through a planted link: the PID is written into the file.
            fd = open_fd(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                pid = _holder(fd)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                who = f"process {pid}" if pid else "another process"
                raise RunLockedError(
                    f"run directory {self.run_dir!r} is in use by {who} (lock {self.path!r}); "
                    "two runs must not write one directory: wait for it to finish or stop it, "
                    "or use another run directory", pid) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            _HELD[key] = [fd, 1]
            self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        with _GUARD:
            entry = _HELD[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del _HELD[self._key]
                # The file stays (removing it would race with a process about to lock it).
                os.close(entry[0])
            self._key = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({self.run_dir!r}, held={self.held})"
