"""bucketrnn.tasks: one object per task, asked instead of branching on task names."""

import math

import mxnet as mx
import numpy as np
import pytest

from bucketrnn import BucketLoader
from bucketrnn.models import loss_normalizer
from bucketrnn.tasks import CLASSIFY, LM, SEQ2SEQ, TAG, TASKS, get_task, task_of_model
from bucketrnn.training.metrics import tally


def test_figures_of_a_tally():
    assert LM.figures(tally(loss=6.0, count=3)) == {"loss": 2.0,
                                                    "perplexity": pytest.approx(math.e ** 2)}
    assert CLASSIFY.figures(tally(loss=1.0, count=2, correct=3, rows=4)) == {
        "loss": 0.5, "accuracy": 0.75}
    assert TAG.figures(tally(loss=10.0, count=5, correct=3, rows=5)) == {
        "loss": 2.0, "accuracy": 0.6}
    assert SEQ2SEQ.figures(tally(loss=2.0, count=2))["perplexity"] == pytest.approx(math.e)
    assert math.isnan(LM.figures(tally(skipped=2))["loss"])  # every step skipped


def test_names_and_models_resolve_and_unknown_ones_are_named():
    assert all(get_task(name) is task and get_task(task) is task
               for name, task in TASKS.items())
    assert [task_of_model(m).name for m in ("lstm_lm", "gru_lm", "classifier", "tagger",
                                            "seq2seq")] == ["lm", "lm", "classify", "tag",
                                                            "seq2seq"]
    with pytest.raises(ValueError, match=r"task must be one of \('lm', 'classify', 'tag', "
                                         r"'seq2seq'\), got task='translate'"):
        get_task("translate")
    with pytest.raises(ValueError, match=r"model 'transformer' is not one this bucketrnn knows"):
        task_of_model("transformer")


def test_planned_lengths_follow_the_task():
    assert LM.planned_lengths(np.array([3, 5])).tolist() == [2, 4]
    with pytest.raises(ValueError, match=r"example 1 has 1 token; task='lm' needs at least 2"):
        LM.planned_lengths(np.array([3, 1]))
    assert TAG.planned_lengths(np.array([[3, 3], [4, 4]])).tolist() == [3, 4]
    with pytest.raises(ValueError, match=r"example 1 has 4 tokens but 3 tags"):
        TAG.planned_lengths(np.array([[3, 3], [4, 3]]))
    with pytest.raises(ValueError, match=r"task='classify' does not fit the dataset: its "
                                         r"examples are \(src, tgt\) pairs"):
        CLASSIFY.planned_lengths(np.array([[3, 3]]))
    assert SEQ2SEQ.planned_lengths(np.array([[3, 2]])).tolist() == [[3, 2]]


@pytest.mark.parametrize("task, data", [
    ("lm", [[1, 2, 3, 4], [2, 3], [1, 2, 3], [3, 1, 2, 2, 4]]),
    ("classify", [([1, 2, 3], 0), ([2, 3], 1), ([1, 2, 3, 4, 2], 1)]),
    ("tag", [([1, 2, 3], [0, 1, 0]), ([2, 3], [1, 1]), ([4, 1, 2, 3], [0, 0, 1, 1])]),
    ("seq2seq", [([1, 2, 3], [2, 1]), ([2, 3], [3, 3, 1]), ([1, 2, 3, 4], [1])]),
])
def test_counts_come_with_the_batch_and_equal_the_arrays(task, data):
    # The loader counts on the host while the batch is numpy; the same figures computed from
    # the arrays (what a hand-made batch falls back to) must agree, fill rows left out.
    loader = BucketLoader(data, batch_size=2, num_buckets=1, task=task, shuffle=False)
    spec = get_task(task)
    fill_rows = 0
    for batch in loader:
        assert {"rows", "tokens", "slots"} <= set(batch.meta)
        from_meta = spec.counts(batch)
        batch.meta = {}
        from_arrays = spec.counts(batch)
        assert from_meta[:3] == from_arrays[:3]
        assert (from_meta[3] == from_arrays[3]).all()
        real = from_meta[3]
        fill_rows += int((~real).sum())
        real_tokens = int(batch.valid_length.asnumpy()[real].sum())
        if spec.pairs:  # both sides computed, the loss over the targets
            target = int(batch.label_length.asnumpy()[real].sum())
            assert from_meta[0] == real_tokens + target and from_meta[2] == target
        else:
            assert from_meta[0] == real_tokens
    assert fill_rows == len(data) % 2  # an odd dataset's last batch has one, never counted


def test_loss_normalizer_reads_the_counts_without_the_device():
    loader = BucketLoader([[1, 2, 3], [2, 3, 4, 1], [1, 2]], batch_size=2, num_buckets=1,
                          shuffle=False)
    for batch in loader:
        expected = float((batch.valid_length.asnumpy() * batch.weight.asnumpy()).sum())
        assert loss_normalizer(batch) == expected == batch.meta["tokens"]
        assert loss_normalizer(batch, per="row") == batch.meta["rows"]
        # No device array is read when the counts came with the batch.
        batch.valid_length = batch.weight = mx.nd.array([float("nan")] * 2)
        assert loss_normalizer(batch) == expected


def test_counts_that_no_longer_describe_the_batch_are_not_used():
    from dataclasses import replace

    from bucketrnn.graphs.cache import batch_like

    loader = BucketLoader([[1, 2, 3], [2, 3, 4, 1], [1, 2], [3, 3, 2]], batch_size=4,
                          num_buckets=1, shuffle=False)
    batch = next(iter(loader))
    assert loss_normalizer(batch) == batch.meta["tokens"] == 8  # 2 + 3 + 1 + 2
    # Two rows kept by hand: the loader's counts are of four, so the arrays are counted.
    half = replace(batch, data=batch.data[:2], valid_length=batch.valid_length[:2],
                   label=batch.label[:2], weight=batch.weight[:2], indices=batch.indices[:2])
    assert loss_normalizer(half) == float(batch.valid_length.asnumpy()[:2].sum())
    assert LM.counts(half)[0] == int(batch.valid_length.asnumpy()[:2].sum())
    # A batch made from another is not counted as that one; a copy has a meta of its own.
    bigger = batch_like(batch, 5, 6)
    assert bigger.meta == {} and loss_normalizer(bigger) == 30.0
    copy = batch.as_in_context(mx.cpu())
    copy.meta["tokens"] = -1
    assert batch.meta["tokens"] == 8
