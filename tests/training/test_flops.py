"""flops: matrix-product FLOPs per trained token, and the GEMM peak the utilisation compares to."""

import pytest

from bucketrnn.training.flops import classifier_flops_per_token, gemm_peak, lm_flops_per_token


def test_language_model_flops_by_hand():
    # The default model: 2 LSTM layers of 200 over a 200-wide embedding, 10,000 words.
    layer = 2 * 4 * 200 * (200 + 200)
    output = 2 * 200 * 10_000
    assert lm_flops_per_token(10_000, None, 200, 2) == 3 * (2 * layer + output)
    assert lm_flops_per_token(10_000, 200, 200, 2, training=False) == 2 * layer + output
    # The output layer is most of the work (the "66% of a step" is measured time).
    assert output / (2 * layer + output) == pytest.approx(0.758, abs=1e-3)
    gru = 2 * 3 * 16 * (8 + 16)  # a GRU has three gates; embed 8 into 16 units
    assert lm_flops_per_token(50, 8, 16, 1, "gru", training=False) == gru + 2 * 16 * 50


def test_classifier_flops_by_hand():
    one = 2 * 4 * 8 * (5 + 8)
    assert classifier_flops_per_token(5, 8, 1, training=False) == one
    # Bidirectional: both directions, and the second layer reads both (2H wide).
    two = 2 * (2 * 4 * 8 * (5 + 8)) + 2 * (2 * 4 * 8 * (16 + 8))
    assert classifier_flops_per_token(5, 8, 2, bidirectional=True, training=False) == two


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be one of 'lstm', 'gru', got mode='rnn'"):
        lm_flops_per_token(10, None, 4, 1, "rnn")
    with pytest.raises(ValueError, match="hidden_size must be an integer >= 1"):
        lm_flops_per_token(10, None, 0, 1)


def test_gemm_peak_is_the_fastest_repeat_in_flops(monkeypatch):
    # A clock whose repeats take 0.5, 0.25 and 0.4 s: the peak is 2 n^3 FLOPs / 0.25 s.
    from bucketrnn.training import flops

    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.4])
    monkeypatch.setattr(flops.time, "perf_counter", lambda: next(ticks))
    assert gemm_peak(size=64, repeats=3) == pytest.approx(2 * 64 ** 3 / 0.25)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1, got repeats=0"):
        gemm_peak(size=64, repeats=0)
