import mxnet as mx
import numpy as np
import pytest
from _exact import CLASSES, FEATURES, VOCAB, assert_exact, random_batch, set_params

from bucketrnn import BucketLoader, GraphCache
from bucketrnn.models import SequenceTagger, loss_normalizer, tag_batch

MEMORY = ["shared", "static", "dynamic"]
CONFIGS = {
    "unrolled-lstm": dict(cell="unrolled", mode="lstm"),
    "unrolled-lstm-bi-2layers": dict(cell="unrolled", mode="lstm", bidirectional=True,
                                     num_layers=2),
    "unrolled-gru-bi": dict(cell="unrolled", mode="gru", bidirectional=True),
    "fused-lstm-bi-2layers": dict(cell="fused", mode="lstm", bidirectional=True, num_layers=2),
    "fused-gru": dict(cell="fused", mode="gru"),
}


@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_padded_equals_each_sentence_alone(config, memory):
    # loss, logits of the valid steps, final states and gradients (assert_exact compares the
    # logits row by row: the padded row's first n steps against the row run alone).
    factory = SequenceTagger.factory(num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                                     outputs=("loss", "states"), **CONFIGS[config])
    assert_exact(factory, memory, "tag")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_logits_of_valid_steps_equal_the_sentence_alone(bidirectional):
    tagger = SequenceTagger(6, num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                            bidirectional=bidirectional, outputs=("loss", "logits"))
    tagger.initialize()
    set_params(tagger.collect_params(), 1)
    b = random_batch(4, 6, 3, "tag", fill=0)
    loss, logits = tagger(b.data, b.valid_length, b.label, b.weight)
    for i in range(3):
        n = int(b.valid_length[i].asscalar())
        alone = SequenceTagger(n, num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                               bidirectional=bidirectional, outputs=("loss", "logits"),
                               prefix=tagger.prefix, params=tagger.collect_params())
        one_loss, one_logits = alone(b.data[i:i + 1, :n], b.valid_length[i:i + 1],
                                     b.label[i:i + 1, :n], mx.nd.ones(1))
        np.testing.assert_allclose(logits[i, :n].asnumpy(), one_logits[0].asnumpy(),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(loss[i].asscalar(), one_loss.asscalar(), rtol=1e-5)


def test_loss_is_the_summed_token_cross_entropy():
    tagger = SequenceTagger(4, num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                            outputs=("loss", "logits"))
    tagger.initialize()
    b = random_batch(2, 4, 3, "tag", fill=1)
    loss, logits = tagger(b.data, b.valid_length, b.label, b.weight)
    logp = logits.log_softmax(axis=-1).asnumpy()
    label, vl, w = b.label.asnumpy(), b.valid_length.asnumpy(), b.weight.asnumpy()
    want = [-w[r] * sum(logp[r, t, label[r, t]] for t in range(int(vl[r])))
            for r in range(len(vl))]
    np.testing.assert_allclose(loss.asnumpy(), want, rtol=1e-5)
    assert loss.asnumpy()[-1] == 0.0  # the fill row


def test_float_features():
    factory = SequenceTagger.factory(num_classes=CLASSES, input_size=FEATURES, hidden_size=8,
                                     bidirectional=True, outputs=("loss", "states"))
    assert_exact(factory, "shared", "tag", float_data=True)


def test_needs_exactly_one_input_kind():
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        SequenceTagger(4, num_classes=2, hidden_size=8)
    with pytest.raises(ValueError, match="num_classes must be"):
        SequenceTagger(4, num_classes=0, vocab_size=5, hidden_size=8)


def test_factory_carries_the_limits_for_the_loader():
    build = SequenceTagger.factory(num_classes=4, vocab_size=9, hidden_size=8)
    assert (build.vocab_size, build.num_classes) == (9, 4)


def test_tag_batch_predicts_each_real_row_in_order():
    sentences = [([1, 2, 3], [0, 1, 2]), ([4, 5], [1, 1]), ([6, 7, 8, 9, 1], [2, 0, 0, 1, 1])]
    loader = BucketLoader(sentences, batch_size=2, num_buckets=2, task="tag", shuffle=False)
    graphs = GraphCache(SequenceTagger.factory(num_classes=3, vocab_size=10, hidden_size=8,
                                               outputs=("loss", "logits")))
    graphs.initialize(mx.init.Xavier())
    seen = {}
    for batch in loader:
        rows = tag_batch(graphs, batch)
        logits = graphs(batch)[1].asnumpy()
        real = [j for j, i in enumerate(batch.indices) if i >= 0]
        assert len(rows) == len(real) == batch.num_real
        for j, pred in zip(real, rows):
            n = int(batch.valid_length[j].asscalar())
            np.testing.assert_array_equal(pred, logits[j, :n].argmax(-1))
            seen[int(batch.indices[j])] = pred
    assert sorted(seen) == [0, 1, 2]
    assert [len(seen[i]) for i in range(3)] == [3, 2, 5]
    # Every real token once, fill rows never (a fill row would add its padded length).
    assert sum(loss_normalizer(b) for b in loader) == 3 + 2 + 5


def test_tag_sentences_in_input_order_reusing_the_training_graphs():
    from bucketrnn.data.datasets import Vocabulary
    from bucketrnn.models import tag_sentences

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(12)]
    sentences = [list(rng.choice(words, size=n)) for n in rng.integers(1, 12, size=25)]
    sentences.insert(3, [])
    vocab = Vocabulary.build(sentences)
    graphs = GraphCache(SequenceTagger.factory(num_classes=3, vocab_size=len(vocab),
                                               hidden_size=8, bidirectional=True,
                                               outputs=("loss", "logits")))
    graphs.initialize(mx.init.Xavier())
    tagged = tag_sentences(graphs, sentences, vocab, classes=["A", "B", "C"], batch_size=4,
                           num_buckets=3, boundaries=[4, 8, 11])
    assert [len(t) for t in tagged] == [len(s) for s in sentences]
    assert graphs.compiled <= 3  # the given boundaries: no graph beyond them
    # Each sentence alone, unpadded, gives the same tags.
    for s, tags in zip(sentences, tagged):
        if not s:
            continue
        ids = mx.nd.array(vocab.encode(s)[None, :], dtype="int32")
        block = graphs.block(len(s))
        logits = block(ids, mx.nd.array([len(s)], dtype="int32"), mx.nd.zeros((1, len(s))),
                       mx.nd.ones(1))[1]
        assert tags == [["A", "B", "C"][t] for t in logits[0].asnumpy().argmax(-1)]
    ids = tag_sentences(graphs, sentences[:3], vocab)
    assert [t.tolist() for t in ids] == [[["A", "B", "C"].index(x) for x in t]
                                         for t in tagged[:3]]
    assert tag_sentences(graphs, [[]], vocab, classes=["A"]) == [[]]
