"""One compiled graph per bucket: :mod:`~bucketrnn.graphs.cache` (``GraphCache``, parameters
shared by every graph), :mod:`~bucketrnn.graphs.shared` (one memory pool for all bucket
executors, memory figures) and :mod:`~bucketrnn.graphs.precision` (bf16 training)."""

__all__: list = []
