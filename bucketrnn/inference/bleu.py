"""Metrics of generated sequences against references: exact match and corpus BLEU-4.

:func:`corpus_bleu` is Papineni et al. (2002) at the corpus level on sacrebleu's 0-100 scale,
computed as ``sacrebleu.corpus_bleu(hyps, [refs], tokenize='none')`` computes it with its
defaults (a test holds the two equal on random corpora): clipped n-gram matches and candidate
n-gram counts are summed over the corpus for n = 1..4; the score is ``100 *`` the geometric
mean of the four precisions times the brevity penalty ``exp(1 - r / c)`` when the candidates'
total length ``c`` is below the references' ``r`` (1 otherwise). A precision with no match is
smoothed as sacrebleu's default ``exp`` method (NIST's ``mteval``) does: the k-th such order
counts ``1 / (2**k * candidate n-grams)``; no match at any order, no candidate n-gram of some
order, or no candidate token gives 0. One reference per candidate; tokens are any hashable
values (words or ids).

Examples
--------
>>> round(corpus_bleu([["a", "b", "c", "d"]], [["a", "b", "c", "d"]]), 6)
100.0
>>> exact_match([[1, 2], [3]], [[1, 2], [3, 4]])
0.5
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["bleu_stats", "corpus_bleu", "exact_match"]

MAX_N = 4


def _check(candidates, references):
    candidates, references = list(candidates), list(references)
    if len(candidates) != len(references):
        raise ValueError(f"candidates and references must pair up, got {len(candidates)} "
                         f"candidates and {len(references)} references")
    if not candidates:
        raise ValueError("candidates must not be empty")
    return candidates, references


def exact_match(candidates, references) -> float:
    """Share of candidates equal to their reference, token for token."""
    candidates, references = _check(candidates, references)
    return sum(list(c) == list(r) for c, r in zip(candidates, references)) / len(candidates)


def _ngrams(tokens, n):
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def bleu_stats(candidates, references, max_n: int = MAX_N) -> dict:
    """Corpus sums: clipped matches and candidate n-grams per order, candidate and reference
    lengths (what :func:`corpus_bleu` combines)."""
    candidates, references = _check(candidates, references)
    matches, totals = [0] * max_n, [0] * max_n
    cand_len = ref_len = 0
    for cand, ref in zip(candidates, references):
        cand, ref = list(cand), list(ref)
        cand_len += len(cand)
        ref_len += len(ref)
        for n in range(1, max_n + 1):
            c, r = _ngrams(cand, n), _ngrams(ref, n)
            matches[n - 1] += sum(min(count, r[g]) for g, count in c.items())
            totals[n - 1] += max(len(cand) - n + 1, 0)
    return {"matches": matches, "totals": totals, "cand_len": cand_len, "ref_len": ref_len}


def corpus_bleu(candidates, references, max_n: int = MAX_N) -> float:
    """Corpus BLEU on the 0-100 scale of token sequences against one reference each, equal to
    sacrebleu's ``corpus_bleu`` with its defaults and ``tokenize='none'`` (see the module)."""
    s = bleu_stats(candidates, references, max_n)
    c, r = s["cand_len"], s["ref_len"]
    if not any(s["matches"]) or c == 0 or min(s["totals"]) == 0:
        return 0.0
    bp = 1.0 if c >= r else math.exp(1 - r / c)
    # The arithmetic of sacrebleu's compute_bleu, step for step, so the two agree to the bit.
    logs, halving = [], 1.0
    for m, t in zip(s["matches"], s["totals"]):
        if m == 0:
            halving *= 2
            logs.append(math.log(100. / (halving * t)))
        else:
            logs.append(math.log(100. * m / t))
    return bp * math.exp(sum(logs) / max_n)
