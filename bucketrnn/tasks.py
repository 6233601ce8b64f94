"""The tasks bucketrnn trains, one object each: what a task means, written in one place.

A :class:`Task` owns what differs between language modelling, classification, tagging and
sequence pairs once examples are batches: the lengths its buckets are planned on, what a batch's
summed loss is divided by, which figures a pass reports (perplexity, accuracy, token accuracy)
and how correct predictions are counted. Code elsewhere asks the task object
(``get_task(name).figures(tally)``) instead of branching on its name; adding a task is adding an
object here.

=========== ============================ =================== ==================== ==============
task        examples                     planned length      loss divided by      figures
=========== ============================ =================== ==================== ==============
``lm``      token ids                    ``len(seq) - 1``    real tokens          perplexity
``classify`` ``(sequence, label)``        ``len(seq)``        real rows            accuracy
``tag``     ``(tokens, tags)``           ``len(tokens)``     real tokens          token accuracy
``seq2seq`` ``(source, target)``         ``(src, tgt)``      real target tokens   perplexity
=========== ============================ =================== ==================== ==============

A fifth kind of example, float feature sequences with no target, has no task (``None``): the
loader pads it and the user's own loss decides the rest.

Examples
--------
>>> get_task("lm").figures({"loss": 6.0, "count": 3, "correct": 0.0, "rows": 0})["perplexity"]
7.38905609893065
>>> get_task("classify").per_token, task_of_model("tagger").name
(False, 'tag')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CLASSIFY", "LM", "SEQ2SEQ", "TAG", "TASKS", "TASK_NAMES", "Task", "get_task",
           "host_counts", "perplexity", "task_of_model", "token_counts"]



@dataclass(frozen=True)
class Task:
    """What one task means for planning, loss and metrics.

    Attributes
    ----------
    name : str
    models : tuple of str
        The app's model names (``model.name``) that train this task.
    pairs : bool
        Examples are ``(source, target)`` sequences, bucket keys ``(src_len, tgt_len)``.
    tags : bool
        Examples are ``(tokens, tags)`` with one tag per token (planned on the tokens).
    shift : int
        Steps a sequence loses to its targets: a language model's inputs and targets are the
        sequence shifted by one, so its buckets are planned on ``len(seq) - 1``.
    per_token : bool
        The summed loss is divided by real (target) tokens; else by real rows.
    perplexity : bool
        Figures report ``exp(mean loss)``.
    accuracy : bool
        Figures report the share of correct predictions (of rows, or of tokens when
        ``per_token``), when the graphs return logits after the loss.
    """

    name: str
    models: tuple = ()
    pairs: bool = False
    tags: bool = False
    shift: int = 0
    per_token: bool = True
    perplexity: bool = False
    accuracy: bool = False

    # -------------------------------------------------------------- planning
    def planned_lengths(self, lengths: np.ndarray) -> np.ndarray:
        """The lengths buckets are planned on, from :func:`bucketrnn.sequence_lengths` of the
        dataset; a ``ValueError`` naming the first example that cannot be this task's."""
        if self.tags and lengths.ndim == 2:
            bad = np.flatnonzero(lengths[:, 0] != lengths[:, 1])
            if bad.size:
                i = int(bad[0])
                raise ValueError(f"example {i} has {int(lengths[i, 0])} tokens but "
                                 f"{int(lengths[i, 1])} tags; task={self.name!r} needs exactly "
                                 f"one tag per token ({bad.size} example(s) differ)")
            lengths = lengths[:, 0]
        if (lengths.ndim == 2) != self.pairs:
            raise ValueError(f"task={self.name!r} does not fit the dataset: its examples "
                             f"{'are' if lengths.ndim == 2 else 'are not'} (src, tgt) pairs")
        if self.shift:
            short = np.flatnonzero(lengths < self.shift + 1)
            if short.size:
                i = int(short[0])
                raise ValueError(f"example {i} has {int(lengths[i])} token; task={self.name!r} "
                                 f"needs at least {self.shift + 1} per sequence (one input, one "
                                 "target)")
            return lengths - self.shift
        return lengths

    # -------------------------------------------------------------- loss
    def counts(self, batch) -> tuple:
        """``(real_tokens, slots, loss_denominator, real_rows)`` of a batch: the real tokens
        and the slots computed, fill rows included (both sides of pairs, source plus target
        steps, as :attr:`BucketPlan.waste <bucketrnn.data.plan.BucketPlan.waste>` counts them),
        what its summed loss is divided by (real tokens, real target tokens for pairs, real
        rows when not ``per_token``) and the boolean mask of its real (non-fill) rows. Read
        from ``batch.meta`` when the batch came from a :class:`~bucketrnn.BucketLoader` (no
        copy from the device)."""
        real_rows = np.asarray(batch.indices) >= 0
        meta = host_counts(batch) or _array_counts(batch, real_rows)
        real, slots = meta["tokens"], meta["slots"]
        loss_tokens = real
        if self.pairs:  # both sides are computed; the loss is over the target tokens
            loss_tokens = meta["target_tokens"]
            real, slots = real + loss_tokens, slots + meta["target_slots"]
        return real, slots, loss_tokens if self.per_token else int(real_rows.sum()), real_rows

    # -------------------------------------------------------------- figures
    def figures(self, tally: dict) -> dict:
        """Mean loss, and perplexity or accuracy, from a pass's sums (``loss``, ``count``,
        ``correct``, ``rows``)."""
        mean = tally["loss"] / tally["count"] if tally["count"] else math.nan
        out = {"loss": mean}
        if self.perplexity:
            out["perplexity"] = perplexity(mean)
        elif self.accuracy and tally["rows"]:
            out["accuracy"] = tally["correct"] / tally["rows"]
        return out

    def add_accuracy(self, out, batch, tally: dict, real_rows) -> None:
        """Add a batch's correct and counted predictions (rows, or tokens when
        ``per_token``) to ``tally`` when the graphs returned logits after the loss."""
        if not (self.accuracy and isinstance(out, (list, tuple)) and len(out) > 1):
            return
        pred = _host(out[1].argmax(axis=-1)).astype(np.int64)
        label = _host(batch.label).astype(np.int64)
        if self.per_token:
            correct, counted = token_counts(pred, label, batch.valid_length, real_rows)
        else:
            correct, counted = int((pred == label)[real_rows].sum()), int(real_rows.sum())
        tally["correct"] += correct
        tally["rows"] += counted


