"""Start a distributed MXNet job on this machine: a scheduler, servers and workers on loopback.

Usage::

    bucketrnn-launch --workers 2 --servers 1 [--port P] [--timeout S] [--threads T] \\
        -- python -m bucketrnn kvstore=dist_sync ...

Every process gets the ps-lite variables (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI=127.0.0.1``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER``, ``DMLC_NODE_HOST``); workers
run the command, with ``OMP_NUM_THREADS`` set to share the cores (``--threads``, default
``cores // workers``, at least 1). Every process also gets bucketrnn's OpenMP wait setting
(:data:`bucketrnn.cores.WAIT_DEFAULT`: idle threads spin only briefly, so the processes of
the job do not steal each other's cores) unless the launcher's environment sets
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, which then pass unchanged. The scheduler and servers
are ``python -c "import mxnet"``:
importing MXNet with ``DMLC_ROLE=scheduler|server`` runs that role until the job ends.

Every line a process prints is echoed with its name: ``[scheduler]``, ``[server 0]``,
``[worker 1]`` (the launch slot; the kvstore rank ps-lite assigns may differ). If any process
fails (or a server or the scheduler stops and a worker still runs 10 s later), the others are
killed and the launcher exits non-zero, naming the process and its exit code. It exits 0 once
every worker has exited 0 (then stops what is left of the servers and scheduler).

Exit codes: 0 success; the failed process's code (128 + signal if it was killed by one); 2 for
bad arguments or a port in use; 124 on ``--timeout``.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from bucketrnn.cores import WAIT_VARIABLES, choose_wait
from bucketrnn.distributed.kvstore import default_threads
from bucketrnn.validation import is_int

__all__ = ["LaunchError", "check_port", "describe", "free_port", "launch", "main",
           "process_env"]

HOST = "127.0.0.1"
POLL_SECONDS = 0.05
# How long a process gets to exit after SIGTERM before SIGKILL.
KILL_GRACE_SECONDS = 3.0
# After the last worker exits, the servers and scheduler normally stop on their own.
SHUTDOWN_SECONDS = 10.0


# Every child runs under this: it asks Linux to SIGKILL it when the launcher dies (even by
# SIGKILL, which the launcher cannot catch), then becomes the real command. Without it a killed
# launcher would leave workers blocked in the kvstore forever.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n")


class LaunchError(RuntimeError):
    """Bad launcher arguments or a port that cannot be used (exit code 2)."""


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(port: int, host: str = HOST) -> int:
    """Return ``port`` if the scheduler can bind it on ``host``, else raise :class:`LaunchError`."""
    if not 1 <= port <= 65535:
        raise LaunchError(f"--port must be in 1..65535, got --port={port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            what = "in use" if e.errno == errno.EADDRINUSE else f"not usable ({e.strerror})"
            raise LaunchError(f"--port={port} on {host} is {what}: the scheduler could not "
                              "listen there. Pick another port, or leave --port out to use a "
                              "free one") from e
    return port


class _Proc:
    """One child process and the thread that echoes its output with a prefix."""

    def __init__(self, name, argv, env, out, lock):
        self.name = name
        # A session of its own, so that killing it also kills whatever it started (loader
        # workers, shells).
        argv = [sys.executable, "-c", _DIE_WITH_PARENT, *argv]
        self.popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.thread = threading.Thread(target=self._echo, args=(out, lock), daemon=True)
        self.thread.start()

    def _echo(self, out, lock):
        prefix = f"[{self.name}] "
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with lock:
                out.write(prefix + line + "\n")
                out.flush()
        self.popen.stdout.close()

    def poll(self):
        return self.popen.poll()

    def signal(self, sig):
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass


def describe(code: int) -> str:
    """``'exit code 3'`` or ``'signal SIGKILL'`` for a ``Popen.returncode``."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _stop(procs, grace=KILL_GRACE_SECONDS):
    for p in procs:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.signal(signal.SIGKILL)
            p.popen.wait()
    for p in procs:
        p.thread.join(timeout=1.0)


def process_env(base: dict, role: str, threads: int = 1) -> dict:
    """The environment of one process of a job: ``base`` (with the ``DMLC_*`` variables of the
    job) plus its role, its OpenMP threads and, unless ``base`` sets a wait variable, bucketrnn's
    wait setting. Set explicitly rather than inherited from this process's own
    ``import bucketrnn``, because ``base`` may be any environment and the scheduler and servers
    never import bucketrnn.

    Examples
    --------
    >>> env = process_env({"OMP_WAIT_POLICY": "ACTIVE"}, "worker", 2)
    >>> env["DMLC_ROLE"], env["OMP_NUM_THREADS"], env["OMP_WAIT_POLICY"]
    ('worker', '2', 'ACTIVE')
    """
    env = dict(base, DMLC_ROLE=role, OMP_NUM_THREADS=str(threads))
    choose_wait(env, gomp_loaded=False)
    return env


