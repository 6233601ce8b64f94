import mxnet as mx
import numpy as np
import pytest
from _exact import grads, set_params, step
from mxnet import autograd

from bucketrnn import Batch
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import Seq2Seq, loss_normalizer

SRC_VOCAB, TGT_VOCAB = 23, 17
MEMORY = ["shared", "static", "dynamic"]
CONFIGS = {
    "lstm-dot": dict(mode="lstm", attention="dot"),
    "gru-mlp-bi": dict(mode="gru", attention="mlp", bidirectional=True),
    "lstm-mlp-bi-2layers": dict(mode="lstm", attention="mlp", bidirectional=True, num_layers=2),
    "fused-lstm-bi-dot": dict(mode="lstm", cell="fused", bidirectional=True),
    "shared-vocab": dict(mode="lstm", share_embeddings=True, tgt_vocab_size=SRC_VOCAB),
}


def pair_batch(seed, key, rows, fill=1, tgt_vocab=TGT_VOCAB):
    """A padded pair batch: both sides shorter than the key in most rows, plus fill rows."""
    rng = np.random.default_rng(seed)
    src_len, tgt_len = key
    vl = rng.integers(1, src_len + 1, rows)
    tl = rng.integers(1, tgt_len + 1, rows)
    vl[0], tl[1] = src_len, tgt_len  # one row fills each side
    data = rng.integers(0, SRC_VOCAB, (rows, src_len)).astype("int32")
    label = rng.integers(0, tgt_vocab, (rows, tgt_len)).astype("int32")
    data[np.arange(src_len)[None, :] >= vl[:, None]] = 0
    label[np.arange(tgt_len)[None, :] >= tl[:, None]] = 0
    src = rng.integers(0, rows, fill)
    return Batch(
        bucket_key=key,
        data=mx.nd.array(np.concatenate([data, data[src]]), dtype="int32"),
        valid_length=mx.nd.array(np.r_[vl, vl[src]], dtype="int32"),
        label=mx.nd.array(np.concatenate([label, label[src]]), dtype="int32"),
        weight=mx.nd.array(np.r_[np.ones(rows), np.zeros(fill)]),
        indices=np.r_[np.arange(rows), -np.ones(fill)].astype("int64"),
        label_length=mx.nd.array(np.r_[tl, tl[src]], dtype="int32"),
    )


def pair_alone(batch, i):
    n = int(batch.valid_length[i].asscalar())
    m = int(batch.label_length[i].asscalar())
    return Batch((n, m), batch.data[i:i + 1, :n], batch.valid_length[i:i + 1],
                 batch.label[i:i + 1, :m], mx.nd.ones(1), batch.indices[i:i + 1],
                 label_length=batch.label_length[i:i + 1])


