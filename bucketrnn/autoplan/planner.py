"""The plan chosen by measurement: :func:`auto_plan` puts the search above the planner.

The search (:func:`~bucketrnn.autoplan.search.auto_boundaries`) chooses the number of buckets
and their boundaries from a cost model; :func:`~bucketrnn.data.plan.plan_buckets` then plans
those boundaries as it would any fixed ones. The planner and the loader know nothing of costs:
a loader takes the result as ``BucketLoader(dataset, plan=auto_plan(...))``.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real

import numpy as np

from bucketrnn.autoplan.costmodel import CostModel
from bucketrnn.autoplan.search import auto_boundaries
from bucketrnn.data.lengths import is_pair_lengths
from bucketrnn.data.plan import (
    OUTLIER_POLICIES,
    OVERFLOW_POLICIES,
    BucketPlan,
    bucket_batch_sizes,
    length_histogram,
    plan_buckets,
    refuse_outliers,
)
from bucketrnn.validation import check_choice, check_int, check_lengths

__all__ = ["auto_plan"]


def auto_plan(lengths, cost, *, epochs: float = 1.0, max_buckets: int = 64,
              memory_limit: int | None = None, batch_size: int | None = 64,
              max_tokens: int | None = None, batch_size_multiple: int = 1,
              on_overflow: str = "error", max_length: int | None = None,
              outliers: str = "error") -> BucketPlan:
    """The bucket plan that makes ``epochs`` of training fastest by ``cost``, compile included.

    Parameters
    ----------
    lengths : array-like of int
        ``(N,)`` lengths as the loader plans them (:func:`bucketrnn.data.loader.plan_lengths`:
        ``len(seq) - 1`` for a language model). Pairs are not planned this way.
    cost : CostModel
        Step, compile and memory costs of the real graph
        (:func:`bucketrnn.autoplan.costmodel.probe`, or :meth:`CostModel.fit`).
    epochs : float
        Epochs of the planned run: a longer run affords more graphs.
    max_buckets : int
        The largest number of buckets tried.
    memory_limit : int, optional
        Bytes the graphs may hold (needs a cost model with memory figures).
    batch_size, max_tokens, batch_size_multiple, on_overflow, max_length, outliers
        As :func:`~bucketrnn.data.plan.plan_buckets`: rows per batch are the user's (they set the
        optimisation), so the search only chooses boundaries.

    Returns
    -------
    BucketPlan
        ``strategy == "auto"``; ``plan.auto`` (:class:`~bucketrnn.autoplan.search.AutoChoice`)
        says why this number of buckets, with the predicted time of its neighbours.
    """
    if not isinstance(cost, CostModel):
        raise TypeError(f"cost must be a bucketrnn.autoplan.costmodel.CostModel (measure one with "
                        f"bucketrnn.autoplan.costmodel.probe), got {type(cost).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, Real) or not math.isfinite(epochs) \
            or epochs <= 0:
        raise ValueError(f"epochs must be a finite number > 0 (epochs of the planned run), got "
                         f"epochs={epochs!r}")
    check_int("max_buckets", max_buckets, low=1)
    check_int("memory_limit", memory_limit, low=1, allow_none=True)
    check_choice("on_overflow", on_overflow, OVERFLOW_POLICIES)
    check_choice("outliers", outliers, OUTLIER_POLICIES)
    check_int("max_length", max_length, low=1, allow_none=True)
    lengths = check_lengths(lengths)
    if is_pair_lengths(lengths):
        raise ValueError("auto_plan plans one length per example; for (src, tgt) pairs give "
                         "num_buckets as an integer")
    planned = lengths if max_length is None else np.minimum(lengths, max_length)
    if outliers == "error":
        refuse_outliers(planned)
    values, counts = length_histogram(planned)
    sizes = bucket_batch_sizes(values, batch_size, max_tokens, batch_size_multiple)
    bounds, choice = auto_boundaries(values, counts, sizes, cost, epochs=epochs,
                                     max_buckets=max_buckets, memory_limit=memory_limit)
    plan = plan_buckets(lengths, num_buckets=len(bounds), strategy="fixed",
                        boundaries=[int(b) for b in bounds], batch_size=batch_size,
                        max_tokens=max_tokens, batch_size_multiple=batch_size_multiple,
                        on_overflow=on_overflow)
    return dataclasses.replace(plan, strategy="auto", auto=choice)