def perplexity(loss: float) -> float:
    """``exp(loss)``, infinite when that overflows a float (a loss above about 709.8): the true
    figure of a blown-up run, never a capped one."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def host_counts(batch) -> dict:
    """``batch.meta``'s counts (:class:`~bucketrnn.data.batchify.Batch`) when they still describe
    the batch, else ``{}``: a batch sliced, resized or refilled by hand has other rows or slots
    than the loader counted, and its arrays are counted instead. (A changed ``weight`` or
    ``valid_length`` is not seen: clear ``batch.meta`` after editing them.)"""
    meta = getattr(batch, "meta", None) or {}
    if "rows" not in meta or meta["rows"] != int((np.asarray(batch.indices) >= 0).sum()) \
            or meta["slots"] != int(np.prod(batch.data.shape[:2])):
        return {}
    return meta


def _array_counts(batch, real_rows) -> dict:
    """What ``batch.meta`` would hold, counted from the batch's arrays (a batch made by hand)."""
    vl = _host(batch.valid_length).astype(np.int64)
    out = {"tokens": int(vl[real_rows].sum()), "slots": int(np.prod(batch.data.shape[:2]))}
    if getattr(batch, "label_length", None) is not None:
        tl = _host(batch.label_length).astype(np.int64)
        out.update(target_tokens=int(tl[real_rows].sum()),
                   target_slots=int(np.prod(batch.label.shape[:2])))
    return out


def _host(x) -> np.ndarray:
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


def token_counts(pred, label, valid_length, real_rows) -> tuple[int, int]:
    """``(correct, tokens)`` of per-token predictions: a token counts when it is a valid step
    (``t < valid_length``) of a real row; it is correct when ``pred`` equals ``label``."""
    vl = _host(valid_length).astype(np.int64).reshape(-1)
    mask = (np.arange(label.shape[1]) < vl[:, None]) & np.asarray(real_rows)[:, None]
    return int((pred == label)[mask].sum()), int(mask.sum())


LM = Task("lm", models=("lstm_lm", "gru_lm"), shift=1, perplexity=True)
CLASSIFY = Task("classify", models=("classifier",), per_token=False, accuracy=True)
TAG = Task("tag", models=("tagger",), tags=True, accuracy=True)
SEQ2SEQ = Task("seq2seq", models=("seq2seq",), pairs=True, perplexity=True)
TASKS = {t.name: t for t in (LM, CLASSIFY, TAG, SEQ2SEQ)}
TASK_NAMES = tuple(TASKS)


def get_task(task, name: str = "task") -> Task:
    """The :class:`Task` of ``task`` (a name or a Task); a ``ValueError`` naming the argument
    ``name`` otherwise."""
    if isinstance(task, Task):
        return task
    found = TASKS.get(task) if isinstance(task, str) else None
    if found is None:
        raise ValueError(f"{name} must be one of {TASK_NAMES}, got {name}={task!r}")
    return found


def task_of_model(model_name: str) -> Task:
    """The task the app's model ``model_name`` trains; ``ValueError`` for an unknown name."""
    for task in TASKS.values():
        if model_name in task.models:
            return task
    known = sorted(m for t in TASKS.values() for m in t.models)
    raise ValueError(f"model {model_name!r} is not one this bucketrnn knows (models: "
                     f"{', '.join(known)})")
