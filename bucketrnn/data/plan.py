"""Bucket plans: boundaries and per-bucket batch sizes, as pure functions of the lengths.

Interval convention. With boundaries ``b_0 < b_1 < ... < b_{K-1}`` (and ``b_{-1} = 0``),
bucket ``k`` holds every example whose length ``l`` satisfies ``b_{k-1} < l <= b_k``, and its
batches are padded to exactly ``b_k`` time steps: the bucket key. ``optimal`` and
``quantile`` boundaries are lengths that occur in the data (``exp`` edges need not be), and
except with ``fixed`` boundaries the largest bucket is exactly as long as the longest example
(or ``max_length``, when given).

For ``(src, tgt)`` pairs the boundaries apply to the source length. With ``optimal`` each
source bucket is further split on target lengths (:mod:`bucketrnn.data.pairplan`: a pair goes to
the source bucket ``b_{k-1} < src <= b_k``, then to the smallest of that bucket's target lengths
``T >= tgt``; its key is ``(b_k, T)``), and ``num_buckets`` bounds the number of keys, one graph
each. ``quantile``, ``exp`` and ``fixed`` plan the source side only: one key per boundary,
``(b_k, longest target in the bucket)``.

Cost model. A bucket of ``n_k`` examples, padded length ``L_k`` and batch size ``B_k`` computes
``ceil(n_k / B_k) * B_k * L_k`` slots: the time padding plus the masked rows that fill its last
batch. ``optimal`` minimises the sum of that over buckets exactly (for pairs ``L_k = S_k + T_k``,
the steps of both sides, over source boundaries and per-source-bucket target boundaries).

Outliers. One pathological example (a 10**6-token line among sentences) would give its bucket a
10**6-step graph. :func:`find_outliers` judges the lengths before any boundary is chosen: set
aside the ``max(5, ceil(N / 1000))`` longest examples (at most half of them) and call the longest
of the rest the *reference*, a p99.9 that a few bad examples cannot move; an example is an
outlier when its length is above ``max(8 * reference, 1024)``. The factor is chosen far above
what a natural long tail reaches past its p99.9 (a corpus's longest sentence or line, a
heavy-tailed synthetic distribution), so only a broken example trips it (the figures for the
built-in data: ``docs/concepts.md``, *Outliers*). :func:`plan_buckets` raises on
outliers unless told otherwise (``max_length`` + ``on_overflow``, fixed boundaries, or
``outliers="allow"``).

Size: about 900 lines: the boundary strategies (each a pure function documented with the
interval convention), the outlier rule, :class:`BucketPlan` with its statistics, and
:func:`plan_buckets`' argument checks. The strategies are the part to move into a module of
their own when this one grows again.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from bucketrnn.compat import MAX_ARRAY_ELEMENTS
from bucketrnn.data.lengths import is_pair_lengths
from bucketrnn.data.pairplan import pair_keys
from bucketrnn.validation import (
    EMPTY_DATASET,
    check_choice,
    check_int,
    check_lengths,
    empty_sequence,
)

__all__ = [
    "BucketPlan",
    "OUTLIER_FACTOR",
    "OUTLIER_FLOOR",
    "OUTLIER_POLICIES",
    "OVERFLOW_POLICIES",
    "Outliers",
    "STRATEGIES",
    "bucket_batch_sizes",
    "exp_boundaries",
    "find_outliers",
    "key_length",
    "length_histogram",
    "longest_key",
    "optimal_boundaries",
    "pad_to_max_waste",
    "plan_buckets",
    "quantile_boundaries",
    "refuse_outliers",
    "with_longest",
]

STRATEGIES = ("optimal", "quantile", "exp", "fixed")
OVERFLOW_POLICIES = ("error", "truncate", "drop")
OUTLIER_POLICIES = ("error", "allow")
OUTLIER_FACTOR = 8.0
OUTLIER_FLOOR = 1024
# num_buckets="auto" is planned a layer above plan_buckets, which then takes fixed boundaries.
AUTO_MOVED = ("{name} takes num_buckets as an integer; a number of buckets chosen by measurement "
              "comes from bucketrnn.autoplan.auto_plan(lengths, cost, ...): pass its plan as "
              "BucketLoader(plan=...), or its boundaries with strategy='fixed'")
AUTO_ARGUMENTS = ("cost", "epochs", "max_buckets", "memory_limit")


def refuse_auto_arguments(name: str, given: dict) -> None:
    """``given``: keyword arguments ``name`` does not take. The automatic plan's (``cost``,
    ``epochs``, ...) get the way to it; others the ``TypeError`` Python would raise."""
    for key in sorted(given):
        if key in AUTO_ARGUMENTS:
            raise ValueError(f"{name} takes no {key}= (got {key}={given[key]!r}): "
                             + AUTO_MOVED.format(name=name))
        raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
# One batch's token array is (rows, bucket length), and the model's arrays of that batch are at
# least as large, so a bucket whose batch exceeds MXNet's array limit can never run.
MAX_BATCH_ELEMENTS = MAX_ARRAY_ELEMENTS


def key_length(key) -> int:
    """Time steps of a bucket key: the length, or source + target steps of a pair key."""
    return int(sum(key)) if isinstance(key, tuple) else int(key)


def _as_lengths(lengths, name: str = "lengths") -> np.ndarray:
    """``lengths`` as a 1-D ``int64`` array of values >= 1, or a ``TypeError``/``ValueError``."""
    arr = np.asarray(lengths)
    if arr.size == 0:
        raise ValueError(EMPTY_DATASET if name == "lengths" else f"{name} is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64).ravel()
    if (arr < 1).any():
        bad = np.flatnonzero(arr < 1)
        i = int(bad[0])
        if name == "lengths":
            raise ValueError(empty_sequence(i, int(arr[i]), bad.size))
        raise ValueError(f"{name} must be >= 1, got {int(arr[i])} at index {i}")
    return arr


# ---------------------------------------------------------------------------------------------
# histogram and batch sizes
# ---------------------------------------------------------------------------------------------
def length_histogram(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct lengths and how many examples have each; O(N) for bounded lengths."""
    lengths = _as_lengths(lengths)
    top = int(lengths.max())
    if top <= 50_000_000:
        counts = np.bincount(lengths, minlength=top + 1)
        values = np.flatnonzero(counts)
        return values.astype(np.int64), counts[values].astype(np.int64)
    values, counts = np.unique(lengths, return_counts=True)
    return values.astype(np.int64), counts.astype(np.int64)


