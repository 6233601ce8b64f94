import mxnet as mx
import numpy as np
import pytest
from _exact import VOCAB, assert_exact, random_batch

from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import LanguageModel, loss_normalizer

MEMORY = ["shared", "static", "dynamic"]
CONFIGS = {
    "unrolled-lstm-2layers": dict(cell="unrolled", mode="lstm", num_layers=2),
    "unrolled-gru-tied": dict(cell="unrolled", mode="gru", tie_weights=True),
    "fused-lstm-2layers": dict(cell="fused", mode="lstm", num_layers=2),
    "fused-gru": dict(cell="fused", mode="gru"),
    "foreach-lstm-2layers": dict(cell="foreach", mode="lstm", num_layers=2),
    "foreach-gru-tied": dict(cell="foreach", mode="gru", tie_weights=True),
}


@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_padded_equals_each_sequence_alone(config, memory):
    def factory():
        return LanguageModel.factory(vocab_size=VOCAB, hidden_size=8,
                                     outputs=("loss", "states"), **CONFIGS[config])

    assert_exact(factory(), memory, "lm", reference=factory())


def test_states_are_per_layer():
    lm = LanguageModel(4, vocab_size=VOCAB, hidden_size=8, num_layers=2,
                       outputs=("loss", "logits", "states"))
    lm.initialize()
    b = random_batch(0, 4, 3, "lm", fill=0)
    loss, logits, *states = lm(b.data, b.valid_length, b.label, b.weight)
    assert loss.shape == (3,) and logits.shape == (3, 4, VOCAB)
    assert [s.shape for s in states] == [(3, 8)] * 4  # [h, c] per layer


def test_tied_weights_share_one_array():
    lm = LanguageModel(4, vocab_size=VOCAB, hidden_size=8, tie_weights=True)
    names = list(lm.collect_params())
    assert not any("out_weight" in n for n in names)


def test_factory_shares_parameters_across_lengths():
    build = LanguageModel.factory(vocab_size=VOCAB, hidden_size=8)
    a, b = build(3), build(7)
    pa, pb = a.collect_params(), b.collect_params()
    assert list(pa) == list(pb)
    assert all(pa[n] is pb[n] for n in pa)


def test_loss_normalizer_counts_real_tokens_only():
    b = random_batch(1, 6, 3, "lm", fill=2)
    vl = b.valid_length.asnumpy()[:3]
    assert loss_normalizer(b) == pytest.approx(vl.sum())
    assert loss_normalizer(b, per="row") == 3
    with pytest.raises(ValueError, match="per must be 'token' or 'row', got per='word'"):
        loss_normalizer(b, per="word")


def test_float_data_is_refused_for_an_embedding_model():
    b = random_batch(0, 5, 2, "lm")
    graphs = GraphCache(LanguageModel.factory(vocab_size=VOCAB, hidden_size=8), keys=[5])
    graphs.initialize()
    b.data = b.data.astype("float32")
    with pytest.raises(TypeError, match="integer token ids .* got data dtype float32"):
        graphs(b)
    lm = graphs.block(5)
    with pytest.raises(TypeError, match="integer token ids"):
        lm(b.data, b.valid_length, b.label, b.weight)


def test_use_sequence_length_is_refused_on_cpu():
    graphs = GraphCache(LanguageModel.factory(vocab_size=VOCAB, hidden_size=8, cell="fused",
                                              use_sequence_length=True), keys=[5])
    graphs.initialize()
    with pytest.raises(ValueError, match=r"use_sequence_length=True is not supported on cpu"):
        graphs(random_batch(0, 5, 2, "lm"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(vocab_size=0), "vocab_size must be an integer >= 1, got vocab_size=0"),
        (dict(vocab_size=5, mode="rnn"), "mode must be one of .* got mode='rnn'"),
        (dict(vocab_size=5, cell="cudnn"), "cell must be one of .* got cell='cudnn'"),
        (dict(vocab_size=5, dropout=1.5), r"dropout must be in \[0, 1\), got dropout=1.5"),
        (dict(vocab_size=5, embed_size=4, tie_weights=True), "tie_weights=True needs"),
        (dict(vocab_size=5, use_sequence_length=True), "applies to cell='fused' only"),
        (dict(vocab_size=5, outputs=("loss", "probs")), "outputs must be a non-empty subset"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LanguageModel(4, hidden_size=8, **kwargs)


def test_wrong_length_is_refused():
    lm = LanguageModel(4, vocab_size=VOCAB, hidden_size=8)
    lm.initialize()
    b = random_batch(0, 6, 2, "lm")
    with pytest.raises(ValueError, match=r"data must be shaped \(batch, 4, ...\).*\(3, 6\)"):
        lm(b.data, b.valid_length, b.label, b.weight)


def test_dropout_is_active_in_training_only():
    lm = LanguageModel(6, vocab_size=VOCAB, hidden_size=8, dropout=0.5, num_layers=1,
                       tie_weights=False)
    lm.initialize()
    b = random_batch(0, 6, 3, "lm")
    args = (b.data, b.valid_length, b.label, b.weight)
    np.testing.assert_array_equal(lm(*args).asnumpy(), lm(*args).asnumpy())
    with mx.autograd.train_mode():
        assert not np.allclose(lm(*args).asnumpy(), lm(*args).asnumpy())
