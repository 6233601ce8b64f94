"""Two-sided bucket keys for ``(src, tgt)`` pairs: source buckets, each split on target lengths.

A pair bucket's graph runs ``S + T`` time steps (``S`` encoder steps, ``T`` decoder steps), so a
plan that chooses boundaries on the source side alone gives each source bucket the target length
of its longest target, and one long target pads every other example of the bucket. This module
chooses the keys of both sides together.

Interval convention. Source boundaries ``s_0 < ... < s_{J-1}`` split the source lengths as a
one-sided plan does: source bucket ``j`` holds the pairs whose source length ``l`` satisfies
``s_{j-1} < l <= s_j`` (``s_{-1} = 0``). Within source bucket ``j``, target boundaries
``t_{j,0} < ... < t_{j,M_j-1}`` split the target lengths the same way: the pair goes to the
smallest ``t_{j,m} >= tgt``, and its key is ``(s_j, t_{j,m})``. Every boundary of either side is
a length that occurs in the data (the source one capped at ``max_length``), and ``t_{j,M_j-1}``
is the longest target of source bucket ``j``. The number of keys ``sum_j M_j`` is the number of
graphs, at most ``num_buckets``.

Cost. A key ``(S, T)`` of ``n`` pairs and batch size ``B`` computes ``ceil(n / B) * B * (S + T)``
slots, both sides' time padding and fill rows (:attr:`BucketPlan.computed_slots
<bucketrnn.data.plan.BucketPlan.computed_slots>` of a pairs plan). :func:`pair_keys` minimises
the sum over keys exactly, over every choice of source boundaries and per-bucket target
boundaries with at most ``num_buckets`` keys in all: a dynamic programme over source intervals
whose inner step is the one-sided programme on the interval's target histogram. A one-sided
plan is one of the choices (one target split per source bucket), so the two-sided plan never
costs more than it. Keys that dominate each other across source buckets (a short-source pair in a
long-source bucket) are not considered: that wider family has no exact polynomial search here.

Candidates. Each side's boundaries are drawn from its distinct lengths when there are at most
:data:`MAX_CANDIDATES` of them (the plan is then exact); beyond that, from
:data:`MAX_CANDIDATES` lengths at equal count quantiles, always including the longest (each
length then counts as the smallest candidate at or above it: near-exact, and the time stays
bounded: ``O(J^2 * K * T^2)`` for ``J, T <= 64`` candidates and ``K`` keys; 200,000 pairs
with 499 x 399 distinct lengths took 4 s for 8 keys and 10 s for 32 on a 2-core AMD EPYC under
a load average of 15).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["MAX_CANDIDATES", "pair_keys"]

MAX_CANDIDATES = 64


def _candidates(lengths: np.ndarray) -> np.ndarray:
    """Sorted boundary candidates of one side: its distinct lengths, or at most
    :data:`MAX_CANDIDATES` of them at equal count quantiles (always the longest)."""
    values, counts = np.unique(lengths, return_counts=True)
    if values.size <= MAX_CANDIDATES:
        return values
    cum = np.cumsum(counts)
    targets = np.ceil(cum[-1] * np.arange(1, MAX_CANDIDATES + 1) / MAX_CANDIDATES)
    idx = np.minimum(np.searchsorted(cum, targets, side="left"), values.size - 1)
    return np.unique(np.append(values[idx], values[-1]))


def _target_tables(hist: np.ndarray, src_len: int, tv: np.ndarray, sizes: np.ndarray,
                   num_keys: int):
    """Least cost of each source interval's targets in at most ``m`` target buckets.

    ``hist`` is ``(I, D)``: the target histogram (over candidates ``tv``) of ``I`` source
    intervals that share the source key ``src_len``; ``sizes[q]`` is the batch size of key
    ``(src_len, tv[q])``. Returns ``best`` ``(num_keys + 1, I, D)``, ``best[m, i, q]`` being the
    least cost of covering targets ``0..q`` with at most ``m`` buckets, and ``start`` of the same
    shape, the first target index of the last bucket (-1: ``m - 1`` buckets do as well).
    """
    n_int, d = hist.shape
    cum = np.concatenate([np.zeros((n_int, 1)), np.cumsum(hist, axis=1)], axis=1)
    # cost[i, p, q]: targets p..q as one bucket of key (src_len, tv[q]); p > q never chosen.
    n = cum[:, None, 1:] - cum[:, :-1, None]
    b = sizes.astype(np.float64)[None, None, :]
    cost = np.ceil(n / b) * b * (src_len + tv.astype(np.float64))[None, None, :]
    upper = np.triu(np.ones((d, d), dtype=bool))
    cost = np.where(upper[None], cost, np.inf)
    best = np.full((num_keys + 1, n_int, d), np.inf)
    start = np.full((num_keys + 1, n_int, d), -1, dtype=np.int64)
    best[1] = cost[:, 0, :]
    start[1] = 0
    for m in range(2, num_keys + 1):
        if d == 1:  # one target length: a second bucket has nothing to hold
            best[m] = best[m - 1]
            continue
        # A last bucket starting at p >= 1 after the best of m - 1 buckets over 0..p-1.
        cand = best[m - 1][:, :-1, None] + cost[:, 1:, :]
        p = cand.argmin(axis=1)
        value = np.take_along_axis(cand, p[:, None, :], axis=1)[:, 0, :]
        better = value < best[m - 1]
        best[m] = np.where(better, value, best[m - 1])
        start[m] = np.where(better, p + 1, -1)
    return best, start


def pair_keys(src, tgt, num_buckets: int,
              batch_sizes: Callable[[np.ndarray], np.ndarray]) -> list[tuple[int, int]]:
    """Keys ``(S, T)`` of the least-cost two-sided plan with at most ``num_buckets`` keys.

    Parameters
    ----------
    src, tgt : numpy.ndarray
        ``(N,)`` source (already capped at any ``max_length``) and target lengths, each >= 1.
    num_buckets : int
        Most keys (graphs) the plan may have, >= 1 (checked by the caller).
    batch_sizes : callable
        Batch size of a key from its steps ``S + T`` (an array of them).

    Returns
    -------
    list of (int, int)
        The keys sorted by ``(S, T)``; see the module docstring for the interval convention.

    Examples
    --------
    >>> pair_keys([2, 2, 9, 9], [9, 2, 2, 2], 3, lambda steps: 0 * steps + 1)
    [(2, 2), (2, 9), (9, 2)]
    """
    src = np.asarray(src, dtype=np.int64)
    tgt = np.asarray(tgt, dtype=np.int64)
    sv, tv = _candidates(src), _candidates(tgt)
    si = np.searchsorted(sv, src, side="left")
    ti = np.searchsorted(tv, tgt, side="left")
    ds, dt = sv.size, tv.size
    hist = np.zeros((ds, dt), dtype=np.float64)
    np.add.at(hist, (si, ti), 1.0)
    cum_src = np.concatenate([np.zeros((1, dt)), np.cumsum(hist, axis=0)])
    # The last target present in each source interval [i..j]: where its targets end.
    present = hist > 0
    k_max = num_buckets
    # g[j][i, m]: least cost of source interval i..j (key sv[j]) in at most m keys.
    g = []
    for j in range(ds):
        inter = cum_src[j + 1][None, :] - cum_src[:j + 1]
        sizes = np.asarray(batch_sizes(sv[j] + tv), dtype=np.int64)
        best, _ = _target_tables(inter, int(sv[j]), tv, sizes, k_max)
        any_t = np.cumsum(present[:j + 1][::-1], axis=0)[::-1] > 0
        last = dt - 1 - np.argmax(any_t[:, ::-1], axis=1)
        g.append(best[:, np.arange(j + 1), last].T)  # (j + 1, k_max + 1)
    # f[k, j]: least cost of sources 0..j in at most k keys; f[k, -1] = 0 (index shift by 1).
    f = np.full((k_max + 1, ds + 1), np.inf)
    f[:, 0] = 0.0
    choice = {}
    for k in range(1, k_max + 1):
        for j in range(ds):
            value, arg = f[k - 1, j + 1], None
            for m in range(1, k + 1):
                cand = f[k - m, :j + 1] + g[j][:, m]
                i = int(cand.argmin())
                if cand[i] < value:
                    value, arg = cand[i], (i, m)
            f[k, j + 1] = value
            choice[k, j] = arg
    keys = []
    k, j = k_max, ds - 1
    while j >= 0:
        if choice[k, j] is None:
            k -= 1
            continue
        i, m = choice[k, j]
        keys.extend(_split(hist[i:j + 1].sum(axis=0), int(sv[j]), tv,
                           np.asarray(batch_sizes(sv[j] + tv), dtype=np.int64), m))
        k, j = k - m, i - 1
    return sorted(keys)


def _split(hist: np.ndarray, src_len: int, tv: np.ndarray, sizes: np.ndarray,
           m: int) -> list[tuple[int, int]]:
    """The keys of one source bucket: its targets in at most ``m`` least-cost groups."""
    best, start = _target_tables(hist[None, :], src_len, tv, sizes, m)
    q = int(np.flatnonzero(hist)[-1])
    keys = []
    while q >= 0 and m >= 1:
        if m > 1 and start[m, 0, q] < 0:
            m -= 1
            continue
        p = int(start[m, 0, q])
        if hist[p:q + 1].any():
            # The group's longest candidate present: a group ending on absent lengths would
            # price a longer key than it needs.
            top = p + int(np.flatnonzero(hist[p:q + 1])[-1])
            keys.append((src_len, int(tv[top])))
        q, m = p - 1, m - 1
    return keys