def bucket_batch_sizes(
    bucket_lengths,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    batch_size_multiple: int = 1,
) -> np.ndarray:
    """Batch size of a bucket padded to each of ``bucket_lengths``.

    A fixed ``batch_size``; or a token budget ``max_tokens`` (``B = max_tokens // L``), capped by
    ``batch_size`` when both are given; rounded down to a multiple of ``batch_size_multiple``.

    >>> bucket_batch_sizes([10, 20, 50], max_tokens=200, batch_size_multiple=4).tolist()
    [20, 8, 4]
    """
    _validate_sizes(batch_size, max_tokens, batch_size_multiple)
    lengths = _as_lengths(bucket_lengths, "bucket_lengths")
    if max_tokens is None:
        sizes = np.full(lengths.shape, batch_size, dtype=np.int64)
    else:
        sizes = max_tokens // lengths
        if batch_size is not None:
            sizes = np.minimum(sizes, batch_size)
    if batch_size_multiple > 1:
        sizes = (sizes // batch_size_multiple) * batch_size_multiple
    if (sizes < 1).any():
        i = int(np.flatnonzero(sizes < 1)[0])
        raise ValueError(
            f"max_tokens={max_tokens} leaves no room for a bucket of length {int(lengths[i])} "
            f"(batch_size_multiple={batch_size_multiple}); raise max_tokens to at least "
            f"{int(lengths[i]) * batch_size_multiple}"
        )
    return sizes


def _validate_sizes(batch_size, max_tokens, batch_size_multiple) -> None:
    if batch_size is None and max_tokens is None:
        raise ValueError("give batch_size or max_tokens, got neither")
    for name, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
        if value is not None:
            check_int(name, value, low=1)
    check_int("batch_size_multiple", batch_size_multiple, low=1)


def _check_ratio(ratio) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, Real) or not math.isfinite(ratio) \
            or ratio <= 1:
        raise ValueError(
            f"ratio must be a finite number > 1 (the growth of each exp bucket's width over the "
            f"previous one), got ratio={ratio!r}; use e.g. ratio=1.2, or strategy='quantile' "
            "for equal-count buckets"
        )


# ---------------------------------------------------------------------------------------------
# boundary strategies (pure functions of the histogram)
# ---------------------------------------------------------------------------------------------
def _check_num_buckets(num_buckets, values, what: str = "lengths") -> int:
    """The one ``num_buckets`` rule of every planned strategy: an integer >= 1 and no more than
    the distinct lengths (a bucket per distinct length is the finest split there is; more would
    be empty buckets, or silently fewer than asked)."""
    num_buckets = check_int("num_buckets", num_buckets, low=1)
    distinct = int(np.asarray(values).size)
    if num_buckets > distinct:
        raise ValueError(
            f"num_buckets={num_buckets} is more than the {distinct} distinct {what} in the "
            f"data; use num_buckets <= {distinct}"
        )
    return num_buckets


