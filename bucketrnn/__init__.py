"""bucketrnn: train recurrent networks on variable-length sequences with MXNet, on static shapes.

The house, each sub-package above those before it: shared modules (:mod:`~bucketrnn.compat`,
:mod:`~bucketrnn.cores`, :mod:`~bucketrnn.validation`, :mod:`~bucketrnn.errors`) ->
:mod:`~bucketrnn.data` (lengths -> plan -> sampler -> batchify -> loader) ->
:mod:`~bucketrnn.graphs` (one graph per bucket) -> :mod:`~bucketrnn.models` ->
:mod:`~bucketrnn.training` -> :mod:`~bucketrnn.autoplan` -> :mod:`~bucketrnn.inference`;
:mod:`~bucketrnn.app` (the Hydra app and commands) is built on the library, never imported by it.
"""

# First: bucketrnn.cores sets MXNet's environment (threads, quiet graph binding) before any
# module below imports MXNet, which reads it once.
from bucketrnn import cores  # noqa: F401  isort: skip
from bucketrnn import _aliases  # isort: skip
from bucketrnn.autoplan.costmodel import CostModel, probe
from bucketrnn.data.batchify import Batch, PadToBucket
from bucketrnn.data.datasets import FlatSequences, Vocabulary
from bucketrnn.data.lengths import sequence_lengths
from bucketrnn.data.loader import BucketLoader, evaluation_loader
from bucketrnn.data.plan import BucketPlan, find_outliers, plan_buckets
from bucketrnn.data.sampler import BucketBatchSampler
from bucketrnn.errors import (
    BucketRNNWarning,
    CheckpointError,
    DivergedError,
    GraphTooLargeError,
    NonFiniteError,
    StateMismatchError,
)
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import LanguageModel, SequenceClassifier, SequenceTagger, loss_normalizer
from bucketrnn.models.seq2seq import Seq2Seq
from bucketrnn.training.evaluation import evaluate
from bucketrnn.training.rundir import RunLock, RunLockedError

__all__ = [
    "Batch",
    "BucketBatchSampler",
    "BucketLoader",
    "BucketPlan",
    "BucketRNNWarning",
    "CheckpointError",
    "CostModel",
    "DivergedError",
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

_aliases.install()  # the flat layout's module paths (bucketrnn.loader, ...) still import


def __getattr__(name):
    # load_run reads the app's run directories (bucketrnn.app.trained): imported on first use,
    # so `import bucketrnn` stays free of the app's Hydra dependencies.
    if name == "load_run":
        from bucketrnn.app.trained import load_run

        return load_run
    raise AttributeError(f"module 'bucketrnn' has no attribute {name!r}")
