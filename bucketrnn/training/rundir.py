"""A run directory: the names of the files a run writes, how it writes them, and the lock that
gives it one writer.

Every file a training run keeps lives in its run directory under a name defined here, so the
training loop, the app and the commands that read a finished run agree on them.

No link planted in a run directory makes a run write outside it. Whole files are written with
:func:`atomic_write` (a fresh temporary file, then ``os.replace``: a symbolic link at the target
is replaced, its target is never written). Files written in place (the lock, ``metrics.jsonl``)
are opened with :func:`open_regular`, which refuses a symbolic link (``O_NOFOLLOW``), a file with
other hard links and anything that is not a regular file, before it changes a byte.

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
import json
import os
import re
import stat
import tempfile
import threading

__all__ = ["CHECKPOINT", "CLASSES", "CONFIG", "LOCK", "LOG", "MAX_JSON_BYTES", "METRICS",
           "SUMMARY", "TAGS", "TGT_VOCAB", "VOCAB", "RunLock", "RunLockedError", "atomic_write",
           "clean_temporaries", "file_kind", "open_regular", "read_json", "read_regular"]

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


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing else.

    The data goes to a new temporary file in the same directory (``<name>.XXXXXXXX.tmp``, made
    by ``mkstemp``: never an existing file or link), is flushed and ``fsync``-ed, then
    ``os.replace``-d over ``path`` and the directory is ``fsync``-ed. A symbolic link at
    ``path`` is replaced by the file; what it pointed to is not touched.

    Parameters
    ----------
    path : str
        Target file; its directory must exist.
    data : bytes

    Raises
    ------
    OSError
        The write failed (e.g. ``ENOSPC``, disk full); the message names ``path``, the file
        there is unchanged and no temporary file is left behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if not isinstance(e, OSError):
            raise
        why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        msg = f"could not write {path!r}: {why}; the previous file there (if any) is unchanged"
        raise (OSError(msg) if e.errno is None else OSError(e.errno, msg)) from e
    # The rename itself is durable only once the directory entry is on disk.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
_OPEN_FLAGS = {"r": os.O_RDONLY, "r+": os.O_RDWR, "w": os.O_WRONLY | os.O_CREAT,
               "w+": os.O_RDWR | os.O_CREAT, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
               "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND}


def _open_fd(path: str, flags: int, perm: int = 0o644) -> int:
    """``os.open`` that refuses a symbolic link, a non-regular file, a file with other hard
    links (each an ``OSError`` naming ``path``); a FIFO never blocks the open."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, perm)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{path!r} is a symbolic link; refusing to write "
                          "through it (a run writes nothing outside its run directory): "
                          "remove it") from None
        if e.errno == errno.ENXIO:  # a FIFO with no reader, opened to write
            raise OSError(errno.ENXIO, f"{path!r} is not a regular file; refusing to write "
                          "it: remove it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{path!r} is not a regular file; refusing to write "
                          "it: remove it")
        if st.st_nlink > 1:
            raise OSError(errno.EMLINK, f"{path!r} has {st.st_nlink} hard links; refusing to "
                          "write it (that would change the other files too): remove it")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular(path: str, mode: str = "r", encoding: str | None = None, buffering: int = -1):
    """``open(path, mode)`` for a file of the run directory that is written in place, such as
    ``metrics.jsonl``: a symbolic link, a file with other hard links or anything but a regular
    file is refused before a byte changes (a planted ``metrics.jsonl -> ~/.bashrc`` is never
    truncated nor appended to).

    Parameters
    ----------
    path : str
    mode : str
        One of ``r``, ``r+``, ``w``, ``w+``, ``a``, ``a+``, each optionally with ``b``; as for
        :func:`open` (``w`` creates or truncates, ``a`` appends).
    encoding, buffering
        As for :func:`open`.

    Raises
    ------
    OSError
        ``path`` is a symbolic link (``errno.ELOOP``), not a regular file, has other hard links,
        or cannot be opened; the message names it.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
    >>> with open_regular(path, "w", encoding="utf-8", buffering=1) as f:
    ...     _ = f.write("{}\\n")
    """
    base = mode.replace("b", "")
    if base not in _OPEN_FLAGS or mode.count("b") > 1:
        raise ValueError(f"mode must be one of {sorted(_OPEN_FLAGS)} (optionally with 'b'), "
                         f"got mode={mode!r}")
    fd = _open_fd(path, _OPEN_FLAGS[base])
    try:
        if base.startswith("w"):
            os.ftruncate(fd, 0)
        return os.fdopen(fd, mode, buffering=buffering, encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, for a message: ``"a directory"``, ``"a FIFO"``,
    ``"a character device"``, ..., ``"a regular file"``."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def read_regular(path: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file at ``path`` (a symbolic link to one is followed), read
    only once it is known to be one: a FIFO never blocks, ``/dev/zero`` is never read.

    Parameters
    ----------
    path : str
    limit : int, optional
        Largest size accepted, in bytes; a larger file (or one growing past it while read) is
        refused without reading more than ``limit + 1`` bytes.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``, or a symbolic link to nothing.
    IsADirectoryError
        ``path`` is a directory.
    OSError
        ``path`` is not a regular file (``errno.EINVAL``: the message says what it is), is
        larger than ``limit`` (``errno.EFBIG``) or cannot be read; the message names it.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "summary.json")
    >>> with open(path, "w") as f:
    ...     _ = f.write("{}")
    >>> read_regular(path, limit=16)
    b'{}'
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        dangling = os.path.islink(path)
        raise FileNotFoundError(errno.ENOENT, f"{path!r} is a symbolic link to a missing file"
                                if dangling else f"{path!r} does not exist") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"{path!r} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{path!r} is not a regular file ({file_kind(st.st_mode)})")
        if limit is not None and st.st_size > limit:
            raise OSError(errno.EFBIG, f"{path!r} is larger than {limit} bytes "
                          f"({st.st_size} bytes)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb", buffering=0) as f:
        chunks, size = [], 0
        while limit is None or size <= limit:
            chunk = f.read(1 << 20 if limit is None else min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if limit is not None and size > limit:
            raise OSError(errno.EFBIG, f"{path!r} is larger than {limit} bytes (it grew while "
                          "read)")
        return b"".join(chunks)


MAX_JSON_BYTES = 64 * 2**20


def read_json(path: str, limit: int = MAX_JSON_BYTES):
    """The JSON value in the regular file at ``path`` (at most ``limit`` bytes): the one way
    bucketrnn reads a JSON file a run directory or an export holds.

    Raises ``FileNotFoundError`` when nothing is at ``path``; any other failure (a directory, a
    FIFO or device, too large, not UTF-8, not JSON, nested too deeply) is a ``ValueError`` whose
    message says what is wrong with the file and never quotes its text, for the caller to name.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.json")
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"a": [1, 2]}')
    >>> read_json(path)
    {'a': [1, 2]}
    """
    try:
        data = read_regular(path, limit=limit)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EISDIR, errno.EFBIG):
            raise
        raise ValueError((e.strerror or str(e)).replace(f"{path!r} ", "", 1)) from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"is not valid JSON (line {e.lineno} column {e.colno}: {e.msg})") \
            from None
    except RecursionError:
        raise ValueError("is nested too deeply to parse") from None
    except (ValueError, MemoryError) as e:  # e.g. an integer of more than 4300 digits
        raise ValueError(f"could not be parsed ({type(e).__name__})") from None


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
            fd = _open_fd(self.path, os.O_RDWR | os.O_CREAT)
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
