"""What a training run counts and where it writes it: tallies and the ``metrics.jsonl`` log.

A *tally* is a plain dict of sums over steps (so it can live in a checkpoint's JSON):
summed loss and its denominator, correct predictions and rows, real tokens, computed slots,
steps, skipped steps and seconds. The task turns one into the numbers a user reads
(:meth:`bucketrnn.tasks.Task.figures`).

:class:`MetricsLog` owns ``metrics.jsonl``: one strict-JSON object per line (non-finite numbers
are written as ``null``), line-buffered so ``tail -f`` follows a run, ``fsync``-ed at every
checkpoint so the checkpoint can record the file's length, and cut back to that length on resume
(lines written after the checkpoint describe steps that will run again).

Examples
--------
>>> t = tally(loss=6.0, count=3, real=3, slots=4, steps=1)
>>> from bucketrnn.tasks import LM
>>> LM.figures(t)["loss"]
2.0
"""

from __future__ import annotations

import math
import os

import numpy as np

from bucketrnn import tasks
from bucketrnn._aliases import moved_names
from bucketrnn.errors import CheckpointError
from bucketrnn.files import open_regular
from bucketrnn.training.checkpoint import HISTORY_TALLY as TALLY_KEYS
from bucketrnn.training.checkpoint import json_dumps

__all__ = ["DIVERGED_FACTOR", "MetricsLog", "diverged", "tally", "token_accuracy",
           "token_counts"]
__getattr__ = moved_names(__name__, {
    "figures": (lambda: lambda task, t: tasks.get_task(task).figures(t),
                "bucketrnn.tasks.get_task(task).figures(tally)"),
    "perplexity": "bucketrnn.tasks"})

# How many times the loss of a uniform guess a final loss may reach before the run counts as
# diverged (:func:`diverged`).
DIVERGED_FACTOR = 10

def tally(**values) -> dict:
    """Sums over steps, all zero except ``values``: loss, loss denominator (tokens or rows),
    correct/rows, real tokens, slots, steps, skipped steps, seconds."""
    out = {key: 0.0 if key in ("loss", "correct", "seconds") else 0 for key in TALLY_KEYS}
    unknown = set(values) - set(out)
    if unknown:
        raise KeyError(f"not a tally field: {sorted(unknown)}")
    out.update(values)
    return out


def diverged(loss: float, outcomes: int) -> str | None:
    """Why a run whose final mean loss is ``loss`` diverged, or None when it did not.

    A model that guesses uniformly among ``outcomes`` (the tokens of the vocabulary a language
    model predicts, or the classes) has a mean cross-entropy of ``ln(outcomes)``, whatever the
    data; training starts near it. A loss that is not finite, or more than
    :data:`DIVERGED_FACTOR` (10) times that, is no model: the updates blew the parameters up
    (a learning rate far too high). A loss between the two, worse than guessing but of that
    order (an early stop, an overfit classifier), is reported as it is.

    >>> diverged(2.5, 20) is None
    True
    >>> diverged(5.6e30, 20)
    'loss 5.6e+30 is more than 10 times the loss of a uniform guess among 20 (ln 20 = 3.00)'
    """
    if isinstance(outcomes, bool) or not isinstance(outcomes, int) or outcomes < 2:
        raise ValueError(f"outcomes must be an int >= 2, got outcomes={outcomes!r}")
    uniform = math.log(outcomes)
    if not math.isfinite(loss):
        return f"loss {loss} is not finite"
    if loss > DIVERGED_FACTOR * uniform:
        return (f"loss {loss:.3g} is more than {DIVERGED_FACTOR} times the loss of a uniform "
                f"guess among {outcomes} (ln {outcomes} = {uniform:.2f})")
    return None


def _host(x):
    return x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)


