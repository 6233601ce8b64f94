"""Batch assembly: pad each batch to its bucket length, never to the batch maximum.

The product of this stage is a :class:`Batch`: a few arrays with static shapes
``(batch_size_of_bucket, bucket_length, ...)`` plus the bookkeeping a training step needs
(which rows are real, how long each row is, which dataset examples they are).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

BucketKey = "int | tuple[int, int]"


@dataclass
class Batch:
    """One padded batch of a bucket.

    Attributes
    ----------
    bucket_key : int or tuple of int
        The padded length of the bucket (``(src_len, tgt_len)`` for sequence pairs). All batches
        of a bucket share it, and :class:`~bucketrnn.GraphCache` keys its graphs on it.
    data : mxnet.nd.NDArray
        ``int32`` token ids shaped ``(B, L)`` or ``float32`` features shaped ``(B, L, F)``.
    valid_length : mxnet.nd.NDArray
        ``int32`` ``(B,)``: real length of each row (fill rows repeat a real row's length).
    label : mxnet.nd.NDArray or None
        Class labels ``(B,)``, next-token targets ``(B, L)`` for language modelling (padded
        positions hold 0 and are masked by ``valid_length``), or padded targets ``(B, Lt)``
        for sequence pairs.
    weight : mxnet.nd.NDArray
        ``float32`` ``(B,)``: 1 for a real row, 0 for a fill row added to keep the shape static.
    indices : numpy.ndarray
        ``int64`` ``(B,)``: dataset index of each row, -1 for fill rows.
    label_length : mxnet.nd.NDArray or None
        ``int32`` ``(B,)`` target lengths, for sequence pairs only.
    """

    bucket_key: Any
    data: Any
    valid_length: Any
    label: Any
    weight: Any
    indices: np.ndarray
    label_length: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.data.shape[0])

    @property
    def num_real(self) -> int:
        """Number of real (non-fill) rows."""
        return int((np.asarray(self.indices) >= 0).sum())

    def as_in_context(self, ctx) -> "Batch":
        """Copy of the batch with every array on ``ctx`` (an ``mx.Context``)."""

        def move(x):
            return None if x is None else x.as_in_context(ctx)

        return replace(
            self,
            data=move(self.data),
            valid_length=move(self.valid_length),
            label=move(self.label),
            weight=move(self.weight),
            label_length=move(self.label_length),
        )
