"""One compiled graph per bucket: :mod:`~bucketrnn.graphs.cache` (``GraphCache``, parameters
shared by every graph), :mod:`~bucketrnn.graphs.shared` (one memory pool for all bucket
executors, memory figures) and :mod:`~bucketrnn.graphs.precision` (bf16 training).

The package re-exports what the module ``bucketrnn.graphs`` held before it became this package,
so ``from bucketrnn.graphs import GraphCache`` keeps working."""

from bucketrnn.graphs.cache import MEMORY, NODE_BYTES, GraphCache, share_parameters

__all__ = ["GraphCache", "MEMORY", "NODE_BYTES", "share_parameters"]
