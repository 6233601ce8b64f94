"""Files bucketrnn reads and writes, safely: whole-file atomic writes, regular-file reads, JSON.

Every file the project keeps (a run directory's, a vocabulary, an export) is written whole with
:func:`atomic_write` (a fresh temporary file, then ``os.replace``: a symbolic link at the target
is replaced, its target is never written) and read back with :func:`read_regular` /
:func:`read_json`, which refuse what is not a regular file (a FIFO, a device, a directory) and
anything larger than asked, before reading a byte. Files written in place are opened with
:func:`open_regular`, which refuses a symbolic link (``O_NOFOLLOW``), a file with other hard
links and anything that is not a regular file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile

__all__ = ["MAX_JSON_BYTES", "atomic_write", "file_kind", "not_regular", "open_fd", "open_regular",
           "read_json", "read_regular"]


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


_OPEN_FLAGS = {"r": os.O_RDONLY, "r+": os.O_RDWR, "w": os.O_WRONLY | os.O_CREAT,
               "w+": os.O_RDWR | os.O_CREAT, "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
               "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND}


def open_fd(path: str, flags: int, perm: int = 0o644) -> int:
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
    fd = open_fd(path, _OPEN_FLAGS[base])
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


def not_regular(path: str) -> str | None:
    """Why ``path`` holds no regular file to read, for a message, or None when it does (or
    nothing is there at all): ``"a symbolic link to the missing 'x'"``, ``"a symbolic link to
    '/dev/zero', not a regular file (a character device)"``, ``"not a regular file (a
    directory)"``."""
    try:
        st = os.stat(path)
    except OSError:
        if os.path.islink(path):
            return f"a symbolic link to the missing {os.readlink(path)!r}"
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    kind = f"not a regular file ({file_kind(st.st_mode)})"
    return f"a symbolic link to {os.readlink(path)!r}, {kind}" if os.path.islink(path) else kind


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
