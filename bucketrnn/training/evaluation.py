"""Evaluate bucketed graphs on a loader: one pass, the task's metrics, fill rows never counted.

:func:`evaluate` is the one evaluation path: :meth:`bucketrnn.training.loop.TrainLoop.evaluate`
calls it, and so can a loop of one's own or :func:`bucketrnn.load_run`'s result. Loss is summed
over what the task divides by (:class:`bucketrnn.tasks.Task`: real tokens, or real rows for
``classify``) and divided once at the end, so the figures do not depend on how the examples were
bucketed or batched (to float tolerance).

Examples
--------
>>> import mxnet as mx
>>> from bucketrnn import BucketLoader, GraphCache
>>> from bucketrnn.models import LanguageModel
>>> loader = BucketLoader([[1, 2, 3, 4], [2, 3, 1], [4, 1, 2]], batch_size=2, num_buckets=2,
...                       shuffle=False)
>>> graphs = GraphCache(LanguageModel.factory(vocab_size=5, hidden_size=8, num_layers=1),
...                     keys=loader.plan.keys)
>>> graphs.initialize(mx.init.Xavier())
>>> sorted(evaluate(graphs, loader))
['loss', 'perplexity', 'seconds']
"""

from __future__ import annotations

import sys
import time

from bucketrnn._aliases import moved_names
from bucketrnn.progress import Progress
from bucketrnn.tasks import get_task
from bucketrnn.training import metrics

__all__ = ["evaluate"]

# What the task objects do now (bucketrnn.tasks), for code written against the old helpers.
__getattr__ = moved_names(__name__, {
    "EVALUATION_TASKS": "bucketrnn.tasks:TASK_NAMES",
    "batch_counts": (lambda: lambda batch, task: get_task(task).counts(batch),
                     "bucketrnn.tasks.get_task(task).counts(batch)"),
    "add_accuracy_counts": (
        lambda: lambda out, batch, tally, real_rows, task: get_task(task).add_accuracy(
            out, batch, tally, real_rows),
        "bucketrnn.tasks.get_task(task).add_accuracy(out, batch, tally, real_rows)"),
})


def evaluate(graphs, loader, task: str | None = None, progress: bool = False,
             stream=None) -> dict:
    """The task's metrics over one pass of ``loader`` through ``graphs``.

    Parameters
    ----------
    graphs : GraphCache or callable
        ``graphs(batch)`` returns the per-row loss (already times ``weight``), optionally
        followed by logits (a tuple): what the reference models return with
        ``outputs=("loss", "logits")``.
    loader : BucketLoader
        Its epoch 0 is played (evaluation loaders do not shuffle); it is rewound first, so
        calling this twice gives the same figures.
    task : {"lm", "classify", "tag"}, optional
        Default: ``loader.task``.
    progress : bool
        Draw a progress bar on ``stream`` (default ``sys.stderr``).

    Returns
    -------
    dict
        ``loss`` (mean per real token for ``lm`` and ``tag``, per real row for ``classify``),
        then ``perplexity`` (``lm``) or ``accuracy`` (``classify``; token accuracy for ``tag``;
        when the graphs return logits), and ``seconds``.

    Raises
    ------
    ValueError
        A task other than those of :data:`bucketrnn.tasks.TASKS`.
    """
    task = get_task(getattr(loader, "task", None) if task is None else task)  # the loader's
    t = metrics.tally()
    started = time.perf_counter()
    loader.set_epoch(0)
    bar = Progress(stream or sys.stderr, enabled=progress)
    bar.start("evaluate", len(loader))
    for done, batch in enumerate(loader, 1):
        bar.update(done)
        _, _, n, real_rows = task.counts(batch)
        out = graphs(batch)
        first = out[0] if isinstance(out, (list, tuple)) else out
        t["loss"] += float(first.sum().asscalar())
        t["count"] += n
        task.add_accuracy(out, batch, t, real_rows)
    bar.close()
    result = task.figures(t)
    result["seconds"] = time.perf_counter() - started
    return result
