"""Every core by default: OMP_NUM_THREADS is set only when the user chose no thread count."""

import os
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


def test_physical_cores_is_within_the_processors_this_process_may_use():
    assert 1 <= cores.physical_cores() <= len(os.sched_getaffinity(0))


def _import_and_report(code, **env):
    base = {k: v for k, v in os.environ.items()
            if k not in cores.USER_THREAD_VARIABLES + ("DMLC_ROLE",)}
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


REPORT = ("import os, bucketrnn; from bucketrnn import cores; "
          "print(os.environ.get('OMP_NUM_THREADS'), '|', cores.threads_note())")


@pytest.mark.parametrize("env, expect", [
    ({}, f"{cores.physical_cores()} | {cores.physical_cores()} (all physical cores"),
    ({"OMP_NUM_THREADS": "1"}, "1 | as set by the user (OMP_NUM_THREADS=1)"),
    ({"MXNET_OMP_MAX_THREADS": "1"}, "None | as set by the user (MXNET_OMP_MAX_THREADS=1)"),
])
def test_import_sets_the_threads_before_mxnet_loads(env, expect):
    assert _import_and_report(REPORT, **env).startswith(expect)


def test_mxnet_imported_first_is_reported_not_changed():
    line = _import_and_report("import mxnet; " + REPORT)
    assert line.startswith("None | MXNet's default (half the processors): mxnet was imported "
                           "before bucketrnn")
