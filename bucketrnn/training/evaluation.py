"""Evaluate bucketed graphs on a loader: one pass, the task's metrics, fill rows never counted.

:func:`evaluate` is the one evaluation path: :meth:`bucketrnn.training.loop.TrainLoop.evaluate`
calls
it, and so can a loop of one's own or :func:`bucketrnn.load_run`'s result. Loss is summed over
real tokens (``lm``) or real rows (``classify``) and divided once at the end, so the figures do
not depend on how the examples were bucketed or batched (to float tolerance).

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

import numpy as np

from bucketrnn.training import metrics
from bucketrnn.training.progress import Progress

__all__ = ["EVALUATION_TASKS", "add_accuracy_counts", "add_tag_counts", "batch_counts",
           "correct_predictions", "evaluate"]

# The tasks whose figures evaluate() knows: loss per token and perplexity, loss per row and
# accuracy, loss per token and token accuracy (accuracies when the graphs also return logits).
EVALUATION_TASKS = ("lm", "classify", "tag", "seq2seq")
PER_TOKEN_TASKS = ("lm", "tag", "seq2seq")


def batch_counts(batch, task: str):
    """``(real_tokens, slots, loss_denominator, real_rows)`` of a batch: the real tokens and
    the slots computed, fill rows included (both sides for ``seq2seq``: source plus target
    steps, as :attr:`BucketPlan.waste <bucketrnn.data.plan.BucketPlan.waste>` counts them),
    what its summed loss is divided by (real tokens for ``lm`` and ``tag``, real target tokens
    for ``seq2seq``, real rows otherwise) and the boolean mask of its real (non-fill) rows."""
    vl = batch.valid_length.asnumpy().astype(np.int64)
    real_rows = np.asarray(batch.indices) >= 0
    real = int(vl[real_rows].sum())
    slots = int(np.prod(batch.data.shape[:2]))
    if task == "seq2seq":
        # Both sides are computed (the plan's real tokens and slots count both); the loss is
        # over target tokens.
        tl = batch.label_length.asnumpy().astype(np.int64)
        target = int(tl[real_rows].sum())
        return (real + target, slots + int(np.prod(batch.label.shape[:2])), target,
                real_rows)
    count = real if task in PER_TOKEN_TASKS else int(real_rows.sum())
    return real, slots, count, real_rows


def correct_predictions(logits, batch, real_rows) -> float:
    """Real rows whose arg-max class equals ``batch.label``."""
    pred = logits.argmax(axis=-1).asnumpy()
    label = batch.label.asnumpy()
    return float((pred == label)[real_rows].sum())


def add_tag_counts(out, batch, tally: dict, real_rows, task: str) -> None:
    """Add a tagging batch's correct and counted tokens to ``tally`` (its ``rows`` count
    tokens), when ``task`` is ``"tag"`` and the graphs returned logits after the loss."""
    if task == "tag" and isinstance(out, (list, tuple)) and len(out) > 1:
        correct, tokens = metrics.token_counts(out[1], batch.label, batch.valid_length,
                                               real_rows)
        tally["correct"] += correct
        tally["rows"] += tokens


def add_accuracy_counts(out, batch, tally: dict, real_rows, task: str) -> None:
    """Add a batch's correct and counted rows (``classify``) or tokens (``tag``) to ``tally``
    when the graphs returned logits after the loss; other tasks add nothing. The one counting
    path of training steps and :func:`evaluate`."""
    if task == "classify" and isinstance(out, (list, tuple)) and len(out) > 1:
        tally["correct"] += correct_predictions(out[1], batch, real_rows)
        tally["rows"] += int(real_rows.sum())
    else:
        add_tag_counts(out, batch, tally, real_rows, task)


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
        A task other than those of :data:`EVALUATION_TASKS`.
    """
    task = getattr(loader, "task", None) if task is None else task
    if task not in EVALUATION_TASKS:
        raise ValueError(f"task must be one of {EVALUATION_TASKS} (the loader's task unless "
                         f"given), got task={task!r}")
    t = metrics.tally()
    started = time.perf_counter()
    loader.set_epoch(0)
    bar = Progress(stream or sys.stderr, enabled=progress)
    bar.start("evaluate", len(loader))
    for done, batch in enumerate(loader, 1):
        bar.update(done)
        _, _, n, real_rows = batch_counts(batch, task)
        out = graphs(batch)
        first = out[0] if isinstance(out, (list, tuple)) else out
        t["loss"] += float(first.sum().asscalar())
        t["count"] += n
        add_accuracy_counts(out, batch, t, real_rows, task)
    bar.close()
    result = metrics.figures(task, t)
    result["seconds"] = time.perf_counter() - started
    return result
