"""What the graph-cache tests share: a small language model, its batches and a trainer."""

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from bucketrnn import Batch
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import LanguageModel

MEMORY = ["shared", "static", "dynamic"]
VOCAB = 20


def lm_factory(**kwargs):
    return LanguageModel.factory(vocab_size=VOCAB, hidden_size=8, **kwargs)


def lm_batch(seed, length, rows=3, fill=1, ctx=None):
    rng = np.random.default_rng(seed)
    vl = rng.integers(1, length + 1, rows + fill)
    data = rng.integers(0, VOCAB, (rows + fill, length))
    label = rng.integers(0, VOCAB, (rows + fill, length))
    data[np.arange(length)[None, :] >= vl[:, None]] = 0
    ctx = ctx or mx.cpu()
    return Batch(
        bucket_key=length,
        data=mx.nd.array(data, dtype="int32", ctx=ctx),
        valid_length=mx.nd.array(vl, dtype="int32", ctx=ctx),
        label=mx.nd.array(label, dtype="int32", ctx=ctx),
        weight=mx.nd.array([1] * rows + [0] * fill, ctx=ctx),
        indices=np.r_[np.arange(rows), -np.ones(fill)].astype("int64"),
    )


def init_same(params, seed=0):
    rng = np.random.default_rng(seed)
    for p in params.values():
        p.set_data(mx.nd.array(rng.uniform(-0.3, 0.3, p.shape)))


def make(memory, keys=(4, 6, 9), ctx=None, **kwargs):
    graphs = GraphCache(lm_factory(**kwargs), ctx=ctx, memory=memory, keys=keys)
    graphs.initialize()
    init_same(graphs.collect_params())
    return graphs


def values(params, ctx=None):
    return {n: p.data(ctx).asnumpy() for n, p in params.items()}


def train(graphs, batches, optimizer, **opt):
    trainer = gluon.Trainer(graphs.collect_params(), optimizer, opt)
    for batch in batches:
        with autograd.record():
            loss = graphs(batch)
        if isinstance(loss, list):
            autograd.backward(loss)
        else:
            loss.backward()
        trainer.step(1)
    return values(graphs.collect_params(), graphs.ctx[0])


BATCHES = [lm_batch(s, k) for s, k in enumerate([9, 4, 6, 4, 9, 6])]
