"""Small pieces the standalone benchmark modules share: the ``--json`` file, the environment
of an app run in a fresh process and the file of MXNet's profiler."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

__all__ = ["app_env", "profiler_file", "write_json"]


def write_json(path: str | None, result) -> None:
    """Write ``result`` as indented JSON to ``path`` (nothing when ``path`` is empty or None).

    Parameters
    ----------
    path : str or None
        The ``--json`` argument of a benchmark.
    result : object
        The JSON-serialisable figures.
    """
    if path:
        with open(path, "w") as f:
            json.dump(result, f, indent=1)


def app_env(threads: int | None = None) -> dict:
    """This process's environment without the user's thread and wait variables, for a ``python
    -m bucketrnn`` run that chooses its own (``OMP_NUM_THREADS=threads`` when given).

    Parameters
    ----------
    threads : int or None
        ``OMP_NUM_THREADS`` for the child; None leaves bucketrnn's default (all physical cores).

    Returns
    -------
    dict
        The child's environment.
    """
    from bucketrnn.cores import USER_THREAD_VARIABLES, WAIT_VARIABLES

    env = {k: v for k, v in os.environ.items()
           if k not in USER_THREAD_VARIABLES + WAIT_VARIABLES}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


@contextlib.contextmanager
def profiler_file():
    """A path for ``mx.profiler.set_config(filename=...)`` in a fresh temporary directory,
    removed with what MXNet wrote there when the block ends.

    ``set_config`` deletes the file it is given and writes a regular file in its place: given
    ``/dev/null`` in a process run as root, it replaced the machine's ``/dev/null``, and every
    later ``open("/dev/null")`` on the machine failed or wrote into a file. Call
    ``mx.profiler.dumps`` inside the block.

    Yields
    ------
    str
        ``<fresh directory>/profile.json``.
    """
    with tempfile.TemporaryDirectory(prefix="bucketrnn-profile-") as folder:
        yield os.path.join(folder, "profile.json")
