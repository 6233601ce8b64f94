"""MXNet's OpenMP threads, decided before MXNet loads: how many, and how they wait.

How many. With ``OMP_NUM_THREADS`` unset, MXNet 1.9.1 on x86 starts one OpenMP thread per two
processors (it assumes hyper-threading), so on a machine without it half the cores idle. MXNet
reads the variable once, when it is imported, so ``import bucketrnn`` sets it first: to the
number of physical cores this process may run on, unless the user chose a thread count
themselves (:data:`USER_THREAD_VARIABLES`), MXNet was imported before bucketrnn (then nothing
can change it; :func:`threads_note` says so), or the process belongs to a distributed job
(``DMLC_ROLE`` set: ``bucketrnn-launch`` gives each worker its share of the cores).

How they wait. MXNet's wheel links GNU libgomp, whose idle threads spin at every barrier for
about 3 ms (300,000 rounds) before they sleep. An unrolled training step runs thousands of small
parallel regions, so when another busy process takes one of the cores, the thread left waiting
spins through the time slices its partner needs: training beside one busy process fell 26x.
``import bucketrnn`` therefore sets :data:`WAIT_DEFAULT` before libgomp loads: idle threads spin
1,000 rounds (about 10 us, enough for the gap between two operators of a step) and then sleep,
unless the user set a wait variable (:data:`WAIT_VARIABLES`) or libgomp is already loaded in the
process (then it has read its environment; :func:`threads_note` says so). Sleeping at once
(``OMP_WAIT_POLICY=PASSIVE``) cost about a fifth of the speed on a quiet machine, libgomp's spin
a collapse beside one busy process; the short spin keeps both (docs/configuration.md,
"Threads"). The wait is chosen independently of the thread count: a user's
``OMP_NUM_THREADS=4`` still gets the short spin, a user's ``OMP_WAIT_POLICY=ACTIVE`` still gets
every core.

Override either like any OpenMP program: ``OMP_NUM_THREADS=1 python -m bucketrnn ...``,
``OMP_WAIT_POLICY=ACTIVE`` or ``GOMP_SPINCOUNT=300000`` (libgomp's own default).
Processes started from this one inherit the wait setting. Loader workers are forked after MXNet
loaded and get one OpenMP thread each (:func:`one_thread_in_forked_children`); ``bucketrnn-launch``
divides the cores among the workers it starts and gives every process it starts the same wait
setting.

Examples
--------
>>> env = {}
>>> use_all_cores(env, cores=4, mxnet_loaded=False), env["OMP_NUM_THREADS"]
(4, '4')
>>> use_all_cores({"OMP_NUM_THREADS": "1"}, cores=4, mxnet_loaded=False) is None
True
>>> env = {}
>>> choose_wait(env, gomp_loaded=False), env
({'GOMP_SPINCOUNT': '1000'}, {'GOMP_SPINCOUNT': '1000'})
>>> choose_wait({"GOMP_SPINCOUNT": "10000"}, gomp_loaded=False) is None
True
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["USER_THREAD_VARIABLES", "WAIT_DEFAULT", "WAIT_VARIABLES", "choose_wait",
           "libgomp_loaded", "one_thread_in_forked_children", "physical_cores",
           "prepare_environment", "threads_note", "use_all_cores"]

USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "MXNET_CPU_WORKER_NTHREADS")
# How idle OpenMP threads wait: the OpenMP standard's variable and libgomp's own spin count
# (which takes precedence over the policy in libgomp).
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# What bucketrnn sets when the user set none of WAIT_VARIABLES: a spin short enough that a
# descheduled partner thread is not waited for long, long enough to bridge two operators.
# Measured against sleeping at once and longer spins, alone and beside a busy process
# (docs/configuration.md, "Threads").
WAIT_DEFAULT = {"GOMP_SPINCOUNT": "1000"}

# What this process's import did (for the app's summary). threads: "set", "user", "late",
# "job"; wait: "set", "user", "late".
_STATE = {"how": None, "threads": None, "wait": None}


def _allowed_cpus() -> list:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores among the processors this process may run on (hyper-threads of one core
    count once); the processor count where the topology cannot be read."""
    cpus = _allowed_cpus()
    cores = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with open(f"{base}/physical_package_id") as f:
                package = f.read().strip()
            with open(f"{base}/core_id") as f:
                core = f.read().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def use_all_cores(environ=None, cores: int | None = None, mxnet_loaded: bool | None = None):
    """Set ``OMP_NUM_THREADS`` to ``cores`` (default: :func:`physical_cores`) in ``environ``
    (default: ``os.environ``) unless the user set a thread variable or MXNet is loaded already.

    Returns the thread count set, or None when nothing was changed.
    """
    env = os.environ if environ is None else environ
    loaded = ("mxnet" in sys.modules) if mxnet_loaded is None else mxnet_loaded
    user = next((name for name in USER_THREAD_VARIABLES if env.get(name)), None)
    if user is not None:
        _remember(environ, how="user", threads=env.get("OMP_NUM_THREADS"))
        return None
    if loaded:
        _remember(environ, how="late", threads=None)
        return None
    if env.get("DMLC_ROLE"):
        # A process of a distributed job: the workers of one machine share its cores, which
        # only the launcher knows how to divide (distributed.check_threads warns otherwise).
        _remember(environ, how="job", threads=None)
        return None
    threads = physical_cores() if cores is None else int(cores)
    env["OMP_NUM_THREADS"] = str(threads)
    _remember(environ, how="set", threads=threads)
    return threads


