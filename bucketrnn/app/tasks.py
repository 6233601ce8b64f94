"""Which task a trained run solves, and which code serves each command for that task.

The commands on a trained run (``bucketrnn evaluate | generate | predict | translate``) look up
their implementation here, by action and task, so a new task plugs in without touching them:

* :func:`task_of` gives the task of the app's ``model.name`` (:class:`bucketrnn.tasks.Task`
  lists the model names of each task).
* :func:`register` ``(action, task)`` records a handler. Actions and handler signatures:

  ``"read"``      ``fn(run, path) -> (dataset, OverflowCounts)``: a labelled file in the run's
                  data format, encoded with the run's vocabulary (``bucketrnn evaluate FILE``).
  ``"predict"``   ``fn(run, path) -> Predictions``: one output string per input line
                  (``bucketrnn predict``).
  ``"generate"``  ``fn(run, prompt, **options) -> dict`` (``bucketrnn generate``).
  ``"translate"`` ``fn(run, path) -> Predictions`` (``bucketrnn translate``).
* ``PLUGINS`` lists the modules whose import registers handlers; they are imported on the
  first lookup.

A tagger, for instance, is the task :data:`bucketrnn.tasks.TAG`; its module is in ``PLUGINS``
and registers ``("read", "tag")`` and ``("predict", "tag")`` there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from bucketrnn._aliases import moved_names
from bucketrnn.tasks import TASKS, task_of_model

__all__ = ["ACTIONS", "PLUGINS", "Predictions", "handler", "register", "task_of", "tasks_for"]

ACTIONS = ("read", "predict", "generate", "translate")
__getattr__ = moved_names(__name__, {"MODEL_TASKS": (
    lambda: {m: t.name for t in TASKS.values() for m in t.models},
    "bucketrnn.tasks.task_of_model(name)")})
PLUGINS = [
    "bucketrnn.app.infer",
]
_HANDLERS: dict = {}
_LOADED: set = set()


@dataclass
class Predictions:
    """Outputs of ``predict``/``translate``: ``outputs[i]`` answers line ``line_numbers[i]``
    (1-based) of the input file; ``notes`` are said on stderr (lines cut, unknown words)."""

    outputs: list
    line_numbers: np.ndarray
    notes: list


def register(action: str, task: str):
    """Decorator: ``fn`` serves ``action`` for runs of ``task`` (see the module docstring)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got action={action!r}")

    def decorate(fn):
        _HANDLERS[(action, task)] = fn
        return fn

    return decorate


def _load_plugins() -> None:
    for name in PLUGINS:
        if name not in _LOADED:
            importlib.import_module(name)
            _LOADED.add(name)


def tasks_for(action: str) -> list:
    """The tasks with a handler for ``action``, sorted."""
    _load_plugins()
    return sorted(task for a, task in _HANDLERS if a == action)


def handler(action: str, task: str, command: str | None = None, run_dir: str | None = None):
    """The handler of ``action`` for ``task``; a ``ValueError`` naming the command, the run and
    the tasks it does serve when there is none."""
    _load_plugins()
    fn = _HANDLERS.get((action, task))
    if fn is None:
        where = f" (run {run_dir!r})" if run_dir else ""
        serves = ", ".join(tasks_for(action)) or "none yet"
        raise ValueError(f"`bucketrnn {command or action}` is not available for this run's task "
                         f"{task!r}{where}: it serves runs of task {serves}")
    return fn


def task_of(model_name: str, source: str = "config.json") -> str:
    """The task name of the app's ``model.name``; a ``ValueError`` naming ``source``
    otherwise."""
    try:
        return task_of_model(model_name).name
    except ValueError as e:
        raise ValueError(f"{source} names {e}") from None
