"""Shared test helpers for the data-pipeline stages (sampler, batchify, loader)."""

import pickle

from bucketrnn.datasets import FlatSequences


def make_flat(seqs, labels=None):
    """A FlatSequences dataset holding ``seqs``."""
    return FlatSequences.from_sequences(seqs, labels=labels)


def assert_resumes(make, key=lambda batch: batch):
    """Resumption contract shared by the sampler and the loader.

    ``make()`` builds a fresh iterable with ``state_dict``/``load_state_dict``. Stopping at the
    start, middle or end of an epoch and resuming from the (pickled) state in a fresh object, or
    pickling the object itself, must replay the uninterrupted run, into the next epoch.
    """
    reference = make()
    first_epoch = [key(b) for b in reference]
    expected = first_epoch + [key(b) for b in reference]
    n = len(first_epoch)
    for cut in sorted({0, n // 2, n}):
        run = make()
        it = iter(run)
        got = [key(next(it)) for _ in range(cut)]
        state = pickle.loads(pickle.dumps(run.state_dict()))
        clone = pickle.loads(pickle.dumps(run))
        resumed = make()
        resumed.load_state_dict(state)
        for other in (resumed, clone):
            rest = [key(b) for b in other]  # the rest of the epoch; at its end, the next one
            if cut < n or n == 0:
                rest += [key(b) for b in other]
            assert got + rest == expected, f"resuming at step {cut} of {n}"
