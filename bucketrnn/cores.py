"""Every core by default: how many OpenMP threads MXNet gets, decided before MXNet loads.

With ``OMP_NUM_THREADS`` unset, MXNet 1.9.1 on x86 starts one OpenMP thread per two processors
(it assumes hyper-threading), so on a machine without it half the cores idle. MXNet reads the
variable once, when it is imported, so ``import bucketrnn`` sets it first: to the number of
physical cores this process may run on, unless the user chose a thread count themselves
(``OMP_NUM_THREADS``, ``MXNET_OMP_MAX_THREADS`` or ``MXNET_CPU_WORKER_NTHREADS``), MXNet was
imported before bucketrnn (then nothing can change it; :func:`threads_note` says so), or the
process belongs to a distributed job (``DMLC_ROLE`` set: ``bucketrnn-launch`` gives each worker
its share of the cores).

Override it like any OpenMP program: ``OMP_NUM_THREADS=1 python -m bucketrnn ...``.
``bucketrnn-launch`` divides the cores among the workers it starts on one machine.

Examples
--------
>>> env = {}
>>> use_all_cores(env, cores=4, mxnet_loaded=False), env["OMP_NUM_THREADS"]
(4, '4')
>>> use_all_cores({"OMP_NUM_THREADS": "1"}, cores=4, mxnet_loaded=False) is None
True
"""

from __future__ import annotations

import os
import sys

__all__ = ["USER_THREAD_VARIABLES", "physical_cores", "prepare_environment", "threads_note",
           "use_all_cores"]

USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "MXNET_CPU_WORKER_NTHREADS")

# What use_all_cores did in this process (for the app's summary): "set", "user", "late".
_STATE = {"how": None, "threads": None}


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
        _remember(environ, "user", env.get("OMP_NUM_THREADS"))
        return None
    if loaded:
        _remember(environ, "late", None)
        return None
    if env.get("DMLC_ROLE"):
        # A process of a distributed job: the workers of one machine share its cores, which
        # only the launcher knows how to divide (distributed.check_threads warns otherwise).
        _remember(environ, "job", None)
        return None
    threads = physical_cores() if cores is None else int(cores)
    env["OMP_NUM_THREADS"] = str(threads)
    _remember(environ, "set", threads)
    return threads


def _remember(environ, how, threads):
    if environ is None:  # only the process's own environment counts for the summary
        _STATE.update(how=how, threads=threads)


def prepare_environment() -> None:
    """What ``import bucketrnn`` does before MXNet loads: all cores (:func:`use_all_cores`) and
    quiet graph binding. MXNet prints "Subgraph backend MKLDNN is activated" for every graph it
    binds (dozens per run, into the progress bar) unless ``MXNET_SUBGRAPH_VERBOSE`` says
    otherwise; it is set to 0 unless the user set it."""
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    use_all_cores()


def threads_note() -> str:
    """One line for a run's summary: the OpenMP threads MXNet uses and why."""
    how, threads = _STATE["how"], _STATE["threads"]
    if how == "set":
        return f"{threads} (all physical cores; OMP_NUM_THREADS=N to choose)"
    if how == "user":
        chosen = [f"{n}={os.environ[n]}" for n in USER_THREAD_VARIABLES if os.environ.get(n)]
        return f"as set by the user ({', '.join(chosen)})"
    if how == "job":
        return "MXNet's default (a distributed job process without OMP_NUM_THREADS)"
    if how == "late":
        return ("MXNet's default (half the processors): mxnet was imported before bucketrnn; "
                "import bucketrnn first or set OMP_NUM_THREADS")
    return "unknown"


prepare_environment()
