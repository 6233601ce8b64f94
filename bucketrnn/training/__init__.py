"""Training on the per-bucket graphs: :mod:`~bucketrnn.training.loop` (``TrainLoop``),
:mod:`~bucketrnn.training.evaluation`, :mod:`~bucketrnn.training.metrics`,
:mod:`~bucketrnn.training.checkpoint` and :mod:`~bucketrnn.training.optim_state` (resume),
:mod:`~bucketrnn.training.rundir` (the run directory and its lock) and
:mod:`~bucketrnn.training.flops`."""

__all__: list = []
