"""task='tag': per-token labels through PadToBucket and BucketLoader, and token accuracy."""

import numpy as np
import pytest

from bucketrnn import BucketLoader, FlatSequences, PadToBucket
from bucketrnn.tasks import TAG
from bucketrnn.training.metrics import tally, token_accuracy, token_counts

SENTENCES = [([1, 2, 3], [0, 1, 2]), ([4, 5], [1, 1]), ([6, 7, 8, 9], [2, 0, 0, 1])]


def test_tags_are_padded_like_the_tokens_with_the_label_pad():
    pad = PadToBucket(keys=(4,), task="tag", pad_val=7, output="numpy")
    batch = pad([(0, 0, SENTENCES[0]), (1, 0, SENTENCES[1]), (-1, 0, SENTENCES[0])])
    assert batch.data.tolist() == [[1, 2, 3, 7], [4, 5, 7, 7], [1, 2, 3, 7]]
    assert batch.label.tolist() == [[0, 1, 2, 0], [1, 1, 0, 0], [0, 1, 2, 0]]
    assert batch.label.dtype == np.int32
    assert batch.valid_length.tolist() == [3, 2, 3] and batch.weight.tolist() == [1, 1, 0]


def test_truncate_cuts_tags_with_their_tokens():
    pad = PadToBucket(keys=(2,), task="tag", truncate=True, output="numpy")
    batch = pad([(2, 0, SENTENCES[2])])
    assert batch.data.tolist() == [[6, 7]] and batch.label.tolist() == [[2, 0]]


@pytest.mark.parametrize("example, error, match", [
    (([1, 2, 3], [0, 1]), ValueError, "example 5 has 3 tokens but 2 tags; task='tag' needs "
                                      "exactly one tag per token"),
    (([1, 2], 1), ValueError, r"example 5 has 2 tokens but tags 1 \(not a sequence\)"),
    (([1, 2], [0.5, 1]), TypeError, "example 5 has tags of dtype float64 .* one integer class "
                                    "id per token"),
    (([1, 2], ["NN", "DT"]), TypeError, "example 5 has tags of dtype <U2"),
    (([1, 2], [0, -1]), ValueError, "example 5 has tag -1"),
])
def test_bad_tags_name_the_example(example, error, match):
    pad = PadToBucket(keys=(4,), task="tag")
    with pytest.raises(error, match=match):
        pad([(0, 0, SENTENCES[0]), (5, 0, example)])


def test_num_classes_checks_tags_on_the_host():
    pad = PadToBucket(keys=(4,), task="tag", num_classes=2)
    with pytest.raises(ValueError, match=r"example 3 has tag 2, outside \[0, 2\) for "
                                         "num_classes=2"):
        pad([(1, 0, SENTENCES[1]), (3, 0, SENTENCES[0])])
    assert PadToBucket(keys=(4,), task="tag", num_classes=3)([(0, 0, SENTENCES[0])]) \
        .label.shape == (1, 4)
    with pytest.raises(ValueError, match="num_classes is for task='classify' labels and "
                                         "task='tag' tags"):
        PadToBucket(keys=(4,), task="lm", num_classes=3)


def _batches(loader):
    out = {}
    for b in loader:
        for j, i in enumerate(b.indices):
            if i >= 0:
                n = int(b.valid_length[j].asscalar())
                out[int(i)] = (b.data[j].asnumpy()[:n].tolist(), b.label[j].asnumpy().tolist(),
                               b.bucket_key)
    return out


@pytest.mark.parametrize("flat", [False, True])
def test_loader_plays_every_sentence_with_its_tags(flat):
    ds = SENTENCES
    if flat:
        ds = FlatSequences.from_sequences([s for s, _ in SENTENCES],
                                          tags=[t for _, t in SENTENCES])
    loader = BucketLoader(ds, batch_size=2, num_buckets=2, task=None if flat else "tag",
                          num_classes=3, seed=1)
    assert loader.task == "tag" and loader.lengths.tolist() == [3, 2, 4]
    got = _batches(loader)
    for i, (tokens, tags) in enumerate(SENTENCES):
        data, label, key = got[i]
        assert data == tokens
        assert label == tags + [0] * (key - len(tags))


