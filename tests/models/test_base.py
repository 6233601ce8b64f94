import mxnet as mx
import numpy as np

from bucketrnn import BucketLoader
from bucketrnn.models import LanguageModel, SequenceClassifier, loss_normalizer

VOCAB = 20

# (src, tgt) pairs whose target lengths differ from their source lengths.
PAIRS = [([1, 2, 3], [4, 5]), ([1, 2], [3, 4, 5, 6]), ([1], [2]), ([1, 2, 3, 4], [5, 6, 7]),
         ([5, 6], [7, 8, 9, 1, 2])]
TARGET_TOKENS = 2 + 4 + 1 + 3 + 5
SOURCE_TOKENS = 3 + 2 + 1 + 4 + 2


def test_loss_normalizer_counts_target_tokens_of_real_rows_on_pairs():
    loader = BucketLoader(PAIRS, batch_size=2, num_buckets=1, task="seq2seq")
    batches = list(loader)
    assert sum(b.num_real for b in batches) == len(PAIRS)
    assert any(b.num_real < b.batch_size for b in batches)  # a fill row is not counted
    for b in batches:
        real = [i for i in b.indices.tolist() if i >= 0]
        assert loss_normalizer(b) == sum(len(PAIRS[i][1]) for i in real)
        assert loss_normalizer(b, per="row") == len(real)
    total = sum(loss_normalizer(b) for b in batches)
    assert total == TARGET_TOKENS != SOURCE_TOKENS


def test_models_and_factories_declare_vocab_size_and_num_classes():
    lm = LanguageModel(4, vocab_size=VOCAB, hidden_size=8)
    clf = SequenceClassifier(4, num_classes=3, vocab_size=VOCAB, hidden_size=8)
    feats = SequenceClassifier(4, num_classes=3, input_size=5, hidden_size=8)
    assert (lm.vocab_size, lm.num_classes) == (VOCAB, None)
    assert (clf.vocab_size, clf.num_classes) == (VOCAB, 3)
    assert (feats.vocab_size, feats.num_classes) == (None, 3)
    for block, build in [
        (lm, LanguageModel.factory(vocab_size=VOCAB, hidden_size=8)),
        (clf, SequenceClassifier.factory(num_classes=3, vocab_size=VOCAB, hidden_size=8)),
        (feats, SequenceClassifier.factory(num_classes=3, input_size=5, hidden_size=8)),
    ]:
        assert (build.vocab_size, build.num_classes) == (block.vocab_size, block.num_classes)
        built = build(6)
        assert (built.vocab_size, built.num_classes) == (block.vocab_size, block.num_classes)


def test_mxnet_embedding_and_pick_clip_out_of_range_ids_on_cpu():
    # The fact the BucketModel notes state: MXNet does not fail, it reads a wrong row.
    weight = mx.nd.array(np.arange(12).reshape(4, 3))
    ids = mx.nd.array([4, 9, -1], dtype="int32")
    got = mx.nd.Embedding(ids, weight, input_dim=4, output_dim=3).asnumpy()
    np.testing.assert_array_equal(got, weight.asnumpy()[[3, 3, 0]])
    scores = mx.nd.array([[0, 1, 2], [3, 4, 5]])
    assert mx.nd.pick(scores, mx.nd.array([3, 1.7]), axis=-1).asnumpy().tolist() == [2, 4]


def lm_arrays(rows=3, length=5, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, VOCAB, (rows, length)).astype(np.int32)
    label = rng.integers(0, VOCAB, (rows, length)).astype(np.int32)
    vl = np.array([length, 2, 3][:rows], dtype=np.int32)
    return data, vl, label, np.ones(rows, np.float32)