def libgomp_loaded() -> bool:
    """Whether a GNU OpenMP runtime that MXNet would share (file name ``libgomp.so*``) is mapped
    into this process: it read its environment when it loaded, so a wait variable set now would
    not count. A runtime bundled under another name (torch's ``libgomp-<hash>.so``) is a separate
    library and does not count. Without ``/proc``: whether MXNet is imported."""
    try:
        with open("/proc/self/maps") as f:
            return any(os.path.basename(line.split()[-1]).startswith("libgomp.so")
                       for line in f if "libgomp" in line)
    except OSError:
        return "mxnet" in sys.modules


def choose_wait(environ=None, gomp_loaded: bool | None = None):
    """Set :data:`WAIT_DEFAULT` in ``environ`` (default: ``os.environ``) unless the user set any
    of :data:`WAIT_VARIABLES` or libgomp is loaded already (``gomp_loaded``; default:
    :func:`libgomp_loaded`).

    Returns the variables set (a dict), or None when nothing was changed.
    """
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in WAIT_VARIABLES):
        _remember(environ, wait="user")
        return None
    loaded = libgomp_loaded() if gomp_loaded is None else gomp_loaded
    if loaded:
        _remember(environ, wait="late")
        return None
    env.update(WAIT_DEFAULT)
    _remember(environ, wait="set")
    return dict(WAIT_DEFAULT)


_FORK_HOOK = []  # omp_set_num_threads of the loaded libgomp, once the hook is registered


def one_thread_in_forked_children() -> bool:
    """Give every process forked from this one from now on a single OpenMP thread.

    Loader workers (``BucketLoader(num_workers > 0)``) are forked after MXNet loaded. MXNet's
    own fork handler runs its operators in a child on one thread, but libgomp keeps the parent's
    thread count, which oneDNN operators ask for: a worker whose dataset runs one would start a
    team of its own beside the training threads (2 workers on 2 cores: 6 threads). The child
    calls libgomp's ``omp_set_num_threads(1)`` (resolved here, in the parent, so the child only
    calls a function and loads nothing). Call it once MXNet is loaded; later calls do nothing.

    Returns
    -------
    bool
        Whether the hook is in place (False when no libgomp is loaded).
    """
    if _FORK_HOOK:
        return True
    if not libgomp_loaded():
        return False
    try:
        set_threads = ctypes.CDLL("libgomp.so.1").omp_set_num_threads
    except (OSError, AttributeError):
        return False
    os.register_at_fork(after_in_child=lambda: set_threads(1))
    _FORK_HOOK.append(set_threads)
    return True


def _remember(environ, **what):
    if environ is None:  # only the process's own environment counts for the summary
        _STATE.update(what)


def prepare_environment() -> None:
    """What ``import bucketrnn`` does before MXNet loads: all cores (:func:`use_all_cores`),
    a short spin of idle threads (:func:`choose_wait`) and quiet graph binding. MXNet prints
    "Subgraph backend MKLDNN is activated" for every graph it binds (dozens per run, into the
    progress bar) unless ``MXNET_SUBGRAPH_VERBOSE`` says otherwise; it is set to 0 unless the user
    set it."""
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    use_all_cores()
    choose_wait()


def _wait_note() -> str:
    how = _STATE["wait"]
    if how == "set":
        chosen = ", ".join(f"{k}={v}" for k, v in WAIT_DEFAULT.items())
        return (f"idle threads spin briefly, then sleep ({chosen}; set OMP_WAIT_POLICY or "
                "GOMP_SPINCOUNT to choose)")
    if how == "user":
        chosen = [f"{n}={os.environ[n]}" for n in WAIT_VARIABLES if os.environ.get(n)]
        return f"wait as set by the user ({', '.join(chosen)})"
    if how == "late":
        return ("idle threads spin (libgomp's default, slow beside other busy processes): "
                "libgomp was loaded before bucketrnn; import bucketrnn first or set "
                "GOMP_SPINCOUNT=1000")
    return "wait unknown"


def threads_note() -> str:
    """One line for a run's summary: the OpenMP threads MXNet uses, how they wait, and why."""
    how, threads = _STATE["how"], _STATE["threads"]
    if how == "late" and _STATE["wait"] == "late":
        return ("MXNet's defaults: half the processors, idle threads spinning (slow beside other "
                "busy processes): mxnet was imported before bucketrnn; import bucketrnn first, "
                "or set OMP_NUM_THREADS and GOMP_SPINCOUNT=1000")
    if how == "set":
        count = f"{threads} (all physical cores; OMP_NUM_THREADS=N to choose)"
    elif how == "user":
        chosen = [f"{n}={os.environ[n]}" for n in USER_THREAD_VARIABLES if os.environ.get(n)]
        count = f"as set by the user ({', '.join(chosen)})"
    elif how == "job":
        count = "MXNet's default (a distributed job process without OMP_NUM_THREADS)"
    elif how == "late":
        count = ("MXNet's default (half the processors): mxnet was imported before bucketrnn; "
                 "import bucketrnn first or set OMP_NUM_THREADS")
    else:
        count = "unknown"
    return f"{count}; {_wait_note()}"


prepare_environment()