def test_flat_dataset_with_tags_subsets_and_checks():
    ds = FlatSequences.from_sequences([s for s, _ in SENTENCES], tags=[t for _, t in SENTENCES])
    sub = ds.subset([2, 0])
    assert sub[0][0].tolist() == [6, 7, 8, 9] and sub[0][1].tolist() == [2, 0, 0, 1]
    assert sub[1][1].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="sequence 1 has 2 tokens but 1 tags"):
        FlatSequences.from_sequences([[1], [2, 3]], tags=[[0], [1]])
    with pytest.raises(ValueError, match="tags must be integer class ids, one per token"):
        FlatSequences(ds.tokens, ds.offsets, tags=ds.tags[:-1])
    with pytest.raises(ValueError, match="tags must be integer class ids, one per token: .* "
                                         "dtype float64"):
        FlatSequences.from_sequences([[1, 2]], tags=[[0.5, 1.0]])
    with pytest.raises(ValueError, match="tags must be class ids >= 0 .*, got tag -2"):
        FlatSequences(ds.tokens, ds.offsets, tags=ds.tags - 2)
    with pytest.raises(ValueError, match="labels .* or tags .*, not both"):
        FlatSequences(ds.tokens, ds.offsets, labels=[0, 1, 0], tags=ds.tags)
    with pytest.raises(TypeError, match="task='tag' needs .* this flat dataset has no tags"):
        list(BucketLoader(FlatSequences.from_sequences([[1, 2]]), task="tag", num_buckets=1))


def test_loader_refuses_tags_of_another_length_before_any_batch():
    with pytest.raises(ValueError, match=r"example 1 has 2 tokens but 3 tags; task='tag' needs "
                                         r"exactly one tag per token \(1 example\(s\) differ\)"):
        BucketLoader([SENTENCES[0], ([1, 2], [0, 0, 0])], task="tag")


def test_token_counts_by_hand():
    # Two real rows and a fill row; row 0 has 2 valid steps of 3, row 1 all 3.
    logits = np.zeros((3, 3, 2))
    logits[0, :, 1] = 1  # predicts 1 1 1; labels 1 0 (1): one of two valid tokens right
    logits[1, :, 0] = 1  # predicts 0 0 0; labels 0 0 1: two of three right
    logits[2, :, 1] = 1  # the fill row: never counted
    label = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 1]])
    assert token_counts(logits, label, [2, 3, 3], weight=[1, 1, 0]) == (3, 5)
    assert token_accuracy(logits, label, [2, 3, 3], weight=[1, 1, 0]) == pytest.approx(0.6)
    assert token_counts(logits, label, [2, 3, 3]) == (6, 8)
    import mxnet as mx

    assert token_counts(mx.nd.array(logits), mx.nd.array(label), mx.nd.array([2, 3, 3]),
                        mx.nd.array([1, 1, 0])) == (3, 5)
    assert np.isnan(token_accuracy(logits, label, [0, 0, 0]))
    with pytest.raises(ValueError, match=r"logits must be \(B, L, C\) and label \(B, L\)"):
        token_counts(logits[:, :, 0], label, [1, 1, 1])
    # The loop's tally: rows count tokens for task='tag'.
    assert TAG.figures(tally(loss=10.0, count=5, correct=3, rows=5)) == \
        {"loss": 2.0, "accuracy": 0.6}


def test_train_loop_reports_loss_and_accuracy_per_real_token():
    from bucketrnn import GraphCache
    from bucketrnn.models import SequenceTagger
    from bucketrnn.training.loop import TrainLoop

    rng = np.random.default_rng(0)
    data = []
    for n in rng.integers(1, 9, size=40):
        tokens = rng.integers(1, 10, size=n)
        data.append((tokens, (tokens % 3).astype(np.int32)))  # the tag follows from the token
    loader = BucketLoader(data, batch_size=8, num_buckets=3, task="tag", seed=0)
    build = SequenceTagger.factory(num_classes=3, vocab_size=10, hidden_size=8,
                                   outputs=("loss", "logits"))
    loop = TrainLoop(build, loader, epochs=3, progress=False,
                     optimizer_params={"learning_rate": 0.05})
    assert loader.num_classes == 3 and loader.vocab_size == 10  # the model's limits
    history = loop.fit()
    assert history["epochs"][-1]["train_accuracy"] > history["epochs"][0]["train_accuracy"]
    evaluation = loop.evaluate(loader)
    # By hand: the same pass, summed loss over real tokens, correct over real tokens.
    graphs = loop.graphs
    assert isinstance(graphs, GraphCache)
    loss = correct = tokens = 0.0
    loader.set_epoch(0)
    for batch in loader:
        out = graphs(batch)
        loss += float(out[0].sum().asscalar())
        c, n = token_counts(out[1], batch.label, batch.valid_length, batch.weight)
        correct, tokens = correct + c, tokens + n
    assert tokens == sum(len(t) for t, _ in data)
    assert evaluation["loss"] == pytest.approx(loss / tokens, rel=1e-5)
    assert evaluation["accuracy"] == pytest.approx(correct / tokens)
