import mxnet as mx
import numpy as np
import pytest
from _graphs import BATCHES, MEMORY, VOCAB, lm_batch, lm_factory, make, train, values
from mxnet import autograd, gluon

from bucketrnn import Batch
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import LanguageModel, SequenceClassifier


@pytest.mark.parametrize("optimizer, opt", [("sgd", {"learning_rate": 0.5}),
                                            ("adam", {"learning_rate": 0.05})])
def test_memory_policies_train_to_the_same_parameters(optimizer, opt):
    results = {m: train(make(m), BATCHES, optimizer, **opt) for m in MEMORY}
    start = values(make("static").collect_params())
    for name, want in results["static"].items():
        assert not np.allclose(want, start[name]), f"{name} did not train"
        for m in ("shared", "dynamic"):
            np.testing.assert_allclose(results[m][name], want, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{m}: {name}")


@pytest.mark.parametrize("memory", MEMORY)
def test_one_graph_per_key_and_shared_parameters(memory):
    graphs = make(memory)
    for batch in BATCHES:
        with autograd.record():
            graphs(batch).backward()
    assert graphs.compiled == 3 == len({b.bucket_key for b in BATCHES})
    assert graphs.keys == [9, 6, 4]
    assert graphs.steps == {9: 2, 4: 2, 6: 2}
    assert "compiled=3" in repr(graphs) and "steps={4: 2, 6: 2, 9: 2}" in repr(graphs)
    shared = graphs.collect_params()
    for key in (4, 6, 9):
        mine = graphs.block(key).collect_params()
        assert list(mine) == list(shared)
        assert all(mine[n] is shared[n] for n in shared)


def test_shared_executors_use_the_parameter_arrays():
    graphs = make("shared")
    for batch in BATCHES[:3]:
        graphs(batch)
    weight = graphs.collect_params()[graphs.block(4).embed_weight.name]
    weight.data()[:] = 0.25
    pool = graphs._pools[mx.cpu()]
    assert pool.owner.key == 9
    for runner in pool.runners.values():
        np.testing.assert_array_equal(runner.exe.arg_dict[weight.name].asnumpy(), 0.25)


def test_independent_blocks_are_tied_to_one_parameter_set():
    graphs = GraphCache(lambda n: LanguageModel(n, vocab_size=VOCAB, hidden_size=8),
                        keys=[9])
    graphs.initialize()
    for batch in BATCHES[:3]:
        graphs(batch)
    shared = graphs.collect_params()
    for key in (4, 6):
        assert all(p is shared[n] for n, p in graphs.block(key).collect_params().items())


class Tiny(gluon.HybridBlock):
    def __init__(self, length, **kwargs):
        super().__init__(**kwargs)
        self.length = length
        with self.name_scope():
            self.dense = gluon.nn.Dense(2, in_units=1, flatten=False)

    def hybrid_forward(self, F, data, valid_length, label, weight):
        x = F.expand_dims(F.cast(data, "float32"), axis=2)
        return F.sum(self.dense(x), axis=(1, 2)) * weight


def test_a_block_class_is_built_with_shared_params():
    graphs = GraphCache(Tiny, keys=[9])
    graphs.initialize()
    for batch in BATCHES[:3]:
        with autograd.record():
            graphs(batch).backward()
    assert graphs.block(4).dense.weight is graphs.block(9).dense.weight


@pytest.mark.parametrize("memory", ["shared", "static"])
def test_grad_req_add_accumulates_without_double_counting(memory):
    ref, graphs = make("dynamic"), make(memory)
    for g in (ref, graphs):
        g.collect_params().setattr("grad_req", "add")
        g.collect_params().zero_grad()
        for batch in BATCHES[:4]:
            with autograd.record():
                g(batch).backward()
    for name, p in ref.collect_params().items():
        np.testing.assert_allclose(graphs.collect_params()[name].grad().asnumpy(),
                                   p.grad().asnumpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_several_buckets_in_one_backward_pass():
    # Two buckets (and one bucket twice) recorded together: the shared pool is clobbered by
    # the later forwards, so the executor must recompute; autograd sums the contributions.
    ref, graphs = make("dynamic"), make("shared")
    for g in (ref, graphs):
        with autograd.record():
            total = sum(g(b).sum() for b in (BATCHES[0], BATCHES[1], BATCHES[3]))
        total.backward()
    for name, p in ref.collect_params().items():
        np.testing.assert_allclose(graphs.collect_params()[name].grad().asnumpy(),
                                   p.grad().asnumpy(), rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("memory", MEMORY)
def test_inference_outside_record(memory):
    graphs, ref = make(memory), make("dynamic")
    for batch in BATCHES[:3]:
        np.testing.assert_allclose(graphs(batch).asnumpy(), ref(batch).asnumpy(), rtol=1e-5)


def test_data_parallel_over_contexts_matches_one_context():
    batches = [lm_batch(s, k, rows=3, fill=1) for s, k in enumerate([6, 4, 6])]
    one = train(make("static"), batches, "sgd", learning_rate=0.5)
    for memory in ("shared", "static"):
        two = make(memory, ctx=[mx.cpu(0), mx.cpu(1)])
        got = train(two, batches, "sgd", learning_rate=0.5)
        for name, want in one.items():
            np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-6, err_msg=name)
        assert two.compiled == 2
    with pytest.raises(ValueError, match="batch size 5 must divide evenly over the 2 contexts"):
        two(lm_batch(0, 4, rows=4, fill=1))


def test_warmup_compiles_largest_first_and_leaves_gradients_alone():
    class Plan:
        keys = (4, 12, 6)
        batch_sizes = (8, 2, 4)

    graphs = make("shared", keys=(4,))
    rng = np.random.default_rng(0)
    for p in graphs.collect_params().values():  # gradients a warmup must not touch
        p.grad()[:] = rng.normal(size=p.shape)
    before = {n: p.grad().asnumpy().copy() for n, p in graphs.collect_params().items()}
    report = graphs.warmup(Plan(), example=BATCHES[0])
    assert list(report) == [12, 6, 4] and all(t > 0 for t in report.values())
    assert graphs.compiled == 3 and graphs.rebinds == 0
    assert graphs._runners[(4, mx.cpu())].spec[0][0] == (8, 4)
    assert all(v == 0 for v in graphs.steps.values())
    for n, p in graphs.collect_params().items():
        np.testing.assert_array_equal(p.grad().asnumpy(), before[n])
    graphs(lm_batch(0, 6, rows=2, fill=1))  # another batch size: rebinds key 6 on the pool
    assert graphs.compiled == 3 and graphs.rebinds == 1


def test_a_larger_key_later_takes_over_the_memory_pool():
    graphs = make("shared", keys=(4,))
    graphs(BATCHES[1])
    graphs(BATCHES[0])
    assert graphs._pools[mx.cpu()].owner.key == 9 and graphs.rebinds == 1


@pytest.mark.parametrize("memory", ["shared", "static"])
def test_export_round_trip_predicts_the_same(tmp_path, memory):
    graphs = make(memory, outputs=("loss", "states"))
    for batch in BATCHES[:3]:
        graphs(batch)
    paths = graphs.export(str(tmp_path / "lm"))
    assert len([p for p in paths if p.endswith("-symbol.json")]) == 3
    assert sum(p.endswith(".params") for p in paths) == 1
    loaded = GraphCache.load(str(tmp_path / "lm"), memory=memory)
    for batch in BATCHES:
        for got, want in zip(loaded(batch), graphs(batch)):
            np.testing.assert_array_equal(got.asnumpy(), want.asnumpy())
    assert loaded.keys == [9, 6, 4]
    with pytest.raises(ValueError, match=r"no graph for bucket_key=13: the cache is built from "
                                         r"a fixed mapping of blocks and holds keys \[4, 6, 9\]"):
        loaded(lm_batch(0, 13))


def test_a_model_factory_needs_no_keys():
    graphs = GraphCache(lm_factory())
    graphs.initialize()
    trainer = gluon.Trainer(graphs.collect_params(), "sgd", {"learning_rate": 0.1})
    with autograd.record():
        loss = graphs(BATCHES[0])
    loss.backward()
    trainer.step(1)
    assert graphs.compiled == 1
    assert all(p is graphs.collect_params()[n]
               for n, p in graphs.block(9).collect_params().items())


def test_custom_inputs():
    graphs = GraphCache(
        SequenceClassifier.factory(num_classes=2, vocab_size=VOCAB, hidden_size=8),
        keys=[6], inputs=lambda b: {"data": b.data, "valid_length": b.valid_length,
                                    "label": b.label[:, 0] % 2, "weight": b.weight})
    graphs.initialize()
    assert graphs(lm_batch(0, 6)).shape == (4,)


def test_export_with_custom_inputs_needs_them_back(tmp_path):
    def pick(b):
        return {"data": b.data, "valid_length": b.valid_length, "label": b.label[:, 0] % 2,
                "weight": b.weight}

    graphs = GraphCache(SequenceClassifier.factory(num_classes=2, vocab_size=VOCAB,
                                                   hidden_size=8), keys=[6], inputs=pick)
    graphs.initialize()
    batch = lm_batch(0, 6)
    want = graphs(batch).asnumpy()
    graphs.export(str(tmp_path / "clf"))
    with pytest.raises(ValueError, match="exported from a cache with a callable inputs="):
        GraphCache.load(str(tmp_path / "clf"))
    loaded = GraphCache.load(str(tmp_path / "clf"), inputs=pick)
    np.testing.assert_array_equal(loaded(batch).asnumpy(), want)


# The README's own loop: a loader without vocab_size / num_classes, a model that has them.
@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("seqs, match", [
    ([[1, 2, 3, 4], [2, 3, 1], [4, 99, 2, 3], [3, 3, 1]], "example 2 has token id 99"),
    ([[1, 2, 3, 4], [2, 3, 1], [4, 1, 2, 99], [3, 3, 1]], "example 2 has token id 99"),  # target
])
def test_the_graphs_refuse_token_ids_their_model_would_clip(memory, seqs, match):
    from bucketrnn import BucketLoader

    loader = BucketLoader(seqs, batch_size=2, num_buckets=1, task="lm", shuffle=False)
    assert loader.vocab_size is None
    graphs = GraphCache(LanguageModel.factory(vocab_size=10, hidden_size=8), memory=memory,
                        keys=loader.plan.keys)
    graphs.initialize(mx.init.Xavier())
    with pytest.raises(ValueError, match=rf"{match}, outside \[0, 10\) for vocab_size=10"):
        for batch in loader:
            with autograd.record():
                graphs(batch)


@pytest.mark.parametrize("label, match", [(5, "label 5"), (-1, "label -1"), (1.5, "label 1.5")])
def test_the_graphs_refuse_labels_their_model_would_clip(label, match):
    from bucketrnn import BucketLoader

    data = [([1, 2, 3], 0), ([2, 3], 1), ([3, 1, 2], label), ([1, 1], 0)]
    loader = BucketLoader(data, batch_size=2, num_buckets=1, task="classify", shuffle=False)
    graphs = GraphCache(SequenceClassifier.factory(vocab_size=10, num_classes=2, hidden_size=8),
                        keys=loader.plan.keys)
    graphs.initialize(mx.init.Xavier())
    with pytest.raises(ValueError, match=f"example 2 has {match}"):
        for batch in loader:
            graphs(batch)


def test_the_graphs_check_what_a_custom_inputs_callable_hands_them():
    graphs = GraphCache(
        SequenceClassifier.factory(num_classes=2, vocab_size=VOCAB, hidden_size=8), keys=[6],
        inputs=lambda b: {"data": b.data, "valid_length": b.valid_length,
                          "label": b.label[:, 0], "weight": b.weight})
    graphs.initialize()
    batch = lm_batch(0, 6)
    first = batch.label[:, 0].asnumpy()
    row = int(np.flatnonzero(first[:3] >= 2)[0])  # a real row whose label 2 classes cannot hold
    with pytest.raises(ValueError, match=f"example {row} has label {int(first[row])}, outside "
                                         r"\[0, 2\) for num_classes=2"):
        graphs(batch)


def test_a_batch_its_loader_checked_against_the_models_limits_is_not_checked_again(
        monkeypatch):
    from bucketrnn import BucketLoader
    from bucketrnn.graphs import cache

    seqs = [[1, 2, 3, 4], [2, 3, 1], [4, 1, 2, 3], [3, 3, 1]]
    graphs = GraphCache(LanguageModel.factory(vocab_size=10, hidden_size=8), keys=[3])
    graphs.initialize(mx.init.Xavier())
    checked = []
    real = cache.check_batch_ids
    monkeypatch.setattr(cache, "check_batch_ids", lambda *a, **k: checked.append(1) or real(
        *a, **k))
    for vocab_size, expected in ((None, 2), (10, 0), (5, 0), (12, 2)):
        checked.clear()
        loader = BucketLoader(seqs, batch_size=2, num_buckets=1, task="lm", shuffle=False,
                              vocab_size=vocab_size)
        for batch in loader:
            graphs(batch)
        # Checked by the loader against the model's limit or a tighter one: not again.
        assert len(checked) == expected, vocab_size


def test_bad_input_messages():
    graphs = make("shared", keys=(4,))
    with pytest.raises(ValueError, match="memory must be one of .* got memory='pooled'"):
        GraphCache(lm_factory(), memory="pooled")
    with pytest.raises(TypeError, match="ctx must be an mx.Context .* got ctx='cpu'"):
        GraphCache(lm_factory(), ctx="cpu")
    with pytest.raises(TypeError, match="build must be a callable"):
        GraphCache(3)
    with pytest.raises(ValueError, match="inputs names Batch attributes .*'tokens'"):
        GraphCache(lm_factory(), inputs=("tokens",))
    with pytest.raises(TypeError, match="batch must be a bucketrnn.Batch, got dict"):
        graphs({"data": 1})
    with pytest.raises(ValueError, match=r"batch.data is on cpu\(1\) but the graphs run on "
                                         r"cpu\(0\)"):
        graphs(lm_batch(0, 4, ctx=mx.cpu(1)))
    with pytest.raises(ValueError, match="no block built yet.*pass keys="):
        GraphCache(lambda n: LanguageModel(n, vocab_size=VOCAB, hidden_size=8)).initialize()
    with pytest.raises(ValueError, match="warmup needs example="):
        GraphCache(lm_factory()).warmup([4, 6])
    frozen = GraphCache(lm_factory(), keys=(4,), frozen=True)
    frozen.initialize()
    with pytest.raises(ValueError, match=r"bucket_key=6: the cache is frozen \(frozen=True\)"):
        frozen(lm_batch(0, 6))
    with pytest.raises(ValueError, match="parameter .* is not initialized .* bucket_key=4"):
        GraphCache(lm_factory(), keys=(4,))(lm_batch(0, 4))
    with pytest.raises(ValueError, match="batch.label is None but inputs="):
        graphs(Batch(4, mx.nd.zeros((1, 4), dtype="int32"), mx.nd.ones(1), None,
                     mx.nd.ones(1), np.zeros(1, dtype="int64")))
    with pytest.raises(ValueError, match="nothing to export"):
        make("static", keys=(4,)).export("/tmp/never")