def launch(command, workers=2, servers=1, port=None, timeout=None, threads=None,
           out=None, env=None) -> int:
    """Run ``command`` as ``workers`` workers of a job with ``servers`` servers; return a code.

    Parameters
    ----------
    command : list of str
        The worker command (argv).
    workers, servers : int
        Processes of each role, all on this machine.
    port : int, optional
        Scheduler port on 127.0.0.1; a free one by default.
    timeout : float, optional
        Seconds before the whole job is killed (exit code 124).
    threads : int, optional
        ``OMP_NUM_THREADS`` of each worker; default ``cores // workers``, at least 1.
    out : file, optional
        Where the prefixed output goes; default ``sys.stdout``.
    env : dict, optional
        Base environment; default ``os.environ``.

    Returns
    -------
    int
        The launcher's exit code (see the module docstring).
    """
    out = out or sys.stdout
    for name, value, low in (("workers", workers, 1), ("servers", servers, 1)):
        if not is_int(value) or value < low:
            raise LaunchError(f"--{name} must be an int >= {low}, got --{name}={value!r}")
    if threads is not None and (not is_int(threads) or threads < 1):
        raise LaunchError(f"--threads must be an int >= 1, got --threads={threads!r}")
    if timeout is not None and not timeout > 0:
        raise LaunchError(f"--timeout must be > 0 seconds, got --timeout={timeout!r}")
    if not command:
        raise LaunchError("no worker command: put it after `--`, e.g. "
                          "`python -m bucketrnn.distributed.launch --workers 2 -- python train.py`")
    if shutil.which(command[0]) is None:
        raise LaunchError(f"worker command {command[0]!r} is not an executable file or on "
                          "PATH")
    port = free_port() if port is None else check_port(port)
    threads = threads or default_threads(workers)
    base = dict(os.environ if env is None else env)
    base.update(DMLC_PS_ROOT_URI=HOST, DMLC_PS_ROOT_PORT=str(port),
                DMLC_NUM_SERVER=str(servers), DMLC_NUM_WORKER=str(workers),
                # ps-lite otherwise advertises the address of the first network interface.
                DMLC_NODE_HOST=HOST)
    lock = threading.Lock()

    def note(msg):
        with lock:
            out.write(f"[launch] {msg}\n")
            out.flush()

    role_argv = [sys.executable, "-c", "import mxnet"]
    procs, worker_procs = [], []
    wait = ", ".join(f"{k}={v}" for k, v in process_env(base, "worker", threads).items()
                     if k in WAIT_VARIABLES and v)
    note(f"scheduler {HOST}:{port}, {servers} server(s), {workers} worker(s), "
         f"OMP_NUM_THREADS={threads} per worker, {wait}: {' '.join(command)}")
    try:
        procs.append(_Proc("scheduler", role_argv, process_env(base, "scheduler"), out, lock))
        for i in range(servers):
            procs.append(_Proc(f"server {i}", role_argv, process_env(base, "server"), out,
                               lock))
        for i in range(workers):
            p = _Proc(f"worker {i}", list(command), process_env(base, "worker", threads), out,
                      lock)
            procs.append(p)
            worker_procs.append(p)
    except OSError as e:
        _stop(procs)
        note(f"could not start a process: {e}")
        return 2

    started = time.monotonic()
    # A server or the scheduler exits 0 once every worker has finalized the job, which can be
    # a moment before the workers' own exit: only a worker still running long after is wrong.
    role_done = None
    try:
        while True:
            for p in procs:
                code = p.poll()
                if code is None or code == 0:
                    continue
                msg = f"{p.name} failed with {describe(code)}"
                others = [q for q in procs if q.poll() is None]
                note(f"{msg}; stopping the {len(others)} other running process(es)")
                _stop(procs)
                note(f"job failed: {msg}")
                return code if code > 0 else 128 - code
            if all(p.poll() == 0 for p in worker_procs):
                break
            if role_done is None:
                done = [p for p in procs if p not in worker_procs and p.poll() == 0]
                role_done = (done[0].name, time.monotonic()) if done else None
            elif time.monotonic() - role_done[1] > SHUTDOWN_SECONDS:
                running = [p.name for p in worker_procs if p.poll() is None]
                msg = (f"{role_done[0]} stopped (exit code 0) but {', '.join(running)} still "
                       f"ran {SHUTDOWN_SECONDS:g}s later")
                note(f"{msg}; stopping every process")
                _stop(procs)
                note(f"job failed: {msg}")
                return 1
            if timeout is not None and time.monotonic() - started > timeout:
                running = [p.name for p in procs if p.poll() is None]
                note(f"timeout: the job ran longer than --timeout={timeout:g}s; killing "
                     f"{', '.join(running)}")
                _stop(procs)
                return 124
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        note("interrupted; stopping every process")
        _stop(procs)
        return 130
    # Workers finalize the job on exit; the servers and scheduler then stop by themselves.
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(POLL_SECONDS)
    _stop(procs)
    note(f"all {workers} worker(s) finished in {time.monotonic() - started:.1f}s")
    return 0


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m bucketrnn.distributed.launch",
        description="Run a distributed MXNet (ps-lite) job on this machine, on loopback.")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--servers", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--port", type=int, default=None,
                   help="scheduler port on 127.0.0.1 (default: a free one)")
    p.add_argument("--timeout", type=float, default=None,
                   help="kill the job after this many seconds (exit code 124)")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP_NUM_THREADS per worker (default: cores // workers, at least 1)")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- then the worker command")
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return launch(command, workers=args.workers, servers=args.servers, port=args.port,
                      timeout=args.timeout, threads=args.threads)
    except LaunchError as e:
        print(f"[launch] error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    # SIGTERM (a CI timeout, `kill`) stops the job like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
