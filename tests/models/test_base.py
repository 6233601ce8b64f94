import mxnet as mx
import numpy as np
import pytest

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


def test_validate_inputs_checks_token_ids_on_numpy_batches():
    lm = LanguageModel(5, vocab_size=VOCAB, hidden_size=8)
    data, vl, label, weight = lm_arrays()
    indices = np.array([10, 11, 12])
    lm.validate_inputs(mx.cpu(), data, vl, label, weight, indices=indices)
    bad = data.copy()
    bad[1, 1] = VOCAB
    with pytest.raises(ValueError, match=r"token id 20 at dataset index 11, step 1 is out of "
                                         r"range for vocab_size=20: it must be in \[0, 20\); "
                                         r"map unknown tokens"):
        lm.validate_inputs(mx.cpu(), bad, vl, label, weight, indices=indices)
    bad = data.copy()
    bad[2, 0] = -3
    with pytest.raises(ValueError, match="token id -3 at dataset index 12, step 0"):
        lm.validate_inputs(mx.cpu(), bad, vl, label, weight, indices=indices)
    bad = label.copy()
    bad[0, 4] = 99
    with pytest.raises(ValueError, match="next-token label 99 at row 0 of the batch, step 4"):
        lm.validate_inputs(mx.cpu(), data, vl, bad, weight)
    # Padded steps (past valid_length) and fill rows (index -1) may hold anything.
    pad = data.copy()
    pad[1, 3] = 999
    pad[2] = -1
    lm.validate_inputs(mx.cpu(), pad, vl, label, weight, indices=np.array([10, 11, -1]))


def test_validate_inputs_checks_class_labels_on_numpy_batches():
    clf = SequenceClassifier(5, num_classes=3, vocab_size=VOCAB, hidden_size=8)
    data, vl, _, weight = lm_arrays()
    indices = np.array([4, 5, 6])
    clf.validate_inputs(mx.cpu(), data, vl, np.array([0, 2, 1]), weight, indices=indices)
    with pytest.raises(ValueError, match=r"label 3 at dataset index 5 is out of range for "
                                         r"num_classes=3: it must be in \[0, 3\); fix the labels"):
        clf.validate_inputs(mx.cpu(), data, vl, np.array([0, 3, 1]), weight, indices=indices)
    with pytest.raises(ValueError, match="label -1 at dataset index 6 is out of range"):
        clf.validate_inputs(mx.cpu(), data, vl, np.array([0, 1, -1]), weight, indices=indices)
    with pytest.raises(ValueError, match=r"label 1.5 at dataset index 4 is not an integer"):
        clf.validate_inputs(mx.cpu(), data, vl, np.array([1.5, 1, 0], np.float32), weight,
                            indices=indices)


def test_ndarray_inputs_get_no_range_check_and_no_sync():
    # Ranges of NDArrays are the loader's job (on the host): reading them here would block on
    # the device every step. The shape and dtype checks still run.
    lm = LanguageModel(5, vocab_size=VOCAB, hidden_size=8)
    data, vl, label, weight = lm_arrays()
    data[0, 0] = VOCAB + 5
    lm.validate_inputs(mx.cpu(), *(mx.nd.array(a, dtype=a.dtype)
                                   for a in (data, vl, label, weight)))
