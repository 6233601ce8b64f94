"""Shared test helpers for the data-pipeline stages (sampler, batchify, loader)."""

import numpy as np
import pytest


class _FlatStandIn:
    """Private stand-in for bucketrnn.datasets.FlatSequences (tokens + offsets) until it lands."""

    def __init__(self, seqs):
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        self.tokens = np.concatenate([np.asarray(s) for s in seqs])

    def __len__(self):
        return self.offsets.size - 1

    def __getitem__(self, i):
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self):
        return np.diff(self.offsets)


def make_flat(seqs):
    """A FlatSequences dataset holding ``seqs``."""
    return _FlatStandIn(seqs)


def play_epoch(samplers):
    """One epoch from every rank's sampler: list (per rank) of lists of slot lists."""
    return [list(s) for s in samplers]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
