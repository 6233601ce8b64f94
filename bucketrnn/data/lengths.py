"""The length of every example, as one integer numpy array.

Every later stage (plan, sampler, batchify) works from this array alone, so it is computed once,
in O(N), with no Python object per token. Supported dataset forms:

- a list of token-id sequences (lists, tuples or 1-D numpy arrays);
- a 2-D numeric numpy array (every row has the same length);
- :class:`~bucketrnn.data.datasets.FlatSequences` (one flat token array plus offsets; the lengths
are
  ``np.diff(offsets)``, no Python object per sequence), or any object with a ``lengths()`` method;
- float feature sequences shaped ``(T, F)`` (the length is ``T``);
- ``(data, label)`` tuples and gluon ``Dataset`` objects returning them (the length is that of
  ``data``; a scalar ``label`` is a class label);
- ``(src, tgt)`` pairs, where ``tgt`` is itself a sequence: the result has shape ``(N, 2)`` and the
  bucket key is the pair of lengths.
"""

from __future__ import annotations

import numbers

import numpy as np

from bucketrnn.validation import check_lengths

__all__ = ["is_pair_lengths", "is_sequence", "sequence_lengths"]


def _item_length(item, index: int) -> tuple[int, int | None]:
    """Length of one example, and the target length if it is a (src, tgt) pair."""
    if isinstance(item, tuple) and len(item) == 2 and is_sequence(item[0]):
        data, label = item
        src = _sequence_length(data, index)
        if is_sequence(label):
            return src, _sequence_length(label, index)
        return src, None
    return _sequence_length(item, index), None


def is_sequence(x) -> bool:
    """True for a sequence example or target (not a string, scalar or one-element NDArray)."""
    if isinstance(x, (str, bytes, numbers.Number)):
        return False
    if isinstance(x, np.ndarray):
        return x.ndim >= 1
    if hasattr(x, "shape") and hasattr(x, "asnumpy"):  # an mx.nd.NDArray
        return len(x.shape) >= 1 and not (len(x.shape) == 1 and x.shape[0] == 1)
    return hasattr(x, "__len__")


def _sequence_length(seq, index: int) -> int:
    if isinstance(seq, (str, bytes)):
        raise TypeError(
            f"dataset[{index}] is a string ({seq[:20]!r}); tokenize and map it to ids first "
            "(bucketrnn.data.datasets.Vocabulary does this)"
        )
    shape = getattr(seq, "shape", None)
    if shape is not None:
        if len(shape) == 0:
            raise TypeError(f"dataset[{index}] is a scalar, not a sequence: {seq!r}")
        return int(shape[0])
    try:
        return len(seq)
    except TypeError as e:
        raise TypeError(
            f"dataset[{index}] has no length: got {type(seq).__name__} {seq!r}"
        ) from e


def sequence_lengths(dataset) -> np.ndarray:
    """Length of every example of ``dataset``.

    Parameters
    ----------
    dataset : sequence of examples, numpy array, FlatSequences or gluon Dataset
        See the module docstring for the accepted forms.

    Returns
    -------
    numpy.ndarray
        ``int64`` array shaped ``(N,)``, or ``(N, 2)`` (source, target lengths) for pairs.

    Raises
    ------
    ValueError
        If the dataset is empty or an example has length 0 (the message names its index), or a
        ``lengths()`` method returns another number of lengths than ``len(dataset)`` or another
        shape than ``(N,)`` / ``(N, 2)``.
    TypeError
        If an example is not a sequence, or a ``lengths()`` method returns non-integers.

    Examples
    --------
    >>> sequence_lengths([[1, 2, 3], [4]]).tolist()
    [3, 1]
    >>> sequence_lengths([([1, 2], [3, 4, 5])]).tolist()
    [[2, 3]]
    """
    lengths_fn = getattr(dataset, "lengths", None)
    if callable(lengths_fn):
        lengths = _checked_method_lengths(dataset, lengths_fn())
    elif isinstance(dataset, np.ndarray) and dataset.dtype != object:
        if dataset.ndim < 2:
            raise ValueError(
                "a numeric numpy dataset must be 2-D (N, T) or 3-D (N, T, F), got shape "
                f"{dataset.shape}"
            )
        lengths = np.full(dataset.shape[0], dataset.shape[1], dtype=np.int64)
    else:
        n = len(dataset)
        src = np.empty(n, dtype=np.int64)
        tgt = None
        for i in range(n):
            s, t = _item_length(dataset[i], i)
            src[i] = s
            if t is not None:
                if tgt is None:
                    if i > 0:
                        raise TypeError(
                            f"dataset[{i}] is a (src, tgt) pair but earlier examples are not; "
                            "mix of example forms"
                        )
                    tgt = np.empty(n, dtype=np.int64)
                tgt[i] = t
            elif tgt is not None:
                raise TypeError(
                    f"dataset[{i}] is not a (src, tgt) pair but earlier examples are; "
                    "mix of example forms"
                )
        lengths = src if tgt is None else np.stack([src, tgt], axis=1)
    return check_lengths(lengths, "dataset lengths")


def _checked_method_lengths(dataset, raw) -> np.ndarray:
    """What a dataset's own ``lengths()`` returned, refused unless it is one int per example."""
    name = type(dataset).__name__
    lengths = np.asarray(raw)
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        # float lengths would be cut silently (2.7 -> 2), NaN would become garbage
        raise TypeError(f"{name}.lengths() must return integers, got dtype {lengths.dtype}; "
                        "return the number of steps of each example as an int array")
    if lengths.ndim != 1 and not (lengths.ndim == 2 and lengths.shape[1] == 2):
        raise ValueError(f"{name}.lengths() must return shape (N,) or (N, 2) for (src, tgt) "
                         f"pairs, got shape {lengths.shape}")
    if hasattr(dataset, "__len__") and lengths.shape[0] != len(dataset):
        raise ValueError(f"{name}.lengths() returned {lengths.shape[0]} lengths for "
                         f"{len(dataset)} examples; it must return one per example")
    return lengths.astype(np.int64)


def is_pair_lengths(lengths: np.ndarray) -> bool:
    """True when ``lengths`` holds (source, target) length pairs."""
    return lengths.ndim == 2 and lengths.shape[1] == 2