def optimal_boundaries(values, counts, num_buckets: int, sizes) -> np.ndarray:
    """Boundaries minimising computed slots exactly, with at most ``num_buckets`` buckets.

    Dynamic programming over the sorted histogram: ``dp_k[j]`` is the least cost of covering the
    distinct lengths ``0..j`` with at most ``k`` buckets. For each ``(k, j)`` the start ``i`` of the
    last bucket is scanned downwards from ``j``, vectorised over all ``j`` at once, and the scan of
    a ``j`` stops as soon as a lower bound proves no smaller ``i`` can win: any split at ``i``
    costs at least ``tokens(0..i-1) + n(i..j) * L_j``, which only grows as ``i`` decreases. The
    pruning is exact (no monotone-argmin assumption, which the ceil in the fill cost breaks), and
    on real length distributions each scan stops after a few bucket widths.

    Parameters
    ----------
    values, counts : numpy.ndarray
        Sorted distinct lengths and their counts (:func:`length_histogram`).
    num_buckets : int
        Maximum number of buckets (fewer are used when more would add fill rows), at most
        ``len(values)``: more than the distinct lengths is a ``ValueError``, the rule
        :func:`plan_buckets` applies.
    sizes : numpy.ndarray
        Batch size of a bucket whose key would be ``values[j]``.

    Returns
    -------
    numpy.ndarray
        Sorted boundaries, a subset of ``values`` that ends with ``values[-1]``.
    """
    _check_num_buckets(num_buckets, values)
    values = np.asarray(values, dtype=np.int64)
    d = values.size
    # float64 is exact for these integers (< 2**53) and much faster than int64 floor division.
    v = values.astype(np.float64)
    b = np.asarray(sizes, dtype=np.float64)
    bv = b * v
    P = np.concatenate([[0.0], np.cumsum(np.asarray(counts, dtype=np.float64))])
    T = np.concatenate([[0.0], np.cumsum(np.asarray(counts, dtype=np.float64) * v)])
    prev = np.ceil(P[1:] / b) * bv
    choices = []
    for _ in range(2, min(num_buckets, d) + 1):
        best = prev.copy()
        arg = np.full(d, -1, dtype=np.int64)
        js = np.arange(1, d)
        w0, width = 0, 8
        while js.size:
            starts = js[:, None] - np.arange(w0, w0 + width)[None, :]
            starts_c = np.maximum(starts, 1)
            n = P[js + 1][:, None] - P[starts_c]
            cand = prev[starts_c - 1] + np.ceil(n / b[js][:, None]) * bv[js][:, None]
            cand[starts < 1] = np.inf
            col = cand.argmin(axis=1)
            rows = np.arange(js.size)
            cmin = cand[rows, col]
            better = cmin < best[js]
            best[js[better]] = cmin[better]
            arg[js[better]] = starts_c[rows, col][better]
            nxt = js - (w0 + width)
            nxt_c = np.maximum(nxt, 1)
            bound = T[nxt_c] + (P[js + 1] - P[nxt_c]) * v[js]
            js = js[(nxt >= 1) & (bound < best[js])]
            w0 += width
            width = int(min(width * 2, max(8, (1 << 20) // max(js.size, 1))))
        choices.append(arg)
        prev = best
    bounds = []
    j = d - 1
    for arg in reversed(choices):
        start = arg[j]
        if start >= 0:
            bounds.append(values[j])
            j = start - 1
    bounds.append(values[j])
    return np.array(sorted(bounds), dtype=np.int64)


def quantile_boundaries(values, counts, num_buckets: int) -> np.ndarray:
    """Boundaries at the count quantiles ``1/K, 2/K, ..., 1`` of the lengths (duplicates merged).

    ``num_buckets`` (``K``) must be at most ``len(values)``, the distinct lengths: more is a
    ``ValueError``, the rule :func:`plan_buckets` applies.
    """
    _check_num_buckets(num_buckets, values)
    cum = np.cumsum(counts)
    targets = np.ceil(cum[-1] * np.arange(1, num_buckets + 1) / num_buckets)
    idx = np.searchsorted(cum, targets, side="left")
    return np.unique(np.asarray(values)[np.minimum(idx, len(values) - 1)])


def exp_boundaries(values, counts, num_buckets: int, ratio: float = 1.2) -> np.ndarray:
    """Boundaries whose widths grow geometrically by ``ratio`` from the shortest to the longest
    length, as GluonNLP's ``ExpWidthBucket`` does (integer rounding may merge a few).

    ``ratio`` must be a finite number > 1 (``ValueError`` otherwise): at 1 the widths are equal
    and below 1 they shrink, which ``strategy="quantile"`` or ``"fixed"`` express directly.
    ``num_buckets`` must be at most ``len(values)``, the distinct lengths: more is a
    ``ValueError``, the rule :func:`plan_buckets` applies (edges between the lengths would
    otherwise make empty buckets).
    """
    _check_num_buckets(num_buckets, values)
    _check_ratio(ratio)
    lo, hi = int(values[0]), int(values[-1])
    # Scaled so the widest is 1: a large ratio underflows the narrow ones to 0, never to inf.
    widths = float(ratio) ** (np.arange(num_buckets) - (num_buckets - 1.0))
    edges = lo + (hi - lo) * np.cumsum(widths) / widths.sum()
    bounds = np.unique(np.clip(np.ceil(edges - 1e-9).astype(np.int64), lo, hi))
    bounds[-1] = hi
    return bounds


def _check_fixed(boundaries) -> np.ndarray:
    b = np.asarray(boundaries)
    if b.ndim != 1 or b.size == 0 or not np.issubdtype(b.dtype, np.integer):
        raise ValueError(f"boundaries must be a non-empty list of integers, got "
                         f"boundaries={boundaries!r}")
    if (b < 1).any():
        raise ValueError(f"boundaries must be >= 1, got boundaries={list(map(int, b))}")
    if (np.diff(b) <= 0).any():
        raise ValueError(
            "boundaries must be strictly increasing (sorted, no duplicates), got "
            f"boundaries={list(map(int, b))}"
        )
    return b.astype(np.int64)


def _check_fixed_keys(keys) -> tuple:
    """Two-sided fixed keys ``[(S, T), ...]`` as a sorted tuple of int pairs, or a ValueError."""
    k = np.asarray(keys)
    if k.ndim != 2 or k.shape[1] != 2 or k.shape[0] == 0 or \
            not np.issubdtype(k.dtype, np.integer) or (k < 1).any():
        raise ValueError(f"boundaries of pairs must be integers >= 1, or a list of (source, "
                         f"target) keys of integers >= 1, got boundaries={keys!r}")
    out = tuple(sorted({(int(s), int(t)) for s, t in k}))
    if len(out) != k.shape[0]:
        raise ValueError(f"boundaries must not repeat a key, got boundaries={keys!r}")
    return out


def _assign_primary(boundaries, primary, on_overflow: str) -> np.ndarray:
    """Bucket index of each (source) length under ``on_overflow``; see :meth:`BucketPlan.assign`."""
    check_choice("on_overflow", on_overflow, OVERFLOW_POLICIES)
    boundaries = np.asarray(boundaries)
    ids = np.searchsorted(boundaries, primary, side="left").astype(np.int64)
    over = ids >= len(boundaries)
    if over.any():
        if on_overflow == "error":
            i = int(np.flatnonzero(over)[0])
            raise ValueError(
                f"example {i} has length {int(primary[i])}, longer than the largest bucket "
                f"({int(boundaries[-1])}); {int(over.sum())} example(s) overflow. "
                "Add a larger boundary or pass on_overflow='truncate' or 'drop'"
            )
        ids[over] = len(boundaries) - 1 if on_overflow == "truncate" else -1
    return ids


def _assign_pairs(boundaries, keys, lengths, on_overflow: str) -> np.ndarray:
    """Key index of each ``(src, tgt)`` pair: its source bucket by ``boundaries``, then the
    smallest target length among that source bucket's keys that holds the target (the module's
    interval convention); see :meth:`BucketPlan.assign` for ``on_overflow``."""
    src_ids = _assign_primary(boundaries, lengths[:, 0], on_overflow)
    bounds = np.asarray(boundaries, dtype=np.int64)
    key_src = np.array([k[0] for k in keys], dtype=np.int64)
    key_tgt = np.array([k[1] for k in keys], dtype=np.int64)
    key_bucket = np.searchsorted(bounds, key_src, side="left")
    # One sorted code per key and per pair, source bucket first: the first key at or above a
    # pair's code is its key, unless that key belongs to the next source bucket.
    wide = int(max(key_tgt.max(), lengths[:, 1].max())) + 1
    key_code = key_bucket * wide + key_tgt
    order = np.argsort(key_code, kind="stable")
    ids = np.full(lengths.shape[0], -1, dtype=np.int64)
    kept = src_ids >= 0
    code = src_ids[kept] * wide + lengths[kept, 1]
    pos = np.searchsorted(key_code[order], code, side="left")
    fits = pos < len(keys)
    fits[fits] = key_bucket[order[pos[fits]]] == src_ids[kept][fits]
    found = np.full(code.shape, -1, dtype=np.int64)
    found[fits] = order[pos[fits]]
    if not fits.all():
        # The target is longer than every key of its source bucket.
        over = np.flatnonzero(kept)[~fits]
        last = np.full(len(bounds), -1, dtype=np.int64)
        last[key_bucket[order]] = order  # the longest-target key of each source bucket
        i = int(over[0])
        if on_overflow == "error":
            raise ValueError(
                f"example {i} has target length {int(lengths[i, 1])}, longer than its "
                f"bucket's target length {int(key_tgt[last[src_ids[i]]])}; pass on_overflow="
                "'truncate' or 'drop', or plan on this dataset"
            )
        if on_overflow == "truncate":
            found[~fits] = last[src_ids[kept][~fits]]
    ids[kept] = found
    return ids


# ---------------------------------------------------------------------------------------------
# outliers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outliers:
    """What :func:`find_outliers` found; false when nothing is an outlier.

    Attributes
    ----------
    indices : numpy.ndarray
        Indices of the outlier examples, longest first (empty when there are none).
    lengths : numpy.ndarray
        Their lengths, in the same order.
    reference : int
        The longest length once the ``excused`` longest examples are set aside.
    limit : int
        Lengths above ``limit = max(factor * reference, floor)`` are outliers.
    rest_max : int
        The longest length that is not an outlier: what the rest of the data needs.
    excused : int
        How many of the longest examples the reference leaves out.
    factor, floor : float, int
        The rule the limit came from.
    """

    indices: np.ndarray
    lengths: np.ndarray
    reference: int
    limit: int
    rest_max: int
    excused: int
    factor: float = OUTLIER_FACTOR
    floor: int = OUTLIER_FLOOR

    def __bool__(self) -> bool:
        return bool(self.indices.size)

    def rule(self, noun: str = "example") -> str:
        """How many are outliers and why, for an error message (the one wording of the rule)."""
        return (f"{self.indices.size} {noun}(s) longer than {self.limit} = max({self.factor:g} x "
                f"{self.reference}, {self.floor}), {self.reference} being the longest once the "
                f"{self.excused} longest are set aside")


def find_outliers(lengths, factor: float = OUTLIER_FACTOR, floor: int = OUTLIER_FLOOR) -> Outliers:
    """Examples far longer than what the rest of the data needs (the module's *Outliers* rule).

    The ``excused = min(max(5, ceil(N / 1000)), N // 2)`` longest examples are set aside and the
    longest of the others is the ``reference`` (about the 99.9th percentile, and one that a few
    pathological examples cannot raise); an example longer than ``max(factor * reference,
    floor)`` is an outlier. A single example is never one. O(N), numpy only.

    Parameters
    ----------
    lengths : array-like of int
        ``(N,)`` lengths, each >= 1.
    factor : float
        How many times the reference a length may be (> 1).
    floor : int
        Lengths up to ``floor`` are never outliers, however short the rest.

    Examples
    --------
    >>> found = find_outliers([12, 9, 30, 15] * 100 + [10**6])
    >>> found.indices.tolist(), found.lengths.tolist(), found.rest_max, found.limit
    ([400], [1000000], 30, 1024)
    >>> bool(find_outliers([12, 9, 30, 83]))
    False
    """
    if isinstance(factor, bool) or not isinstance(factor, Real) or not math.isfinite(factor) \
            or factor <= 1:
        raise ValueError(f"factor must be a finite number > 1, got factor={factor!r}")
    check_int("floor", floor, low=1)
    lengths = _as_lengths(lengths)
    n = lengths.size
    excused = min(max(5, -(-n // 1000)), n // 2)
    reference = int(np.partition(lengths, n - 1 - excused)[n - 1 - excused])
    limit = int(max(math.floor(factor * reference), floor))
    idx = np.flatnonzero(lengths > limit)
    idx = idx[np.argsort(-lengths[idx], kind="stable")]
    rest = lengths[lengths <= limit]
    return Outliers(indices=idx, lengths=lengths[idx], reference=reference, limit=limit,
                    rest_max=int(rest.max()), excused=excused, factor=factor, floor=floor)


def refuse_outliers(lengths, what: str = "length") -> None:
    """Raise the library's outlier error for ``lengths`` (see :func:`plan_buckets`)."""
    found = find_outliers(lengths)
    if not found:
        return
    i, top, need = int(found.indices[0]), int(found.lengths[0]), found.rest_max
    if what == "target length":
        fix = "cut or remove such targets before bucketing"
    else:
        fix = (f"cut or drop such examples: max_length={need} with on_overflow='truncate' or "
               "'drop' (BucketLoader and plan_buckets take both)")
    raise ValueError(
        f"example {i} has {what} {top}, far beyond what the rest of the data needs ({need} at "
        f"most; {found.rule()}): its bucket would unroll a {top}-step graph. "
        f"Fix: {fix}; outliers='allow' plans them as they are"
    )


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BucketPlan:
    """Bucket boundaries, keys, counts and batch sizes, with padding statistics.

    Build it with :func:`plan_buckets`. ``keys[k]`` is the padded length of bucket ``k``
    (``(src_len, tgt_len)`` for pairs); see the module docstring for the interval convention.

    Attributes
    ----------
    real_tokens : int
        Non-padding time steps over all kept examples.
    slots : int
        Time steps after padding every example to its bucket length.
    computed_slots : int
        ``slots`` plus the masked rows that fill each bucket's last batch.
    """

    strategy: str
    boundaries: tuple
    keys: tuple
    counts: tuple
    batch_sizes: tuple
    bucket_real_tokens: tuple
    num_dropped: int = 0
    num_truncated: int = 0
    # The bucket of every planned example (-1: dropped), as plan_buckets assigned it: the
    # sampler takes it instead of assigning the lengths again. Not part of equality or repr.
    example_buckets: np.ndarray | None = field(default=None, repr=False, compare=False)
    # A plan chosen by measurement: why this K (bucketrnn.autoplan.AutoChoice, set by
    # bucketrnn.autoplan.auto_plan); None otherwise.
    auto: object = field(default=None, repr=False, compare=False)

    @property
    def num_buckets(self) -> int:
        return len(self.keys)

    def _key_len(self, k) -> int:
        return key_length(self.keys[k])

    @property
    def bucket_slots(self) -> tuple:
        return tuple(n * self._key_len(k) for k, n in enumerate(self.counts))

    @property
    def bucket_computed_slots(self) -> tuple:
        return tuple(
            -(-n // b) * b * self._key_len(k)
            for k, (n, b) in enumerate(zip(self.counts, self.batch_sizes))
        )

    @property
    def bucket_num_batches(self) -> tuple:
        return tuple(-(-n // b) for n, b in zip(self.counts, self.batch_sizes))

    @property
    def real_tokens(self) -> int:
        return int(sum(self.bucket_real_tokens))

    @property
    def slots(self) -> int:
        return int(sum(self.bucket_slots))

    @property
    def computed_slots(self) -> int:
        return int(sum(self.bucket_computed_slots))

    @property
    def padding_fraction(self) -> float:
        """Share of time-padded slots that are padding (ignores fill rows)."""
        return 1.0 - self.real_tokens / self.slots

    @property
    def fill_fraction(self) -> float:
        """Share of computed slots spent on fill rows."""
        return (self.computed_slots - self.slots) / self.computed_slots

    @property
    def waste(self) -> float:
        """Share of computed slots that are not real tokens: time padding plus fill rows."""
        return 1.0 - self.real_tokens / self.computed_slots

    @property
    def num_examples(self) -> int:
        return int(sum(self.counts))

    def assign(self, lengths, on_overflow: str = "error") -> np.ndarray:
        """Bucket index of every example (``int64``; -1 for examples dropped by ``on_overflow``).

        ``on_overflow`` decides what happens to an example longer than the largest bucket:
        ``"error"`` raises, ``"truncate"`` puts it in the last bucket (batchify cuts it to the
        bucket length), ``"drop"`` marks it -1.
        """
        lengths = np.asarray(lengths, dtype=np.int64)
        if is_pair_lengths(lengths):
            return _assign_pairs(self.boundaries, self.keys, lengths, on_overflow)
        return _assign_primary(self.boundaries, lengths, on_overflow)

    def fingerprint(self) -> str:
        """Stable short hash of what determines batch shapes: keys, boundaries, batch sizes."""
        blob = json.dumps(
            {"keys": _jsonable(self.keys), "boundaries": _jsonable(self.boundaries),
             "batch_sizes": _jsonable(self.batch_sizes)},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "keys": _jsonable(self.keys),
            "boundaries": _jsonable(self.boundaries),
            "counts": _jsonable(self.counts),
            "batch_sizes": _jsonable(self.batch_sizes),
            "real_tokens": self.real_tokens,
            "computed_slots": self.computed_slots,
            "padding_fraction": self.padding_fraction,
            "fill_fraction": self.fill_fraction,
            "waste": self.waste,
            "num_dropped": self.num_dropped,
            "num_truncated": self.num_truncated,
            **({} if self.auto is None else {"auto": self.auto.to_dict()}),
        }

    def __repr__(self) -> str:
        lines = [
            f"BucketPlan(strategy={self.strategy!r}, buckets={self.num_buckets}, "
            f"examples={self.num_examples}, real_tokens={self.real_tokens}, "
            f"padding={100 * self.padding_fraction:.2f}%, fill={100 * self.fill_fraction:.2f}%, "
            f"waste={100 * self.waste:.2f}%"
            + (f", dropped={self.num_dropped}" if self.num_dropped else "")
            + (f", truncated={self.num_truncated}" if self.num_truncated else "")
            + ")",
            f"  {'key':>10} {'count':>8} {'batch':>6} {'batches':>8} {'padding':>8}",
        ]
        for k in range(self.num_buckets):
            slots = self.bucket_slots[k]
            pad = 1.0 - self.bucket_real_tokens[k] / slots if slots else 0.0
            lines.append(
                f"  {str(self.keys[k]):>10} {self.counts[k]:>8} {self.batch_sizes[k]:>6} "
                f"{self.bucket_num_batches[k]:>8} {100 * pad:>7.2f}%"
            )
        if self.auto is not None:
            lines.append(self.auto.explain())
        return "\n".join(lines)


def _jsonable(x):
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    return x


def _refuse_oversized_batches(keys, sizes, batch_size, max_tokens) -> None:
    """Refuse a bucket whose one batch array, rows x bucket length (for pairs, the longer of
    source and target), has more than :data:`MAX_BATCH_ELEMENTS` elements: MXNet could not
    make it, and the sampler would first allocate that many rows of fill slots."""
    for key, rows in zip(keys, sizes):
        length = max(key) if isinstance(key, tuple) else key
        elements = int(rows) * int(length)
        if elements > MAX_BATCH_ELEMENTS:
            given = f"batch_size={batch_size}" if max_tokens is None else \
                f"max_tokens={max_tokens}" + ("" if batch_size is None else
                                              f" (batch_size={batch_size})")
            raise ValueError(
                f"{given} gives bucket {key} batches of {int(rows)} rows x {int(length)} steps = "
                f"{elements} elements, more than MXNet's limit of {MAX_BATCH_ELEMENTS} (2**31 - 1)"
                f" per array; use a batch size of at most {MAX_BATCH_ELEMENTS // int(length)} "
                "rows for this bucket"
            )


def with_longest(boundaries, lengths) -> list:
    """``boundaries`` sorted and without repeats, plus one for the longest of ``lengths`` (the
    source side of ``(src, tgt)`` pairs) when it is longer than every boundary: another
    dataset planned on a run's boundaries, so it meets the graphs the run compiled, with one
    more graph only when it must.

    >>> with_longest([8, 4, 8], [3, 9, 2]), with_longest([4, 8], [3, 7])
    ([4, 8, 9], [4, 8])
    """
    bounds = sorted({int(b) for b in boundaries})
    lengths = np.asarray(lengths)
    longest = int((lengths[:, 0] if lengths.ndim == 2 else lengths).max())
    return bounds + [longest] if longest > bounds[-1] else bounds



def _priced_batch_sizes(steps, batch_size, max_tokens, batch_size_multiple) -> np.ndarray:
    """Batch sizes the pair search prices candidate keys with: :func:`bucket_batch_sizes`, but a
    candidate too long for ``max_tokens`` gets 1 row (the plan's own keys are checked after)."""
    steps = np.asarray(steps, dtype=np.int64)
    if max_tokens is None:
        return bucket_batch_sizes(steps, batch_size, None, batch_size_multiple)
    sizes = max_tokens // steps
    if batch_size is not None:
        sizes = np.minimum(sizes, batch_size)
    if batch_size_multiple > 1:
        sizes = (sizes // batch_size_multiple) * batch_size_multiple
    return np.maximum(sizes, 1)


def longest_key(lengths):
    """The one key that holds every example: the longest length, or for ``(N, 2)`` pairs the
    longest source and the longest target."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if is_pair_lengths(lengths):
        return (int(lengths[:, 0].max()), int(lengths[:, 1].max()))
    return int(lengths.max())


def pad_to_max_waste(lengths) -> float:
    """Share of slots that are padding when every example is padded to :func:`longest_key`
    (one graph; for pairs both sides, source plus target steps, as :attr:`BucketPlan.waste`
    counts them).

    >>> round(pad_to_max_waste([[2, 1], [4, 3]]), 4)  # 10 real of 2 x (4 + 3) slots
    0.2857
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = lengths.shape[0]
    return 1.0 - lengths.sum() / (rows * key_length(longest_key(lengths)))


def plan_buckets(
    lengths,
    num_buckets: int = 8,
    strategy: str = "optimal",
    batch_size: int | None = 64,
    max_tokens: int | None = None,
    batch_size_multiple: int = 1,
    boundaries=None,
    on_overflow: str = "error",
    ratio: float = 1.2,
    max_length: int | None = None,
    outliers: str = "error",
    **unknown,
) -> BucketPlan:
    """Plan buckets for ``lengths``.

    Parameters
    ----------
    lengths : array-like of int
        ``(N,)`` lengths, or ``(N, 2)`` (source, target) lengths
        (:func:`~bucketrnn.sequence_lengths`).
    num_buckets : int
        Number of buckets: an upper bound, never more than the number of distinct lengths
        (``ValueError`` otherwise). ``optimal`` uses fewer when more would only add fill rows;
        ``quantile`` and ``exp`` merge boundaries that round to the same length. Checked but
        not used for ``fixed``. A number chosen by measurement is a layer above this function:
        :func:`bucketrnn.autoplan.auto_plan` hands it fixed boundaries.
    strategy : {"optimal", "quantile", "exp", "fixed"}
        How boundaries are chosen; ``fixed`` takes ``boundaries``.
    batch_size, max_tokens, batch_size_multiple : int
        Per-bucket batch sizes; see :func:`bucket_batch_sizes`. With ``max_tokens``,
        ``batch_size`` (pass ``None`` to disable) caps the result.
    boundaries : list of int, or list of (int, int) for pairs
        Inclusive upper bounds for ``strategy="fixed"``; strictly increasing. For ``(src,
        tgt)`` lengths, two-sided keys ``[(S, T), ...]`` may be given instead (e.g. a training
        plan's ``keys``, so an evaluation set meets its graphs): distinct, each >= 1, assigned
        by the module's interval convention.
    on_overflow : {"error", "truncate", "drop"}
        Examples longer than the largest fixed boundary or than ``max_length``: see
        :meth:`BucketPlan.assign`; the plan counts them (``num_dropped``, ``num_truncated``).
    ratio : float
        Width growth factor of ``exp``: a finite number > 1.
    max_length : int, optional
        Longest bucket the planned strategies may choose: boundaries are planned on the
        (source) lengths capped at ``max_length``, and longer examples go to ``on_overflow``.
        Not used with ``fixed`` (the last boundary is the longest bucket).
    outliers : {"error", "allow"}
        ``"error"`` (default): before choosing boundaries, raise ``ValueError`` naming the
        example when a (source or target) length is an extreme outlier by
        :func:`find_outliers` (the lengths capped at ``max_length`` when given), since its
        bucket would need a graph unrolled that far. ``"allow"`` plans such lengths as they
        are. ``fixed`` boundaries are explicit and not judged.

    Raises
    ------
    ValueError
        Besides bad arguments: a bucket whose one batch, rows x bucket length (for pairs the
        longer side), would exceed :data:`MAX_BATCH_ELEMENTS` = 2**31 - 1 elements, MXNet's
        limit on one array; the message names ``batch_size`` (or ``max_tokens``), the bucket and
        the product. Checked on the plan, before a sampler allocates any batch: a
        ``batch_size=10**9`` is refused for every bucket of length 3 or more (a model's own
        arrays, rows x hidden units per step, are checked by whoever knows the model).

    Examples
    --------
    >>> plan = plan_buckets([3, 3, 4, 9, 10], num_buckets=2, batch_size=2)
    >>> plan.keys, plan.counts, plan.batch_sizes
    ((4, 10), (3, 2), (2, 2))
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got strategy={strategy!r}")
    check_choice("on_overflow", on_overflow, OVERFLOW_POLICIES)
    check_choice("outliers", outliers, OUTLIER_POLICIES)
    _validate_sizes(batch_size, max_tokens, batch_size_multiple)
    refuse_auto_arguments("plan_buckets", unknown)
    if isinstance(num_buckets, str) and num_buckets == "auto":
        raise ValueError(AUTO_MOVED.format(name="plan_buckets"))
    check_int("num_buckets", num_buckets, low=1)
    _check_ratio(ratio)
    if max_length is not None:
        # Lengths are int64 arrays and MXNet indexes with int32: a longer cap means no cap and
        # would turn the lengths into Python objects (np.minimum with 10**30).
        check_int("max_length", max_length, low=1, high=MAX_BATCH_ELEMENTS + 1)
        if strategy == "fixed":
            raise ValueError(f"max_length is not used with strategy='fixed' (the last boundary is "
                             f"the longest bucket), got max_length={max_length!r}; pass one or "
                             "the other")
    lengths = check_lengths(lengths)
    pairs = is_pair_lengths(lengths)
    primary = lengths[:, 0] if pairs else lengths
    planned = primary if max_length is None else np.minimum(primary, max_length)
    if strategy != "fixed" and outliers == "error":
        # Judged before any boundary is chosen: one 10**6-long example must not become a
        # bucket (and a graph) of 10**6 steps.
        refuse_outliers(planned, "source length" if pairs else "length")
        if pairs:
            refuse_outliers(lengths[:, 1], "target length")
    values, counts = length_histogram(planned)
    fixed_keys = None

    if strategy == "fixed":
        if boundaries is None:
            raise ValueError("strategy='fixed' needs boundaries=[...], got boundaries=None")
        if pairs and np.ndim(boundaries) == 2:
            fixed_keys = _check_fixed_keys(boundaries)
            bounds = np.array(sorted({k[0] for k in fixed_keys}), dtype=np.int64)
        else:
            bounds = _check_fixed(boundaries)
    else:
        if boundaries is not None:
            raise ValueError(f"boundaries are only used with strategy='fixed', got "
                             f"strategy={strategy!r}")
        if pairs and strategy == "optimal":
            # Two-sided keys (bucketrnn.data.pairplan): the finest plan has one key per
            # distinct (source, target) pair.
            _check_num_buckets(num_buckets, np.unique(planned * (int(lengths[:, 1].max()) + 1)
                                                      + lengths[:, 1]),
                               "(source, target) length pairs")
            bounds = None
        elif strategy == "optimal":
            _check_num_buckets(num_buckets, values)
            sizes = bucket_batch_sizes(values, batch_size, max_tokens, batch_size_multiple)
            bounds = optimal_boundaries(values, counts, num_buckets, sizes)
        elif strategy == "quantile":
            bounds = quantile_boundaries(values, counts, num_buckets)
        else:
            bounds = exp_boundaries(values, counts, num_buckets, ratio)

    if pairs:
        tgt = lengths[:, 1]
        if fixed_keys is not None:
            keys = fixed_keys
        elif strategy == "optimal":
            keys = tuple(pair_keys(planned, tgt, num_buckets,
                                   lambda steps: _priced_batch_sizes(
                                       steps, batch_size, max_tokens, batch_size_multiple)))
            bounds = np.array(sorted({k[0] for k in keys}), dtype=np.int64)
        else:
            # One key per source bucket, its target length the bucket's longest target.
            src_ids = _assign_primary(bounds, primary, on_overflow)
            tgt_keys = np.zeros(len(bounds), dtype=np.int64)
            np.maximum.at(tgt_keys, src_ids[src_ids >= 0], tgt[src_ids >= 0])
            keys = tuple((int(b), int(max(t, 1))) for b, t in zip(bounds, tgt_keys))
        # Targets never overflow here: the target keys follow from the data.
        ids = _assign_pairs(bounds, keys, lengths, on_overflow)
        kept = ids >= 0
        nb = len(keys)
        key_src = np.array([k[0] for k in keys], dtype=np.int64)
        key_len = np.array([k[0] + k[1] for k in keys], dtype=np.int64)
        truncated = kept & (primary > key_src[np.maximum(ids, 0)])
        real = np.minimum(primary, key_src[np.maximum(ids, 0)]) + tgt
        sizes = bucket_batch_sizes(key_len, batch_size, max_tokens, batch_size_multiple)
    else:
        ids = _assign_primary(bounds, primary, on_overflow)
        kept = ids >= 0
        nb = len(bounds)
        truncated = kept & (primary > bounds[np.maximum(ids, 0)])
        keys = tuple(int(b) for b in bounds)
        real = np.minimum(primary, bounds[np.maximum(ids, 0)])
        sizes = bucket_batch_sizes(bounds, batch_size, max_tokens, batch_size_multiple)
    bucket_counts = np.bincount(ids[kept], minlength=nb)
    real_per_bucket = np.bincount(ids[kept], weights=real[kept], minlength=nb).astype(np.int64)
    _refuse_oversized_batches(keys, sizes, batch_size, max_tokens)
    return BucketPlan(
        strategy=strategy,
        boundaries=tuple(int(b) for b in bounds),
        keys=keys,
        counts=tuple(int(c) for c in bucket_counts),
        batch_sizes=tuple(int(s) for s in sizes),
        bucket_real_tokens=tuple(int(r) for r in real_per_bucket),
        num_dropped=int((~kept).sum()),
        num_truncated=int(truncated.sum()),
        example_buckets=ids,
    )

