"""Exceptions and warnings raised by bucketrnn."""

from __future__ import annotations

__all__ = [
    "BucketRNNWarning",
    "CheckpointError",
    "DivergedError",
    "GraphTooLargeError",
    "NonFiniteError",
    "StateMismatchError",
]


class BucketRNNWarning(UserWarning):
    """Warning category for everything bucketrnn warns about (tests turn it into errors)."""


class StateMismatchError(ValueError):
    """A checkpoint or sampler state was made for another dataset or configuration."""


class GraphTooLargeError(ValueError):
    """A bucket's graph is estimated not to fit in the memory available for it."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupted, incomplete or of a kind bucketrnn never
    loads (e.g. one holding a pickle); the message names the file and what is wrong."""


class DivergedError(ValueError):
    """A run ended with a loss far beyond a uniform guess's, or a non-finite one
    (:func:`bucketrnn.training.metrics.diverged`): it learned nothing usable. A ``ValueError``,
    so the app ends with status 2, after writing its summary."""


class NonFiniteError(FloatingPointError, ValueError):
    """A non-finite loss, gradient norm or parameter stopped training.

    ``step`` is the global step (1-based, the step being run) and ``what`` names the quantity
    (``"loss"``, ``"gradient norm"`` or a parameter). A ``ValueError`` too, so the app reports
    it as bad input (a learning rate too high, a poisoned checkpoint) rather than a crash.
    """

    def __init__(self, message: str, step: int | None = None, what: str | None = None):
        super().__init__(message)
        self.step, self.what = step, what