def token_counts(logits, label, valid_length, weight=None) -> tuple[int, int]:
    """Correct and counted tokens of a tagging batch: ``(correct, tokens)``.

    A token counts when it is a valid step (``t < valid_length``) of a real row (``weight >
    0``; fill rows and padding never count); it is correct when the argmax of its logits is
    its label. Sum both over batches and divide for the token accuracy of a pass.

    Parameters
    ----------
    logits : NDArray or numpy.ndarray
        ``(B, L, C)`` scores.
    label : NDArray or numpy.ndarray
        ``(B, L)`` class ids.
    valid_length : NDArray or numpy.ndarray
        ``(B,)`` real length of each row.
    weight : NDArray or numpy.ndarray, optional
        ``(B,)``: rows with weight 0 are left out (``batch.weight``).

    Examples
    --------
    >>> logits = np.array([[[0, 1], [1, 0], [1, 0]], [[1, 0], [0, 1], [0, 1]]])
    >>> label = np.array([[1, 1, 0], [0, 1, 1]])
    >>> token_counts(logits, label, valid_length=[2, 3], weight=[1, 0])
    (1, 2)
    """
    pred = logits.argmax(axis=-1) if hasattr(logits, "asnumpy") else np.argmax(logits, -1)
    pred, label = _host(pred).astype(np.int64), _host(label).astype(np.int64)
    if pred.shape != label.shape or pred.ndim != 2:
        raise ValueError(f"logits must be (B, L, C) and label (B, L), got logits of shape "
                         f"{tuple(logits.shape)} and label of shape {label.shape}")
    rows = np.ones(label.shape[0], bool) if weight is None else _host(weight).reshape(-1) > 0
    return tasks.token_counts(pred, label, valid_length, rows)


def token_accuracy(logits, label, valid_length, weight=None) -> float:
    """Share of correct tokens of one batch (see :func:`token_counts`); NaN with no token.

    >>> token_accuracy(np.array([[[0, 1], [1, 0]]]), np.array([[1, 1]]), [2])
    0.5
    """
    correct, tokens = token_counts(logits, label, valid_length, weight)
    return correct / tokens if tokens else math.nan


class MetricsLog:
    """``metrics.jsonl`` of a run: :meth:`open`, :meth:`write`, :meth:`sync`, :meth:`close`.

    Parameters
    ----------
    path : str
        The file (its directory is created on :meth:`open`).
    """

    def __init__(self, path: str):
        self.path = path
        self._file = None

    def check_offset(self, offset: int, where: str) -> None:
        """Refuse a resume ``offset`` that is beyond the end of the file or not at a line end
        (truncating there would pad the file with NUL bytes or keep a torn line);
        ``where`` names the checkpoint in the message."""
        size = os.path.getsize(self.path) if os.path.isfile(self.path) else 0
        last = b"\n"
        if 0 < offset <= size:
            with open_regular(self.path, "rb") as f:
                f.seek(offset - 1)
                last = f.read(1)
        if offset > size or last != b"\n":
            raise CheckpointError(f"checkpoint {where!r} has metrics_offset={offset}, which is "
                                  f"{'beyond the end' if offset > size else 'not a line end'} "
                                  f"of {self.path!r} ({size} bytes): not this run's metrics file")

    def open(self, offset: int | None = None) -> None:
        """Start a new file (``offset=None``) or continue one cut back to ``offset`` bytes."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if offset is None:
            self._file = open_regular(self.path, "w", encoding="utf-8", buffering=1)
            return
        self.check_offset(offset, self.path)
        self._file = open_regular(self.path, "a+", encoding="utf-8", buffering=1)
        self._file.truncate(offset)
        self._file.seek(offset)

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def write(self, record: dict) -> None:
        """Append one record as a line of strict JSON (nothing when the log is not open)."""
        if self._file is not None:
            self._file.write(json_dumps(record) + "\n")

    def sync(self) -> int:
        """Flush and ``fsync`` the file; its length in bytes (0 when not open)."""
        if self._file is None:
            return 0
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
