"""Held-out splits and class labels of text-file sequences: what the app does, for one's own loop.

:func:`holdout` is the app's seeded split of ``N`` examples into training, validation and test
indices; :func:`label_sequences` turns sentences in the language-model form of
:func:`~bucketrnn.datasets.encode_lines` into a classification dataset the way the app's
``dataset.label`` does; :func:`class_names` names the classes (what the app saves as
``classes.json``).

Examples
--------
>>> from bucketrnn.datasets import Vocabulary, encode_lines
>>> lines = [["pos", "good", "film"], ["neg", "dull"], ["pos", "fine"], ["neg", "bad", "plot"]]
>>> vocab = Vocabulary.build(lines)
>>> ds, classes = label_sequences(encode_lines(lines, vocab), "first_token", vocab)
>>> class_names("first_token", classes, vocab), ds.labels.tolist()
(['pos', 'neg'], [0, 1, 0, 1])
>>> vocab.decode(ds[1][0])
['dull']
>>> [part.tolist() for part in holdout(10, valid_fraction=0.2, test_fraction=0.1, seed=0)]
[[0, 1, 2, 3, 4, 6, 8], [7, 9], [5]]
"""

from __future__ import annotations

from numbers import Real

import numpy as np

__all__ = ["LABELS", "class_names", "holdout", "label_sequences"]

LABELS = ("first_token", "contains:<token>")


def holdout(n: int, valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0):
    """``(train, valid, test)`` sorted index arrays of ``n`` examples: a seeded permutation,
    ``round(valid_fraction * n)`` examples for validation, ``round(test_fraction * n)`` for
    test, the rest for training (the app's ``dataset.valid_fraction`` / ``test_fraction``)."""
    from bucketrnn.validation import check_int

    check_int("n", n, low=0)
    check_int("seed", seed, low=0)
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 0.5:
            raise ValueError(f"{name} must be a number in [0, 0.5), got {name}={value!r}")
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_valid, n_test = (int(round(f * n)) for f in (valid_fraction, test_fraction))
    parts = perm[:n_valid], perm[n_valid:n_valid + n_test], perm[n_valid + n_test:]
    return tuple(np.sort(p) for p in (parts[2], parts[0], parts[1]))


def _where(ds, i: int) -> str:
    lines = getattr(ds, "line_numbers", None)
    return f"line {int(lines[i])}" if lines is not None else f"sequence {i}"


def label_sequences(ds, label: str, vocab, classes=None):
    """``(dataset, classes)``: ``ds`` with a class label per sequence.

    Parameters
    ----------
    ds : FlatSequences
        Sentences as ``<eos> w1 ... wn <eos>`` (:func:`~bucketrnn.datasets.encode_lines`).
    label : str
        ``"first_token"``: each line's first word is its class and is removed from the input;
        ``"contains:<token>"``: class 1 if the line holds the token (which stays in the
        input), else 0.
    vocab : Vocabulary
    classes : list, optional
        ``first_token``: the label token ids by class index, from the training split (built
        from ``ds``, sorted by id, when None); give the training split's to label held-out
        data the same way. ``contains:``: ``[0, 1]``.

    Raises
    ------
    ValueError
        Another ``label``; the ``contains:`` token not in ``vocab``; a ``first_token`` line
        with no word after its label, or whose label is not among ``classes`` (naming the line).
    """
    from bucketrnn.datasets import FlatSequences

    tokens, offsets, lines = ds.tokens, ds.offsets, getattr(ds, "line_numbers", None)
    if not isinstance(label, str) or not (label == "first_token"
                                          or label.startswith("contains:")):
        raise ValueError(f"label must be 'first_token' or 'contains:<token>', got label={label!r}")
    if label.startswith("contains:"):
        word = label.split(":", 1)[1]
        wid = vocab.stoi.get(word)
        if wid is None:
            raise ValueError(f"label={label!r}: the token {word!r} is not in the vocabulary")
        hits = np.add.reduceat((tokens == wid).astype(np.int64), offsets[:-1]) \
            if tokens.size else np.zeros(len(ds), np.int64)
        hits[np.diff(offsets) == 0] = 0
        labels = (hits > 0).astype(np.int32)
        return FlatSequences(tokens, offsets, labels, line_numbers=lines), classes or [0, 1]
    # first_token: sequences are "<eos> label w1 ... <eos>"; drop the label token. A line that
    # is a label alone would leave an input of no words.
    lengths = np.diff(offsets)
    short = np.flatnonzero(lengths < 4)
    if short.size:
        raise ValueError(f"label='first_token' needs a label and at least one token per line; "
                         f"{_where(ds, int(short[0]))} has none")
    first = tokens[offsets[:-1] + 1]
    if classes is None:
        classes = sorted(set(first.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    unknown = [vocab.itos[c] for c in set(first.tolist()) if c not in index]
    if unknown:
        raise ValueError(f"label='first_token': labels {sorted(unknown)[:5]} do not occur in the "
                         "training split")
    keep = np.ones(tokens.size, dtype=bool)
    keep[offsets[:-1] + 1] = False
    new_offsets = offsets - np.arange(offsets.size)
    new_offsets[0] = 0
    labels = np.array([index[c] for c in first.tolist()], dtype=np.int32)
    return FlatSequences(tokens[keep], new_offsets, labels, line_numbers=lines), classes


def class_names(label: str, classes, vocab) -> list:
    """The name of each class index: the label token (``first_token``), else ``"0"``/``"1"``."""
    if label == "first_token":
        return [vocab.itos[c] for c in classes]
    return [str(c) for c in classes]
