"""bucketrnn: train recurrent networks on variable-length sequences with MXNet, on static shapes.

The data flow, one module per stage: :mod:`~bucketrnn.lengths` -> :mod:`~bucketrnn.buckets`
(plan) -> :mod:`~bucketrnn.sampler` (schedule) -> :mod:`~bucketrnn.batchify` (pad) ->
:mod:`~bucketrnn.loader` -> :mod:`~bucketrnn.graphs` (one graph per bucket) -> models / training.
"""

from bucketrnn.batchify import Batch, PadToBucket
from bucketrnn.buckets import BucketPlan, plan_buckets
from bucketrnn.datasets import FlatSequences, Vocabulary
from bucketrnn.errors import BucketRNNWarning, StateMismatchError
from bucketrnn.graphs import GraphCache
from bucketrnn.lengths import sequence_lengths
from bucketrnn.loader import BucketLoader, evaluation_loader
from bucketrnn.models import LanguageModel, SequenceClassifier, loss_normalizer
from bucketrnn.sampler import BucketBatchSampler

__all__ = sorted(
    [
        "Batch",
        "BucketBatchSampler",
        "BucketLoader",
        "BucketPlan",
        "BucketRNNWarning",
        "FlatSequences",
        "GraphCache",
        "LanguageModel",
        "PadToBucket",
        "SequenceClassifier",
        "StateMismatchError",
        "Vocabulary",
        "evaluation_loader",
        "plan_buckets",
        "loss_normalizer",
        "sequence_lengths",
    ]
)
__version__ = "0.1.0"
