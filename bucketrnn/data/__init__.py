"""From a dataset to batches of static shape: one module per stage of the data flow.

:mod:`~bucketrnn.data.lengths` (a length per example) -> :mod:`~bucketrnn.data.plan` (bucket
boundaries and batch sizes, pure numpy) -> :mod:`~bucketrnn.data.sampler` (the schedule of an
epoch, from ``(seed, epoch)``) -> :mod:`~bucketrnn.data.batchify` (pad to the bucket's shape) ->
:mod:`~bucketrnn.data.loader` (``BucketLoader``). :mod:`~bucketrnn.data.datasets` holds the
datasets and vocabularies, :mod:`~bucketrnn.data.pairs` sequence pairs.
"""

__all__: list = []
