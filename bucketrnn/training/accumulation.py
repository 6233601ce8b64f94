"""Gradient accumulation: the summed gradients of the batches of one update.

A bucketed epoch gives each batch one length range. Updating once per batch makes every update
see one range only; summing the gradients of several consecutive batches (which come from
random buckets) makes each update mix them, as a padded batch of all those rows would.
:class:`GradientSum` holds the sum: :class:`~bucketrnn.training.loop.TrainLoop` adds each
batch's gradients of its *summed* loss, and at the group's last batch writes the sum divided by
the group's loss denominator (real tokens, or rows) into the parameters' gradients, where the
optimizer reads them.

The sum lives in buffers of its own, not in the parameters' gradients with ``grad_req="add"``:
under ``"add"`` MXNet 1.9.1's ``CachedOp`` accumulates some graphs' gradients wrongly (a bias
entering a graph once for two products: :mod:`bucketrnn.models.unroll`), and the gradients
would also have to be zeroed by hand after every update.

Examples
--------
>>> import mxnet as mx
>>> grads = [mx.nd.array([1.0, 2.0])]
>>> group = GradientSum()
>>> group.add(grads, count=2)
>>> grads[0][:] = mx.nd.array([3.0, 4.0])   # the next batch's backward writes its own
>>> group.add(grads, count=2)
>>> group.write_mean(grads), grads[0].asnumpy().tolist()
(2, [1.0, 1.5])
>>> group.batches, group.count
(0, 0)
"""

from __future__ import annotations

import mxnet as mx

__all__ = ["GradientSum"]


class GradientSum:
    """The gradients of an update group's batches, summed, with their loss denominators.

    One buffer per gradient array, made at the first :meth:`add` and reused by every later
    group (a copy of the model's gradients: the memory of the parameters once more).

    Attributes
    ----------
    batches : int
        Batches added since the group began.
    count : int
        Their loss denominators, summed (what one batch of all their rows would divide by).
    """

    def __init__(self):
        self._sums = None
        self.batches = 0
        self.count = 0

    def add(self, grads, count: int) -> None:
        """Add one batch's gradients ``grads`` (NDArrays, of the summed, undivided loss) and
        its loss denominator ``count``."""
        if self._sums is None:
            self._sums = [mx.nd.zeros(g.shape, ctx=g.context, dtype=g.dtype) for g in grads]
        if len(grads) != len(self._sums):
            raise ValueError(f"got {len(grads)} gradient arrays, the group holds "
                             f"{len(self._sums)}: one GradientSum serves one set of parameters")
        for total, grad in zip(self._sums, grads):
            if self.batches:
                total += grad
            else:
                grad.copyto(total)  # the group's first batch: no zeroing pass
        self.batches += 1
        self.count += int(count)

    def write_mean(self, grads, workers: int = 1) -> int:
        """Write the sum divided by ``max(count, 1)`` and by ``workers`` (``dist_sync`` then
        sums the workers' gradients: the update is their mean) into ``grads``; start a new
        group. Returns the batches the written gradients hold (0: nothing was added, and
        ``grads`` are left as they are)."""
        batches = self.batches
        if batches:
            for total, grad in zip(self._sums, grads):
                grad[:] = total / max(self.count, 1) / workers
        self.clear()
        return batches

    def clear(self) -> None:
        """Drop the group's sum (a resumed run starts a group afresh)."""
        self.batches = 0
        self.count = 0
