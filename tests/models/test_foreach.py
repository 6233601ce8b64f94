"""cell="foreach": one length-agnostic graph for every bucket key, interchangeable with
"unrolled" (same parameters, same results). Exactness under padding is in the model tests."""

import glob

import mxnet as mx
import numpy as np
import pytest
from _exact import CLASSES, VOCAB, random_batch, set_params, step

from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import LanguageModel, RecurrentEncoder, SequenceClassifier

MEMORY = ["shared", "static", "dynamic"]
LENGTHS = [9, 4, 6, 9, 2]


def lm_factory(cell, **kwargs):
    return LanguageModel.factory(vocab_size=VOCAB, hidden_size=8, num_layers=2, cell=cell,
                                 outputs=("loss", "states"), **kwargs)


def count_traces(block):
    """Wrap ``block.hybrid_forward`` to count the times it is traced into a symbol."""
    traces = []
    original = block.hybrid_forward

    def traced(F, *args, **kwargs):
        if F is mx.sym:
            traces.append(1)
        return original(F, *args, **kwargs)

    block.hybrid_forward = traced
    return traces


@pytest.mark.parametrize("memory", MEMORY)
def test_one_graph_serves_every_bucket_length(memory):
    graphs = GraphCache(lm_factory("foreach"), memory=memory)
    unrolled = GraphCache(lm_factory("unrolled"), memory="dynamic")
    set_params(graphs.collect_params(), 1)
    set_params(unrolled.collect_params(), 1)
    traces = count_traces(graphs.block(LENGTHS[0]))
    for seed, length in enumerate(LENGTHS):
        batch = random_batch(seed, length, 3, "lm")
        got, got_grads = step(graphs, batch)
        want, want_grads = step(unrolled, batch)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        for name, g in want_grads.items():
            np.testing.assert_allclose(got_grads[name], g, rtol=1e-4, atol=1e-6, err_msg=name)
    # Traced once for every key: under "shared" the symbol the executors bind (and the memory
    # estimate reads); "static"/"dynamic" trace it once more inside Gluon's CachedOp.
    assert graphs.compiled == len(graphs) == 1
    assert len(traces) == (1 if memory == "shared" else 2)
    assert graphs.keys == [9, 6, 4, 2] and graphs.steps == {9: 2, 6: 1, 4: 1, 2: 1}
    assert unrolled.compiled == 4
    assert graphs.length_agnostic and not unrolled.length_agnostic
    assert "compiled=1 (length-agnostic: one graph for 4 keys)" in repr(graphs)
    assert len({id(graphs.block(k)) for k in LENGTHS}) == 1


def test_foreach_and_unrolled_parameters_are_interchangeable():
    foreach, unrolled = lm_factory("foreach")(5), lm_factory("unrolled")(5)
    pf, pu = foreach.collect_params(), unrolled.collect_params()
    assert list(pf) == list(pu)
    assert [p.shape for p in pf.values()] == [p.shape for p in pu.values()]


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_bidirectional_classifier_matches_unrolled(mode):
    def factory(cell):
        return SequenceClassifier.factory(num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                                          bidirectional=True, num_layers=2, mode=mode, cell=cell,
                                          outputs=("loss", "logits", "states"))

    graphs = GraphCache(factory("foreach"), memory="static")
    unrolled = GraphCache(factory("unrolled"), memory="dynamic")
    set_params(graphs.collect_params(), 2)
    set_params(unrolled.collect_params(), 2)
    for seed, length in enumerate([7, 3, 5]):
        batch = random_batch(seed, length, 4, "clf")
        got, got_grads = step(graphs, batch)
        want, want_grads = step(unrolled, batch)
        assert len(got) == 2 + 2 * 2 * (2 if mode == "lstm" else 1)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        for name, g in want_grads.items():
            np.testing.assert_allclose(got_grads[name], g, rtol=1e-4, atol=1e-6, err_msg=name)
    assert graphs.compiled == 1


def test_padding_content_never_reaches_a_result():
    clf = SequenceClassifier(None, num_classes=CLASSES, vocab_size=VOCAB, hidden_size=8,
                             bidirectional=True, cell="foreach", outputs=("logits", "states"))
    clf.initialize()
    set_params(clf.collect_params(), 3)
    clf.hybridize()
    b = random_batch(2, 6, 4, "clf", fill=0)
    noisy = b.data.asnumpy()
    noisy[np.arange(6)[None, :] >= b.valid_length.asnumpy()[:, None]] = 7
    args = (b.valid_length, b.label, b.weight)
    clean = [o.asnumpy() for o in clf(b.data, *args)]
    for got, want in zip(clf(mx.nd.array(noisy, dtype="int32"), *args), clean):
        np.testing.assert_array_equal(got.asnumpy(), want)


def test_a_plain_factory_of_marked_blocks_gets_one_graph():
    graphs = GraphCache(lambda n: LanguageModel(n, vocab_size=VOCAB, hidden_size=8,
                                                cell="foreach"), memory="dynamic", keys=[5])
    graphs.initialize()
    for length in (5, 3, 8):
        graphs(random_batch(0, length, 2, "lm"))
    assert graphs.length_agnostic and graphs.compiled == 1 and graphs.keys == [8, 5, 3]


