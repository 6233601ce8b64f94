"""Shared test helpers for the data-pipeline stages (sampler, batchify, loader)."""

from bucketrnn.datasets import FlatSequences


def make_flat(seqs, labels=None):
    """A FlatSequences dataset holding ``seqs``."""
    return FlatSequences.from_sequences(seqs, labels=labels)
