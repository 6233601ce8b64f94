import math

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

from bucketrnn.inference.bleu import bleu_stats, corpus_bleu, exact_match

CAT = "the cat sat on the mat".split()
CAT_REF = "the cat sat on a mat".split()
SHORT = "the cat sat on".split()
SHORT_REF = "the cat sat on the mat".split()


def test_precisions_counted_by_hand():
    # 1-grams: "the" twice in the candidate, once in the reference -> clipped to 1: 5/6;
    # 2-grams 3/5 (the cat, cat sat, sat on); 3-grams 2/4; 4-grams 1/3; same lengths: BP = 1.
    s = bleu_stats([CAT], [CAT_REF])
    assert s["matches"] == [5, 3, 2, 1] and s["totals"] == [6, 5, 4, 3]
    want = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert corpus_bleu([CAT], [CAT_REF]) == pytest.approx(want)
    assert corpus_bleu([CAT], [CAT_REF]) == pytest.approx(53.72849659)


def test_brevity_penalty():
    # Every n-gram of the 4-token candidate is in the 6-token reference: BLEU = exp(1 - 6/4).
    assert corpus_bleu([SHORT], [SHORT_REF]) == pytest.approx(100 * math.exp(-0.5))
    # A longer candidate is not penalised for length (BP = 1): only its precisions count,
    # 4/6 ('the' clipped to 1), 3/5, 2/4, 1/3.
    precisions = 4 / 6 * 3 / 5 * 2 / 4 * 1 / 3
    assert corpus_bleu([SHORT_REF], [SHORT]) == pytest.approx(100 * precisions ** 0.25)


def test_corpus_level_sums_before_combining():
    # matches [9, 6, 4, 2] of [10, 8, 6, 4] n-grams, c = 10, r = 12.
    got = corpus_bleu([CAT, SHORT], [CAT_REF, SHORT_REF])
    assert got == pytest.approx(100 * (0.9 * 0.75 * (4 / 6) * 0.5) ** 0.25
                                * math.exp(1 - 12 / 10))
    assert got == pytest.approx(56.3880, abs=1e-4)


def test_no_four_gram_at_all_is_zero_and_ids_work():
    assert corpus_bleu([[1, 2, 3]], [[1, 2, 3]]) == 0.0  # no candidate 4-gram: 0, as sacrebleu
    assert corpus_bleu([[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5]]) == pytest.approx(100.0)


def test_an_order_without_a_match_is_smoothed_as_sacrebleu_does():
    # 1-grams 4/5, 2-grams 2/4, no 3- or 4-gram match: 100 / (2 * 3) and 100 / (4 * 2).
    cand, ref = [1, 2, 9, 3, 4], [1, 2, 8, 3, 4]
    want = math.exp((math.log(80) + math.log(50) + math.log(100 / 6) + math.log(100 / 8)) / 4)
    assert corpus_bleu([cand], [ref]) == pytest.approx(want)


def _sacrebleu(cands, refs):
    return sacrebleu.corpus_bleu([" ".join(map(str, c)) for c in cands],
                                 [[" ".join(map(str, r)) for r in refs]], tokenize="none").score


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(0, 12), st.integers(2, 6),
       st.floats(0.0, 1.0))
def test_equal_to_sacrebleu_on_random_corpora(seed, n, longest, vocab, keep):
    # Random references; candidates are noisy copies (some tokens replaced, some lengths
    # changed) so every regime shows up: perfect, partial, unmatched orders, short candidates.
    rng = np.random.default_rng(seed)
    refs, cands = [], []
    for _ in range(n):
        ref = rng.integers(0, vocab, rng.integers(0, longest + 1)).tolist()
        cand = [t if rng.random() < keep else int(rng.integers(0, vocab)) for t in ref]
        cand = cand[:rng.integers(0, len(cand) + 1)] if rng.random() < 0.3 else cand
        cand += rng.integers(0, vocab, rng.integers(0, 3)).tolist() if rng.random() < 0.3 else []
        refs.append(ref)
        cands.append(cand)
    assert corpus_bleu(cands, refs) == pytest.approx(_sacrebleu(cands, refs), rel=1e-12,
                                                     abs=1e-12)


def test_exact_match_and_bad_input():
    assert exact_match([[1, 2], [3], []], [[1, 2], [3, 4], []]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 candidates and 1 references"):
        corpus_bleu([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="must not be empty"):
        exact_match([], [])
