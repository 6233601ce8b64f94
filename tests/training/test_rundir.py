"""One writer per run directory: the lock, re-entry, its release on kill -9, forked children;
no planted link makes a run write outside its directory."""

import errno
import os
import signal

import pytest

from bucketrnn.files import atomic_write, open_regular, read_regular
from bucketrnn.training.rundir import RunLock, RunLockedError, clean_temporaries


def test_lock_is_reentrant_in_one_process(tmp_path, lock_holder):
    with RunLock(tmp_path) as outer:
        with RunLock(tmp_path) as inner:
            assert inner.held
        assert outer.held
    assert not outer.held
    # Released for real: another process can take it now.
    lock_holder(tmp_path)


def test_second_writer_gets_the_holders_pid_and_kill_9_releases(tmp_path, lock_holder):
    proc = lock_holder(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=f"in use by process {proc.pid}") as info:
            RunLock(tmp_path).acquire()
        assert info.value.pid == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The kernel dropped the lock with the process: no stale lock to clean by hand.
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_forked_children_do_not_keep_the_lock(tmp_path, lock_holder):
    proc = lock_holder(tmp_path, fork=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        os.kill(proc.child, 0)  # the child still lives, but it never held the lock
        with RunLock(tmp_path) as lock:
            assert lock.held
    finally:
        os.kill(proc.child, signal.SIGKILL)


def test_bad_run_dir_is_refused():
    with pytest.raises(TypeError, match="run_dir must be a directory path"):
        RunLock(None)


# ---------------------------------------------------------------- planted links
def _victim(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return victim, run_dir


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    victim, run_dir = _victim(tmp_path)
    (run_dir / ".lock").symlink_to(victim)
    with pytest.raises(OSError, match=r"\.lock' is a symbolic link") as info:
        RunLock(run_dir).acquire()
    assert info.value.errno == errno.ELOOP
    assert victim.read_text() == "precious\n"


def test_a_hard_linked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    victim, run_dir = _victim(tmp_path)
    os.link(victim, run_dir / ".lock")
    with pytest.raises(OSError, match=r"\.lock' has 2 hard links"):
        RunLock(run_dir).acquire()
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("mode", ["w", "a+"])
def test_open_regular_refuses_links_and_non_regular_files(tmp_path, mode):
    victim, run_dir = _victim(tmp_path)
    link = run_dir / "metrics.jsonl"
    link.symlink_to(victim)
    with pytest.raises(OSError, match=r"metrics\.jsonl' is a symbolic link"):
        open_regular(str(link), mode)
    link.unlink()
    os.link(victim, link)
    with pytest.raises(OSError, match=r"metrics\.jsonl' has 2 hard links"):
        open_regular(str(link), mode)
    link.unlink()
    os.mkfifo(link)  # opening a FIFO to write would block until a reader comes
    with pytest.raises(OSError, match=r"metrics\.jsonl' is not a regular file"):
        open_regular(str(link), mode)
    assert victim.read_text() == "precious\n"


def test_open_regular_writes_and_resumes_a_plain_file(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    with open_regular(path, "w", encoding="utf-8", buffering=1) as f:
        f.write("one\ntwo\n")
    with open_regular(path, "w", encoding="utf-8") as f:  # "w" truncates, as open() does
        f.write("a\nb\n")
    with open_regular(path, "a+", encoding="utf-8") as f:  # the resume: cut, then append
        f.truncate(2)
        f.seek(2)
        f.write("c\n")
    assert open(path).read() == "a\nc\n"
    with pytest.raises(ValueError, match="mode must be one of"):
        open_regular(path, "x")


def test_atomic_write_replaces_a_symlinked_target_not_its_target(tmp_path):
    victim, run_dir = _victim(tmp_path)
    path = run_dir / "summary.json"
    path.symlink_to(victim)
    atomic_write(str(path), b"{}\n")
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and path.read_bytes() == b"{}\n"


def test_atomic_write_is_the_one_the_checkpoint_uses():
    from bucketrnn.training import checkpoint
    assert checkpoint.atomic_write is atomic_write
    assert checkpoint.clean_temporaries is clean_temporaries


def test_read_regular_reads_only_regular_files_below_the_limit(tmp_path):
    path = tmp_path / "summary.json"
    path.write_bytes(b"x" * 10)
    assert read_regular(str(path), limit=10) == b"x" * 10
    (tmp_path / "link").symlink_to(path)
    assert read_regular(str(tmp_path / "link")) == b"x" * 10  # a link to a file is followed
    with pytest.raises(OSError, match=r"is larger than 9 bytes \(10 bytes\)") as info:
        read_regular(str(path), limit=9)
    assert info.value.errno == errno.EFBIG
    with pytest.raises(IsADirectoryError, match="is a directory"):
        read_regular(str(tmp_path))
    os.mkfifo(tmp_path / "fifo")  # no writer: a read would block
    with pytest.raises(OSError, match=r"is not a regular file \(a FIFO\)"):
        read_regular(str(tmp_path / "fifo"))
    (tmp_path / "zero").symlink_to("/dev/zero")  # a read would never end
    with pytest.raises(OSError, match=r"is not a regular file \(a character device\)"):
        read_regular(str(tmp_path / "zero"), limit=16)
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="is a symbolic link to a missing file"):
        read_regular(str(tmp_path / "dangling"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_regular(str(tmp_path / "nothing"))
