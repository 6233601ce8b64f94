"""bucketrnn: train recurrent networks on variable-length sequences with MXNet, on static shapes.

The data flow, one module per stage: :mod:`~bucketrnn.lengths` -> :mod:`~bucketrnn.buckets`
(plan) -> :mod:`~bucketrnn.sampler` (schedule) -> :mod:`~bucketrnn.batchify` (pad) ->
:mod:`~bucketrnn.loader` -> :mod:`~bucketrnn.graphs` (one graph per bucket) -> models / training.
"""

# First: bucketrnn.cores sets MXNet's environment (threads, quiet graph binding) before any
# module below imports MXNet, which reads it once.
from bucketrnn import cores  # noqa: F401  isort: skip
from bucketrnn.batchify import Batch, PadToBucket
from bucketrnn.buckets import BucketPlan, find_outliers, plan_buckets
from bucketrnn.costmodel import CostModel, probe
from bucketrnn.datasets import FlatSequences, Vocabulary
from bucketrnn.errors import (
    BucketRNNWarning,
    CheckpointError,
    GraphTooLargeError,
    NonFiniteError,
    StateMismatchError,
)
from bucketrnn.evaluation import evaluate
from bucketrnn.graphs import GraphCache
from bucketrnn.lengths import sequence_lengths
from bucketrnn.loader import BucketLoader, evaluation_loader
from bucketrnn.models import LanguageModel, SequenceClassifier, SequenceTagger, loss_normalizer
from bucketrnn.models.seq2seq import Seq2Seq
from bucketrnn.rundir import RunLock, RunLockedError
from bucketrnn.sampler import BucketBatchSampler

__all__ = [
    "Batch",
    "BucketBatchSampler",
    "BucketLoader",
    "BucketPlan",
    "BucketRNNWarning",
    "CheckpointError",
    "CostModel",
    "FlatSequences",
    "GraphCache",
    "GraphTooLargeError",
    "LanguageModel",
    "NonFiniteError",
    "PadToBucket",
    "RunLock",
    "RunLockedError",
    "Seq2Seq",
    "SequenceClassifier",
    "SequenceTagger",
    "StateMismatchError",
    "Vocabulary",
    "evaluate",
    "evaluation_loader",
    "find_outliers",
    "load_run",
    "loss_normalizer",
    "plan_buckets",
    "probe",
    "sequence_lengths",
]
__version__ = "0.1.0"


def __getattr__(name):
    # load_run reads the app's run directories (bucketrnn.app.trained): imported on first use,
    # so `import bucketrnn` stays free of the app's Hydra dependencies.
    if name == "load_run":
        from bucketrnn.app.trained import load_run

        return load_run
    raise AttributeError(f"module 'bucketrnn' has no attribute {name!r}")