def test_export_writes_the_one_graph_once(tmp_path):
    graphs = GraphCache(lm_factory("foreach"), memory="shared")
    graphs.initialize(mx.init.Xavier())
    batches = {n: random_batch(n, n, 2, "lm") for n in (3, 7)}
    want = {n: graphs(b)[0].asnumpy() for n, b in batches.items()}
    paths = graphs.export(str(tmp_path / "lm"))
    assert len(glob.glob(str(tmp_path / "*-symbol.json"))) == 1
    assert str(tmp_path / "lm-any-symbol.json") in paths
    loaded = GraphCache.load(str(tmp_path / "lm"), memory="dynamic")
    for n, b in batches.items():
        np.testing.assert_allclose(loaded(b)[0].asnumpy(), want[n], rtol=1e-5)
    assert loaded.length_agnostic and loaded.compiled == 1 and loaded.keys == [7, 3]


@pytest.mark.parametrize("memory", ["shared", "static", "dynamic"])
def test_a_loaded_foreach_export_runs_lengths_it_was_not_exported_with(tmp_path, memory):
    # The loaded cache was a frozen mapping of the exported keys: "no graph for bucket_key=12".
    graphs = GraphCache(lm_factory("foreach"), memory="shared")
    graphs.initialize(mx.init.Xavier())
    graphs(random_batch(3, 3, 2, "lm"))
    graphs.export(str(tmp_path / "lm"))
    loaded = GraphCache.load(str(tmp_path / "lm"), memory=memory)
    new = random_batch(12, 12, 2, "lm")
    np.testing.assert_allclose(loaded(new)[0].asnumpy(), graphs(new)[0].asnumpy(), rtol=1e-5)
    assert loaded.compiled == 1 and loaded.keys == [12]


def test_factory_builds_one_model_of_any_length():
    build = lm_factory("foreach")
    assert build.length_agnostic and not lm_factory("unrolled").length_agnostic
    lm = build(4)
    assert build(11) is lm and lm.length is None and lm.length_agnostic


def test_length_none_needs_a_length_agnostic_cell():
    with pytest.raises(TypeError, match="length must be an int, got length=None"):
        LanguageModel(None, vocab_size=VOCAB, hidden_size=8, cell="unrolled")
    with pytest.raises(TypeError, match="length must be None or an int, got length=2.5"):
        RecurrentEncoder(2.5, input_size=3, hidden_size=4, cell="foreach")
    with pytest.raises(ValueError, match="cell must be one of .*'foreach'.* got cell='loop'"):
        RecurrentEncoder(None, input_size=3, hidden_size=4, cell="loop")


def test_static_policy_allocates_statically_without_promising_one_shape():
    # static_shape=True with changing shapes made MXNet 1.9.1 fail the foreach backward
    # intermittently ("We didn't record the computation for iteration N") after a warm-up.
    graphs = GraphCache(lm_factory("foreach"), memory="static")
    set_params(graphs.collect_params(), 4)
    keys = [12, 5, 9, 3]
    graphs.warmup(keys, example=random_batch(0, 12, 6, "lm"))
    for seed in range(12):
        length = keys[seed % 4]
        batch = random_batch(seed, length, 6, "lm")
        batch.valid_length = mx.nd.minimum(batch.valid_length, length - 1 if length > 1 else 1)
        step(graphs, batch)  # rows all end before the bucket does: the tail steps are masked
    flags = dict(graphs.block(12)._flags)
    assert flags["static_alloc"] is True and flags["static_shape"] is False
    assert graphs.compiled == 1


@pytest.mark.parametrize("memory", MEMORY)
def test_data_parallel_over_two_contexts_matches_one(memory):
    def run(ctx):
        graphs = GraphCache(lm_factory("foreach"), memory=memory, ctx=ctx)
        set_params(graphs.collect_params(), 5)
        if isinstance(ctx, list):
            for p in graphs.collect_params().values():
                p.reset_ctx(ctx)
        found = []
        for seed, length in enumerate([6, 3, 6]):
            batch = random_batch(seed, length, 3, "lm", fill=1)
            with mx.autograd.record():
                out = graphs(batch)
            outs = out if isinstance(out, list) else [out]
            mx.autograd.backward([o[0] for o in outs])
            found.append(np.concatenate([o[0].asnumpy() for o in outs]))
        grads = {n: sum(g.asnumpy() for g in p.list_grad())
                 for n, p in graphs.collect_params().items()}
        return found, grads, graphs

    one, one_grads, _ = run(mx.cpu(0))
    two, two_grads, graphs = run([mx.cpu(0), mx.cpu(1)])
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for name, g in one_grads.items():
        np.testing.assert_allclose(two_grads[name], g, rtol=1e-4, atol=1e-6, err_msg=name)
    assert graphs.compiled == 1 and graphs.keys == [6, 3]
