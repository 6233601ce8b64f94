"""Shared test helpers for the data-pipeline stages (sampler, batchify, loader), and the
``slow`` marker: ``make test`` runs everything; ``pytest -m "not slow"`` is the quick subset."""

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


# Tests that train through the app, start processes (distributed jobs, examples, benchmarks,
# a wheel build) or compare long runs: marked slow here by path, in one place; single slow tests
# elsewhere carry @pytest.mark.slow.
SLOW_PATHS = (
    "tests/app/test_app_precision.py", "tests/app/test_auto.py", "tests/app/test_compare.py",
    "tests/app/test_experiment.py", "tests/app/test_pairs_app.py", "tests/app/test_plots.py",
    "tests/app/test_run.py", "tests/app/test_run_distributed.py", "tests/app/test_run_foreach.py",
    "tests/app/test_tagged.py", "tests/app/test_trained.py", "tests/app/test_prepared_app.py",
    "tests/app/test_pairs_commands.py", "tests/distributed/",
    "tests/benchmarks/test_distributed_study.py", "tests/benchmarks/test_bench_smoke.py",
    "tests/test_examples.py", "tests/test_packaging.py", "tests/training/test_resume.py",
    "tests/graphs/test_memory.py", "tests/benchmarks/",
    # single tests of a second or more (subprocesses, real training, resume after a crash)
    "tests/models/test_decode.py::test_decoding_a_model_trained_on_reversal_reproduces_it",
    "tests/training/test_loop.py::test_resume_after_a_crash_matches_an_uninterrupted_run",
    "tests/training/test_loop.py::test_ctrl_c_stops_after_the_step_with_a_checkpoint",
    "tests/training/test_loop.py::test_a_run_directory_held_by_another_process_is_refused",
    "tests/training/test_loop.py::test_tiny_run_writes_metrics_and_checkpoint",
    "tests/data/test_loader.py::test_loader_resumes_like_an_uninterrupted_run",
    "tests/data/test_loader.py::test_worker_killed_from_outside_is_noticed",
    "tests/training/test_checkpoint.py::test_real_checkpoints_mid_epoch_at_an_epoch_end_and_at_the_end_load",
    "tests/test_cores.py::test_import_sets_the_threads_before_mxnet_loads",
    "tests/test_cores.py::test_mxnet_imported_first_is_reported_not_changed",
    "tests/graphs/test_precision.py::test_bf16_checkpoints_hold_fp32_and_resume_equals_the_uninterrupted",
    "tests/data/test_datasets.py::test_penn_treebank_has_no_outliers_in_words_or_characters",
    "tests/training/test_rundir.py::test_second_writer_gets_the_holders_pid_and_kill_9_releases",
    "tests/training/test_rundir.py::test_lock_is_reentrant_in_one_process",
    "tests/training/test_rundir.py::test_forked_children_do_not_keep_the_lock",
    "tests/autoplan/test_costmodel.py::test_probe_measures_the_real_graph_and_leaves_training_parameters",
)


def pytest_collection_modifyitems(config, items):
    root = str(config.rootpath) + os.sep
    for item in items:
        path = str(item.path)
        node = path[len(root):] + "::" + item.name if path.startswith(root) else ""
        if node.startswith(SLOW_PATHS):
            item.add_marker(pytest.mark.slow)


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
