"""Exceptions and warnings raised by bucketrnn."""


class BucketRNNWarning(UserWarning):
    """Warning category for everything bucketrnn warns about (tests turn it into errors)."""


class StateMismatchError(ValueError):
    """A checkpoint or sampler state was made for another dataset or configuration."""


class GraphTooLargeError(ValueError):
    """A bucket's graph is estimated not to fit in the memory available for it."""
