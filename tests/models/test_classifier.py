import mxnet as mx
import numpy as np
import pytest
from _exact import CLASSES, FEATURES, VOCAB, assert_exact, random_batch, set_params

from bucketrnn.models import SequenceClassifier

MEMORY = ["shared", "static", "dynamic"]
CONFIGS = {
    "unrolled-lstm": dict(cell="unrolled", mode="lstm"),
    "unrolled-lstm-bi-2layers": dict(cell="unrolled", mode="lstm", bidirectional=True,
                                     num_layers=2),
    "unrolled-gru-bi": dict(cell="unrolled", mode="gru", bidirectional=True),
    "fused-lstm-bi-2layers": dict(cell="fused", mode="lstm", bidirectional=True, num_layers=2),
    "fused-gru": dict(cell="fused", mode="gru"),
    "foreach-lstm-bi-2layers": dict(cell="foreach", mode="lstm", bidirectional=True,
                                    num_layers=2),
    "foreach-gru-bi": dict(cell="foreach", mode="gru", bidirectional=True),
}


@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_padded_equals_each_sequence_alone(config, memory):
    def factory():
        return SequenceClassifier.factory(num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                                          outputs=("loss", "states"), **CONFIGS[config])

    assert_exact(factory(), memory, "clf", reference=factory())


@pytest.mark.parametrize("cell", ["unrolled", "fused", "foreach"])
def test_float_features_bidirectional(cell):
    def factory():
        return SequenceClassifier.factory(num_classes=CLASSES, input_size=FEATURES,
                                          hidden_size=8, bidirectional=True, cell=cell,
                                          outputs=("loss", "logits", "states"))

    assert_exact(factory(), "shared", "clf", float_data=True, reference=factory())


def test_reverse_direction_reads_the_valid_part_only():
    # Same valid tokens, different garbage in the padding: identical results.
    clf = SequenceClassifier(6, num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                             bidirectional=True, outputs=("logits",))
    clf.initialize()
    set_params(clf.collect_params(), 3)
    b = random_batch(2, 6, 4, "clf", fill=0)
    noisy = b.data.asnumpy()
    vl = b.valid_length.asnumpy()
    noisy[np.arange(6)[None, :] >= vl[:, None]] = 7
    args = (b.valid_length, b.label, b.weight)
    clean = clf(b.data, *args).asnumpy()
    np.testing.assert_allclose(clf(mx.nd.array(noisy, dtype="int32"), *args).asnumpy(), clean,
                               rtol=1e-6)


def test_needs_exactly_one_input_kind():
    with pytest.raises(ValueError, match="exactly one of vocab_size .* or input_size"):
        SequenceClassifier(4, num_classes=2, hidden_size=8)
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        SequenceClassifier(4, num_classes=2, vocab_size=5, input_size=3, hidden_size=8)


def test_int_data_is_refused_for_a_feature_model():
    clf = SequenceClassifier(5, num_classes=2, input_size=FEATURES, hidden_size=8)
    clf.initialize()
    b = random_batch(0, 5, 2, "clf")
    with pytest.raises(TypeError, match="float features .* got data dtype int32"):
        clf(b.data, b.valid_length, b.label, b.weight)
