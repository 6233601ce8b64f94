"""The checks every stage shares, each written once: integers, choices, lengths, differences.

Messages name the argument and the value (``"num_shards must be >= 1, got num_shards=0"``), so
a user can fix the call from the message alone. ``bool`` is never an integer here:
``num_buckets=True`` is a mistake, not 1.

Examples
--------
>>> check_int("batch_size", 64, low=1)
64
>>> check_int("batch_size", 0, low=1)
Traceback (most recent call last):
...
ValueError: batch_size must be an integer >= 1, got batch_size=0
>>> differences({"lr": 0.1, "seed": 1}, {"lr": 0.2, "seed": 1}, "checkpoint", "now")
['lr: checkpoint 0.1, now 0.2']
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = ["EMPTY_DATASET", "SHOWN_CHARACTERS", "check_choice", "check_int", "check_lengths",
           "differences", "empty_sequence", "is_int", "quote_token", "quote_tokens"]

# Characters of one user token a message shows: a 10**6-character word is not echoed whole.
SHOWN_CHARACTERS = 40

EMPTY_DATASET = ("the dataset is empty: got 0 examples; bucketing needs at least one "
                 "sequence")


def is_int(value) -> bool:
    """A true integer (Python or numpy), not a ``bool``."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_int(name: str, value, low: int | None = None, high: int | None = None,
              allow_none: bool = False):
    """``value`` as an ``int`` in ``[low, high)`` (either bound optional), else ``TypeError``
    (not an integer) or ``ValueError`` (out of range) naming ``name``."""
    if value is None and allow_none:
        return None
    if not is_int(value):
        none = "None or " if allow_none else ""
        raise TypeError(f"{name} must be {none}an int, got {name}={value!r}")
    if (low is not None and value < low) or (high is not None and value >= high):
        if high is None:
            bound = f">= {low}"
        elif low is None:
            bound = f"< {high}"
        else:
            bound = f"in [{low}, {high})"
        raise ValueError(f"{name} must be an integer {bound}, got {name}={value!r}")
    return int(value)


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got "
                         f"{name}={value!r}")
    return value


def check_lengths(lengths, what: str = "lengths") -> np.ndarray:
    """The project's one rule for sequence lengths: ``(N,)`` or ``(N, 2)`` (source, target)
    integers, at least one example, none empty. Returns them as ``int64``.

    The messages name the first empty example by its index and say how many there are.
    """
    arr = np.asarray(lengths)
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integers, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[1] != 2):
        raise ValueError(f"{what} must have shape (N,) or (N, 2) for (source, target) pairs, "
                         f"got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(EMPTY_DATASET)
    bad = np.flatnonzero((arr < 1).reshape(arr.shape[0], -1).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(empty_sequence(i, arr[i].tolist(), bad.size))
    return arr.astype(np.int64)


def quote_token(token) -> str:
    """``repr(token)`` for a message, cut after :data:`SHOWN_CHARACTERS` characters with its
    length said: ``'zzzz...zz'... (1,000,000 characters)``."""
    token = str(token)
    if len(token) <= SHOWN_CHARACTERS:
        return repr(token)
    return f"{token[:SHOWN_CHARACTERS]!r}... ({len(token):,} characters)"


def quote_tokens(tokens, most: int) -> str:
    """The first ``most`` of ``tokens``, each by :func:`quote_token`, comma-separated, with
    ``...`` when there are more: the one way a message lists the user's words."""
    tokens = list(tokens)
    shown = ", ".join(quote_token(t) for t in tokens[:most])
    return shown + (" ..." if len(tokens) > most else "")


def empty_sequence(index: int, length=0, count: int | None = None) -> str:
    """The message for an empty example (one wording wherever it is found)."""
    more = f"; {count} example(s) are empty" if count and count > 1 else ""
    return (f"example {index} is an empty sequence (length {length}){more}: remove empty "
            "sequences from the dataset (every example needs at least one token)")


def differences(saved: dict, current: dict, saved_name: str, current_name: str) -> list:
    """``["key: <saved_name> v1, <current_name> v2", ...]`` for every key whose value differs
    (a missing key reads ``<absent>``), sorted by key."""
    return [f"{k}: {saved_name} {saved.get(k, '<absent>')!r}, {current_name} "
            f"{current.get(k, '<absent>')!r}"
            for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
