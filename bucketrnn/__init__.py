"""bucketrnn: train recurrent networks on variable-length sequences with MXNet, on static shapes."""

from bucketrnn.batchify import Batch
from bucketrnn.errors import BucketRNNWarning, StateMismatchError

__all__ = sorted(["Batch", "BucketRNNWarning", "StateMismatchError"])
__version__ = "0.1.0"
