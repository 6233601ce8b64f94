"""MXNet's threads before it loads: every core (OMP_NUM_THREADS) and sleeping idle threads
(OMP_WAIT_POLICY), each only when the user chose nothing; workers; MXNet imported first."""

import os
import re
import subprocess
import sys

import pytest

from bucketrnn import cores

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_all_cores_unless_the_user_chose():
    env = {}
    assert cores.use_all_cores(env, cores=6, mxnet_loaded=False) == 6
    assert env == {"OMP_NUM_THREADS": "6"}
    for name in cores.USER_THREAD_VARIABLES:
        env = {name: "3"}
        assert cores.use_all_cores(env, cores=6, mxnet_loaded=False) is None
        assert env == {name: "3"}
    env = {}
    assert cores.use_all_cores(env, cores=6, mxnet_loaded=True) is None and env == {}
    env = {"DMLC_ROLE": "worker"}  # the launcher divides the cores of a job
    assert cores.use_all_cores(env, cores=6, mxnet_loaded=False) is None
    assert "OMP_NUM_THREADS" not in env


def test_wait_is_chosen_unless_the_user_chose():
    env = {}
    assert cores.choose_wait(env, gomp_loaded=False) == cores.WAIT_DEFAULT
    assert env == cores.WAIT_DEFAULT
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "300000")):
        env = {name: value}
        assert cores.choose_wait(env, gomp_loaded=False) is None and env == {name: value}
    env = {}  # libgomp has read its environment already: setting it now would change nothing
    assert cores.choose_wait(env, gomp_loaded=True) is None and env == {}


def test_threads_and_wait_are_chosen_independently():
    env = {"OMP_NUM_THREADS": "4"}  # the user's thread count still gets sleeping threads
    assert cores.use_all_cores(env, cores=6, mxnet_loaded=False) is None
    assert cores.choose_wait(env, gomp_loaded=False) == cores.WAIT_DEFAULT
    assert env == {"OMP_NUM_THREADS": "4", **cores.WAIT_DEFAULT}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}  # the user's spinning still gets every core
    assert cores.choose_wait(env, gomp_loaded=False) is None
    assert cores.use_all_cores(env, cores=6, mxnet_loaded=False) == 6
    assert env == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "6"}
    env = {"DMLC_ROLE": "worker"}  # a job's process: the launcher divides the cores, not wait
    assert cores.choose_wait(env, gomp_loaded=False) == cores.WAIT_DEFAULT


def test_physical_cores_is_within_the_processors_this_process_may_use():
    assert 1 <= cores.physical_cores() <= len(os.sched_getaffinity(0))


def _import_and_report(code, **env):
    base = {k: v for k, v in os.environ.items()
            if k not in cores.USER_THREAD_VARIABLES + cores.WAIT_VARIABLES + ("DMLC_ROLE",)}
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


REPORT = ("import os, bucketrnn; from bucketrnn import cores; "
          "print(os.environ.get('OMP_NUM_THREADS'), '|', os.environ.get('GOMP_SPINCOUNT') or "
          "os.environ.get('OMP_WAIT_POLICY'), '|', "
          "cores.threads_note())")
# What libgomp itself read (its spin count: rounds an idle thread spins before it sleeps).
LIBGOMP = ("import ctypes; ctypes.CDLL('libgomp.so.1').omp_display_env(1)")
SLEEP = ("idle threads spin briefly, then sleep (GOMP_SPINCOUNT=1000; set OMP_WAIT_POLICY or "
         "GOMP_SPINCOUNT")
CORES = cores.physical_cores()


