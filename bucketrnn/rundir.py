"""A run directory: the names of the files a run writes, and the lock that gives it one writer.

Every file a training run keeps lives in its run directory under a name defined here, so the
training loop, the app and the commands that read a finished run agree on them.

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
import threading

__all__ = ["CHECKPOINT", "CONFIG", "LOCK", "LOG", "METRICS", "SUMMARY", "VOCAB", "RunLock",
           "RunLockedError"]

CHECKPOINT = "checkpoint.npz"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
VOCAB = "vocab.json"
LOCK = ".lock"
LOG = "bucketrnn.log"


class RunLockedError(RuntimeError):
    """Another process holds the run directory (its PID is :attr:`pid`, when known)."""

    def __init__(self, message: str, pid: int | None = None):
        super().__init__(message)
        self.pid = pid


# Held locks of this process: realpath -> [fd, depth]. Closing any descriptor of the lock file
# drops a POSIX lock, so the file is opened once per process and the depth counts the holders.
_HELD: dict = {}
_GUARD = threading.Lock()


def _holder(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            text = f.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                pid = _holder(self.path)
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