def assert_pairs_exact(factory, memory, key=(7, 6), rows=4, seed=0, tgt_vocab=TGT_VOCAB):
    batch = pair_batch(seed, key, rows, tgt_vocab=tgt_vocab)
    graphs = GraphCache(factory, memory=memory, keys=[key])
    set_params(graphs.collect_params(), seed)
    padded, padded_grads = step(graphs, batch)
    alone = GraphCache(factory, memory="dynamic", keys=[key])
    set_params(alone.collect_params(), seed)
    for p in alone.collect_params().values():
        p.grad_req = "add"
    alone.collect_params().zero_grad()
    for i in range(rows):
        row = pair_alone(batch, i)
        block = alone.block(row.bucket_key)
        with autograd.record():
            out = block(row.data, row.valid_length, row.label, row.weight, row.label_length)
        out = out if isinstance(out, tuple) else (out,)
        out[0].backward()
        np.testing.assert_allclose(padded[0][i], out[0].asnumpy()[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(padded[0][rows:], 0)
    ref = grads(alone.collect_params())
    assert set(ref) == set(padded_grads)
    assert all(np.abs(g).sum() > 0 for g in ref.values())
    for name, g in ref.items():
        np.testing.assert_allclose(padded_grads[name], g, rtol=1e-4, atol=1e-5, err_msg=name)
    return graphs, batch


@pytest.mark.parametrize("memory", MEMORY)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_padded_pairs_equal_each_pair_alone(config, memory):
    kwargs = dict(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, hidden_size=8,
                  embed_size=6, bos_id=1)
    kwargs.update(CONFIGS[config])
    graphs, _ = assert_pairs_exact(Seq2Seq.factory(**kwargs), memory,
                                   tgt_vocab=kwargs["tgt_vocab_size"])
    assert graphs.compiled == 1


@pytest.mark.parametrize("memory", MEMORY)
def test_one_graph_per_pair_key_with_shared_parameters(memory):
    build = Seq2Seq.factory(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, hidden_size=8)
    keys = [(4, 3), (4, 6), (9, 3)]
    graphs = GraphCache(build, memory=memory, keys=keys)
    graphs.initialize(mx.init.Xavier())
    for seed, key in enumerate(keys * 2):
        graphs(pair_batch(seed, key, 3))
    assert graphs.compiled == 3 and sorted(graphs.steps.values()) == [2, 2, 2]
    a, b = graphs.block((4, 3)), graphs.block((9, 3))
    assert a.collect_params()[a.out_weight.name] is b.collect_params()[b.out_weight.name]


def test_fill_rows_change_nothing_and_tokens_are_target_tokens():
    build = Seq2Seq.factory(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, hidden_size=8)
    batch = pair_batch(3, (5, 4), 3, fill=2)
    graphs = GraphCache(build, keys=[(5, 4)])
    set_params(graphs.collect_params(), 1)
    out, _ = step(graphs, batch)
    assert out[0].shape == (5,) and (out[0][3:] == 0).all()
    tl = batch.label_length.asnumpy()[:3]
    assert loss_normalizer(batch) == float(tl.sum())


def test_padding_garbage_on_either_side_changes_nothing():
    model = Seq2Seq((6, 5), src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, hidden_size=8,
                    bidirectional=True, attention="mlp", outputs=("loss", "logits"))
    model.initialize()
    set_params(model.collect_params(), 2)
    b = pair_batch(4, (6, 5), 4, fill=0)
    args = (b.valid_length, b.label, b.weight, b.label_length)
    loss, logits = model(b.data, *args)
    data, label = b.data.asnumpy(), b.label.asnumpy()
    data[np.arange(6)[None, :] >= b.valid_length.asnumpy()[:, None]] = 9
    label[np.arange(5)[None, :] >= b.label_length.asnumpy()[:, None]] = 7
    loss2, logits2 = model(mx.nd.array(data, dtype="int32"), b.valid_length,
                           mx.nd.array(label, dtype="int32"), b.weight, b.label_length)
    np.testing.assert_allclose(loss2.asnumpy(), loss.asnumpy(), rtol=1e-6)
    tl = b.label_length.asnumpy()
    for i in range(4):  # logits of valid target steps are the same
        np.testing.assert_allclose(logits2.asnumpy()[i, :tl[i]], logits.asnumpy()[i, :tl[i]],
                                   rtol=1e-5, atol=1e-6)


def test_factory_takes_pair_keys_only_and_declares_both_vocabularies():
    build = Seq2Seq.factory(src_vocab_size=10, tgt_vocab_size=7, hidden_size=8)
    assert build.vocab_size == (10, 7) and build.param_key == (1, 1)
    assert build.batch_inputs == ("data", "valid_length", "label", "weight", "label_length")
    with pytest.raises(ValueError, match=r"takes a \(src_len, tgt_len\) pair .* got bucket key 5"):
        build(5)
    shared = Seq2Seq.factory(src_vocab_size=10, hidden_size=8)
    assert shared.vocab_size == (10, 10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(src_vocab_size=10, tgt_vocab_size=7, share_embeddings=True),
     "share_embeddings=True needs one vocabulary"),
    (dict(src_vocab_size=10, bos_id=10), "bos_id must be a target id below"),
    (dict(src_vocab_size=10, attention="cosine"), "attention"),
    (dict(src_vocab_size=0), "src_vocab_size"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Seq2Seq((4, 4), hidden_size=8, **kwargs)


def test_wrong_target_shape_is_named():
    model = Seq2Seq((4, 3), src_vocab_size=10, hidden_size=8)
    model.initialize()
    b = pair_batch(0, (4, 5), 2)
    with pytest.raises(ValueError, match=r"label must be target ids shaped \(batch, 3\)"):
        model(b.data, b.valid_length, b.label, b.weight, b.label_length)


@pytest.mark.parametrize("memory", MEMORY)
def test_a_batch_padded_to_a_larger_key_gives_the_same_loss_and_gradients(memory):
    # What the padded-to-the-longest arm of benchmarks/pairs.py relies on.
    from dataclasses import replace

    build = Seq2Seq.factory(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB, hidden_size=8,
                            bidirectional=True, attention="mlp")
    graphs = GraphCache(build, memory=memory, keys=[(6, 5), (11, 9)])
    set_params(graphs.collect_params(), 5)
    batch = pair_batch(6, (6, 5), 4)

    def grow(a, width):
        out = mx.nd.zeros((a.shape[0], width), dtype=a.dtype)
        out[:, :a.shape[1]] = a
        return out

    big = replace(batch, bucket_key=(11, 9), data=grow(batch.data, 11),
                  label=grow(batch.label, 9))
    small_out, small_grads = step(graphs, batch)
    big_out, big_grads = step(graphs, big)
    np.testing.assert_allclose(big_out[0], small_out[0], rtol=1e-6, atol=1e-6)
    for name, g in small_grads.items():
        np.testing.assert_allclose(big_grads[name], g, rtol=1e-5, atol=1e-6, err_msg=name)