@pytest.mark.parametrize("env, expect", [
    ({}, f"{CORES} | 1000 | {CORES} (all physical cores; OMP_NUM_THREADS=N to choose); "
         f"{SLEEP}"),
    ({"OMP_NUM_THREADS": "1"}, f"1 | 1000 | as set by the user (OMP_NUM_THREADS=1); {SLEEP}"),
    ({"MXNET_OMP_MAX_THREADS": "1"}, "None | 1000 | as set by the user "
                                     "(MXNET_OMP_MAX_THREADS=1); idle threads spin briefly"),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, f"{CORES} | ACTIVE | {CORES} (all physical cores; "
                                    "OMP_NUM_THREADS=N to choose); wait as set by the user "
                                    "(OMP_WAIT_POLICY=ACTIVE)"),
    ({"GOMP_SPINCOUNT": "50"}, f"{CORES} | 50 | {CORES} (all physical cores; "
                               "OMP_NUM_THREADS=N to choose); wait as set by the user "
                               "(GOMP_SPINCOUNT=50)"),
])
def test_import_sets_threads_and_wait_before_mxnet_loads(env, expect):
    assert _import_and_report(REPORT, **env).startswith(expect)


def _libgomp_spin_count(code, **env):
    base = {k: v for k, v in os.environ.items()
            if k not in cores.USER_THREAD_VARIABLES + cores.WAIT_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stderr.splitlines() if "GOMP_SPINCOUNT" in x)
    return line.split("=")[1].strip().strip("'")


def test_libgomp_reads_the_choice():
    """The variable reaches the OpenMP runtime MXNet uses: it spins 1,000 rounds, not libgomp's
    default 300,000 (about 3 ms), and the user's own choice stands."""
    assert _libgomp_spin_count("import bucketrnn; " + LIBGOMP) == "1000"
    assert _libgomp_spin_count("import bucketrnn; " + LIBGOMP, GOMP_SPINCOUNT="1234") == "1234"
    assert _libgomp_spin_count("import mxnet; " + LIBGOMP) == "300000"


def test_mxnet_imported_first_is_reported_not_changed():
    line = _import_and_report("import mxnet; " + REPORT)
    assert line.startswith("None | None | MXNet's defaults: half the processors, idle threads "
                           "spinning (slow beside other busy processes): mxnet was imported "
                           "before bucketrnn; import bucketrnn first, or set OMP_NUM_THREADS "
                           "and GOMP_SPINCOUNT=1000")


def test_libgomp_loaded_by_another_library_first_is_reported():
    """Another library loaded the same libgomp before bucketrnn: the threads are still chosen,
    the wait cannot be any more, and the summary says so."""
    line = _import_and_report("import ctypes; ctypes.CDLL('libgomp.so.1'); " + REPORT)
    assert line.startswith(f"{CORES} | None | {CORES} (all physical cores; OMP_NUM_THREADS=N to "
                           "choose); idle threads spin (libgomp's default, slow beside other "
                           "busy processes): libgomp was loaded before bucketrnn")


WORKER = """
import ctypes, json, os, sys
import numpy as np
import bucketrnn
from bucketrnn import BucketLoader

PARENT = os.getpid()
gomp = ctypes.CDLL("libgomp.so.1")


class Seen:
    def __init__(self):
        self.rows = [np.arange(1, 3 + i % 5, dtype=np.int32) for i in range(40)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        if os.getpid() != PARENT:
            gomp.omp_display_env(1)  # this worker's spin count, on stderr
            print("worker", os.getpid(), gomp.omp_get_max_threads(), file=sys.stderr, flush=True)
        return self.rows[i]


print("main", os.getpid(), gomp.omp_get_max_threads(), file=sys.stderr, flush=True)
for batch in BucketLoader(Seen(), batch_size=4, num_buckets=2, num_workers=2):
    pass
"""


def test_loader_workers_get_one_thread_and_the_parents_wait():
    done = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, capture_output=True,
                          text=True, timeout=120,
                          env={k: v for k, v in os.environ.items()
                               if k not in cores.USER_THREAD_VARIABLES + cores.WAIT_VARIABLES})
    assert done.returncode == 0, done.stderr[-2000:]
    # Two workers write to one pipe, so their lines may interleave: match, do not split lines.
    text = done.stderr
    assert re.findall(r"main \d+ (\d+)", text) == [str(CORES)]
    workers = set(re.findall(r"worker (\d+) (\d+)", text))
    assert workers and all(threads == "1" for _, threads in workers), workers
    spins = set(re.findall(r"GOMP_SPINCOUNT = '(\d+)'", text))
    assert spins == {"1000"}, spins
