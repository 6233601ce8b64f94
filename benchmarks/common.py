"""Small pieces the standalone benchmark modules share: the ``--json`` file and the environment
of an app run in a fresh process."""

from __future__ import annotations

import json
import os

__all__ = ["app_env", "write_json"]


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
