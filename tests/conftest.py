"""Shared test helpers for the data-pipeline stages (sampler, batchify, loader)."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

from bucketrnn.data.datasets import FlatSequences


def make_flat(seqs, labels=None):
    """A FlatSequences dataset holding ``seqs``."""
    return FlatSequences.from_sequences(seqs, labels=labels)


def assert_resumes(make, key=lambda batch: batch):
    """Resumption contract shared by the sampler and the loader.

    ``make()`` builds a fresh iterable with ``state_dict``/``load_state_dict``. Stopping at the
    start, middle or end of an epoch and resuming from the (pickled) state in a fresh object, or
    pickling the object itself, must replay the uninterrupted run, into the next epoch.
    """
    reference = make()
    first_epoch = [key(b) for b in reference]
    expected = first_epoch + [key(b) for b in reference]
    n = len(first_epoch)
    for cut in sorted({0, n // 2, n}):
        run = make()
        it = iter(run)
        got = [key(next(it)) for _ in range(cut)]
        state = pickle.loads(pickle.dumps(run.state_dict()))
        clone = pickle.loads(pickle.dumps(run))
        resumed = make()
        resumed.load_state_dict(state)
        for other in (resumed, clone):
            rest = [key(b) for b in other]  # the rest of the epoch; at its end, the next one
            if cut < n or n == 0:
                rest += [key(b) for b in other]
            assert got + rest == expected, f"resuming at step {cut} of {n}"


_HOLD = textwrap.dedent("""
    import os, sys, time
    from bucketrnn.training.rundir import RunLock
    RunLock(sys.argv[1]).acquire()
    child = os.fork() if len(sys.argv) > 2 else None  # a child, like a loader worker
    if child == 0:
        time.sleep(120)
        os._exit(0)
    print("locked", child or "", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def lock_holder():
    """``hold(run_dir, fork=False)``: another process that holds the run directory's lock
    (``.pid``; ``.child``: a forked child when ``fork``). Killed at the end of the test."""
    procs = []

    def hold(run_dir, fork=False):
        proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)] + ["fork"] * fork,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        words = proc.stdout.readline().split()
        assert words and words[0] == "locked"
        proc.child = int(words[1]) if len(words) > 1 else None
        return proc

    yield hold
    for proc in procs:
        for pid in (proc.pid, proc.child):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        proc.wait()


@pytest.fixture
def no_long_encoder(monkeypatch):
    """Fail at once, never after gigabytes, if a decoder builds an encoder graph of more than
    1,000 steps: a test of a refusal stays cheap when the refusal is missing."""
    from bucketrnn.models.decode import Seq2SeqDecoder

    built = Seq2SeqDecoder.encoder

    def guarded(self, src_len):
        assert src_len <= 1000, f"an encoder graph of {src_len} steps was built"
        return built(self, src_len)

    monkeypatch.setattr(Seq2SeqDecoder, "encoder", guarded)
