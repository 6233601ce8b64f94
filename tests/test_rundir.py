"""One writer per run directory: the lock, re-entry, its release on kill -9, forked children."""

import os
import signal

import pytest

from bucketrnn.rundir import RunLock, RunLockedError


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
