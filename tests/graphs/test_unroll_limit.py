"""GraphCache's unroll_limit: outside training, a key too long to unroll runs on the factory's
length-agnostic twin (the same model with cell="foreach", on the same parameters)."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from bucketrnn import Batch, GraphTooLargeError
from bucketrnn.data.datasets import Vocabulary
from bucketrnn.graphs.cache import UNROLL_LIMIT, GraphCache
from bucketrnn.models import (
    LanguageModel,
    Seq2Seq,
    SequenceClassifier,
    SequenceTagger,
    tag_sentences,
)

VOCAB, CLASSES = 20, 3
MODELS = {
    "lm": lambda **kw: LanguageModel.factory(vocab_size=VOCAB, hidden_size=8, **kw),
    "classify": lambda **kw: SequenceClassifier.factory(num_classes=CLASSES, vocab_size=VOCAB,
                                                        hidden_size=8, **kw),
    "classify-bi-gru-2": lambda **kw: SequenceClassifier.factory(
        num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8, num_layers=2, mode="gru",
        bidirectional=True, **kw),
    "tag-bi": lambda **kw: SequenceTagger.factory(num_classes=CLASSES, vocab_size=VOCAB,
                                                  hidden_size=8, bidirectional=True, **kw),
}


def _batch(task, length, seed=0):
    """Two real rows (one of the whole length, one shorter) and a fill row."""
    rng = np.random.default_rng(seed)
    vl = np.array([length, max(1, length // 3), length])
    data = rng.integers(0, VOCAB, (3, length))
    data[np.arange(length)[None, :] >= vl[:, None]] = 0
    if task == "classify":
        label = rng.integers(0, CLASSES, 3)
    else:
        label = rng.integers(0, VOCAB if task == "lm" else CLASSES, (3, length))
    return Batch(bucket_key=length, data=mx.nd.array(data, dtype="int32"),
                 valid_length=mx.nd.array(vl, dtype="int32"),
                 label=mx.nd.array(label, dtype="int32"), weight=mx.nd.array([1, 1, 0]),
                 indices=np.array([0, 1, -1]))


def _initialized(build, **kwargs):
    graphs = GraphCache(build, **kwargs)
    rng = np.random.default_rng(0)
    for p in graphs.collect_params().values():
        p.initialize(ctx=mx.cpu())
        p.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, p.shape), dtype=p.dtype))
    return graphs


@pytest.mark.parametrize("memory", ["shared", "static", "dynamic"])
@pytest.mark.parametrize("model", list(MODELS))
def test_a_key_past_the_limit_runs_on_the_twin_with_the_unrolled_results(model, memory):
    build = MODELS[model](outputs=("loss", "logits"))
    graphs = _initialized(build, memory=memory, unroll_limit=8)
    unrolled = GraphCache(build, memory=memory, unroll_limit=None)  # same factory: same params
    task = model.split("-")[0]
    for key in (5, 8, 30):
        got = [o.asnumpy() for o in graphs(_batch(task, key))]
        want = [o.asnumpy() for o in unrolled(_batch(task, key))]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # Keys up to the limit are unrolled as ever (the same graphs: the same results); the one
    # past it ran on the one length-agnostic graph, not on an unrolled graph of 30 steps.
    assert graphs.keys == [8, 5] and graphs.long_keys == [30]
    assert graphs.compiled == 3 and graphs.steps == {5: 1, 8: 1, 30: 1}
    assert "long_keys=[30] (on the length-agnostic twin)" in repr(graphs)
    twin = graphs._twin.block(30)
    assert twin.length_agnostic and twin is build.any_length(99)
    assert all(twin.collect_params()[name] is p for name, p in graphs.collect_params().items())


def test_training_always_unrolls_and_a_key_compiled_by_training_keeps_its_graph():
    build = MODELS["lm"]()
    graphs = _initialized(build, unroll_limit=8)
    with autograd.record():
        loss = graphs(_batch("lm", 30))
    loss.backward()
    assert graphs.keys == [30] and graphs.long_keys == []
    graphs(_batch("lm", 30))  # evaluation after training: the graph training compiled
    graphs(_batch("lm", 31))  # a key training never saw: the twin
    assert graphs.keys == [30] and graphs.long_keys == [31]


def test_export_with_only_long_keys_run_says_they_ran_on_the_twin(tmp_path):
    graphs = _initialized(MODELS["lm"](), unroll_limit=8)
    graphs(_batch("lm", 30))
    assert graphs.compiled == 1 and graphs.keys == []
    with pytest.raises(ValueError, match=r"nothing to export: no graph compiled yet; the keys "
                                         r"run so far \(\[30\]\) ran on the length-agnostic twin"):
        graphs.export(str(tmp_path / "m"))


def test_the_default_limit_and_none():
    assert GraphCache(MODELS["lm"]()).unroll_limit == UNROLL_LIMIT == 2048
    graphs = _initialized(MODELS["lm"](), unroll_limit=None)
    graphs(_batch("lm", 30))
    assert graphs.keys == [30] and graphs.long_keys == []


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "auto", float("nan")])
def test_unroll_limit_must_be_a_step_count_or_none(bad):
    with pytest.raises(ValueError, match=r"unroll_limit must be a number of steps >= 1 or None, "
                                         rf"got unroll_limit={bad!r}"):
        GraphCache(MODELS["lm"](), unroll_limit=bad)


def test_the_twin_is_held_to_the_memory_limit():
    graphs = _initialized(MODELS["classify"](), unroll_limit=8)
    graphs.memory_limit = 1000  # bytes, set after the cache was made
    with pytest.raises(GraphTooLargeError, match=r"the graph of bucket_key=30 with 3 rows"):
        graphs(_batch("classify", 30))


def test_models_without_a_twin_say_so_before_any_graph_is_built():
    pairs = GraphCache(Seq2Seq.factory(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB,
                                       hidden_size=8), unroll_limit=16)
    assert Seq2Seq.factory(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB).any_length is None
    assert pairs.unrolls_too_long((10, 7)) and not pairs.unrolls_too_long((8, 8))
    custom = GraphCache(lambda n: SequenceClassifier(n, num_classes=2, vocab_size=VOCAB,
                                                     hidden_size=8), unroll_limit=16)
    assert custom.unrolls_too_long(17) and not custom.unrolls_too_long(16)
    assert not GraphCache(MODELS["classify"](), unroll_limit=16).unrolls_too_long(10**6)
    assert not GraphCache(MODELS["classify"](cell="fused")).unrolls_too_long(10**6)
    assert not GraphCache(MODELS["classify"](cell="foreach")).unrolls_too_long(10**6)
    assert not GraphCache(lambda n: SequenceClassifier(n, num_classes=2, vocab_size=VOCAB),
                          unroll_limit=None).unrolls_too_long(10**6)
    assert pairs.keys == [] and custom.keys == []


def test_tag_sentences_runs_a_long_sentence_on_the_twin():
    vocab = Vocabulary.build([[f"w{i}" for i in range(10)]])
    build = SequenceTagger.factory(num_classes=2, vocab_size=len(vocab), hidden_size=8,
                                   outputs=("loss", "logits"))
    graphs = _initialized(build, unroll_limit=16)
    rng = np.random.default_rng(1)
    sentences = [[f"w{i}" for i in rng.integers(0, 10, n)] for n in (3, 5, 40)]
    got = tag_sentences(graphs, sentences, vocab, classes=["A", "B"], boundaries=[3, 5])
    want = tag_sentences(GraphCache(build, unroll_limit=None), sentences, vocab,
                         classes=["A", "B"], boundaries=[3, 5])
    assert got == want and [len(t) for t in got] == [3, 5, 40]
    assert graphs.keys == [5, 3] and graphs.long_keys == [40]


def test_a_frozen_cache_refuses_a_long_key_it_was_not_given():
    graphs = _initialized(MODELS["lm"](), unroll_limit=8, keys=[5], frozen=True)
    graphs(_batch("lm", 5))
    with pytest.raises(ValueError, match=r"no graph for bucket_key=30: the cache is frozen"):
        graphs(_batch("lm", 30))
    assert graphs.long_keys == []


class _Pinned(SequenceClassifier):
    """A subclass whose constructor fixes the cell: its twin (cell="foreach") cannot be built."""

    def __init__(self, length, **kwargs):
        super().__init__(length, cell="unrolled", **kwargs)


def test_a_model_whose_twin_cannot_be_built_is_unrolled_with_a_warning():
    build = _Pinned.factory(num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8)
    graphs = _initialized(build, unroll_limit=8)
    plain = _initialized(_Pinned.factory(num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8),
                         unroll_limit=None)
    with pytest.warns(RuntimeWarning, match=r"length-agnostic twin \(any_length\) could not be "
                                            r"built \(TypeError: .*\); key 30 is unrolled"):
        out = graphs(_batch("classify", 30))
    np.testing.assert_allclose(out[1].asnumpy(), plain(_batch("classify", 30))[1].asnumpy(),
                               rtol=1e-6)
    assert graphs.long_keys == [] and graphs.unrolls_too_long(40)
