"""Shared test helpers for the data-pipeline stages (sampler, batchify, loader)."""

import numpy as np
import pytest

from bucketrnn.datasets import FlatSequences


def make_flat(seqs, labels=None):
    """A FlatSequences dataset holding ``seqs``."""
    return FlatSequences.from_sequences(seqs, labels=labels)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
