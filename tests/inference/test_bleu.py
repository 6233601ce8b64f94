import math

import pytest

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
    assert corpus_bleu([CAT], [CAT_REF]) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert corpus_bleu([CAT], [CAT_REF]) == pytest.approx(0.5372849659)


def test_brevity_penalty():
    # Every n-gram of the 4-token candidate is in the 6-token reference: BLEU = exp(1 - 6/4).
    assert corpus_bleu([SHORT], [SHORT_REF]) == pytest.approx(math.exp(-0.5))
    # A longer candidate is not penalised for length (BP = 1): only its precisions count,
    # 4/6 ('the' clipped to 1), 3/5, 2/4, 1/3.
    precisions = 4 / 6 * 3 / 5 * 2 / 4 * 1 / 3
    assert corpus_bleu([SHORT_REF], [SHORT]) == pytest.approx(precisions ** 0.25)


def test_corpus_level_sums_before_combining():
    # matches [9, 6, 4, 2] of [10, 8, 6, 4] n-grams, c = 10, r = 12.
    got = corpus_bleu([CAT, SHORT], [CAT_REF, SHORT_REF])
    assert got == pytest.approx((0.9 * 0.75 * (4 / 6) * 0.5) ** 0.25 * math.exp(1 - 12 / 10))
    assert got == pytest.approx(0.563880, abs=1e-6)


def test_no_four_gram_match_is_zero_and_ids_work():
    assert corpus_bleu([[1, 2, 3]], [[1, 2, 3]]) == 0.0  # no 4-gram at all: precision 0/0
    assert corpus_bleu([[1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5]]) == pytest.approx(1.0)


def test_exact_match_and_bad_input():
    assert exact_match([[1, 2], [3], []], [[1, 2], [3, 4], []]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 candidates and 1 references"):
        corpus_bleu([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="must not be empty"):
        exact_match([], [])
