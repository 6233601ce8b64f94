"""Helpers for the exactness invariant: padding never changes a result (loss, gradients and final
states of a padded bucketed batch equal those of each sequence run alone, unpadded)."""

import mxnet as mx
import numpy as np
from mxnet import autograd

from bucketrnn import Batch
from bucketrnn.graphs.cache import GraphCache

VOCAB, CLASSES, FEATURES = 20, 3, 5


def set_params(params, seed):
    """Deterministic values for every parameter, from a generator of our own."""
    rng = np.random.default_rng(seed)
    for p in params.values():
        if p._data is None:
            p.initialize(init=mx.init.Zero())
        p.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, p.shape), dtype=p.dtype))


def random_batch(seed, length, rows, task, fill=1, float_data=False):
    """A padded batch of ``rows`` real rows plus ``fill`` fill rows copying real rows."""
    rng = np.random.default_rng(seed)
    vl = rng.integers(1, length + 1, rows)
    vl[0] = length  # one row uses the whole bucket
    if float_data:
        data = rng.normal(size=(rows, length, FEATURES)).astype("float32")
    else:
        data = rng.integers(0, VOCAB, (rows, length)).astype("int32")
    pad = np.arange(length)[None, :] >= vl[:, None]
    data[pad] = 0
    if task == "lm":
        label = rng.integers(0, VOCAB, (rows, length)).astype("int32")
        label[pad] = 0
    elif task == "tag":
        label = rng.integers(0, CLASSES, (rows, length)).astype("int32")
        label[pad] = 0
    else:
        label = rng.integers(0, CLASSES, rows).astype("int32")
    src = rng.integers(0, rows, fill)
    weight = np.r_[np.ones(rows), np.zeros(fill)].astype("float32")
    indices = np.r_[np.arange(rows), -np.ones(fill)].astype("int64")
    return Batch(
        bucket_key=length,
        data=mx.nd.array(np.concatenate([data, data[src]]), dtype=data.dtype),
        valid_length=mx.nd.array(np.r_[vl, vl[src]], dtype="int32"),
        label=mx.nd.array(np.concatenate([label, label[src]]), dtype="int32"),
        weight=mx.nd.array(weight),
        indices=indices,
    )


def real_rows(batch):
    """The batch without its fill rows."""
    keep = np.flatnonzero(batch.indices >= 0)
    idx = mx.nd.array(keep, dtype="int64")
    return Batch(batch.bucket_key, batch.data.take(idx), batch.valid_length.take(idx),
                 batch.label.take(idx), batch.weight.take(idx), batch.indices[keep])


def row_alone(batch, i):
    """Row ``i`` unpadded: its own exact length, batch of one."""
    n = int(batch.valid_length[i].asscalar())
    label = batch.label[i:i + 1]
    if label.ndim == 2:
        label = label[:, :n]
    return Batch(n, batch.data[i:i + 1, :n], batch.valid_length[i:i + 1], label,
                 mx.nd.ones(1), batch.indices[i:i + 1])


def grads(params):
    return {name: p.grad().asnumpy().copy() for name, p in params.items()
            if p.grad_req != "null"}


def step(graphs, batch):
    """Forward + backward of the summed loss; returns (outputs as numpy, gradients)."""
    params = graphs.collect_params()
    params.zero_grad()
    with autograd.record():
        out = graphs(batch)
    out = out if isinstance(out, tuple) else (out,)
    out[0].backward()
    return [o.asnumpy() for o in out], grads(params)


def assert_exact(factory, memory, task, float_data=False, length=8, rows=4, seed=0,
                 reference=None):
    """Padded bucketed batch == each row alone, unpadded; fill rows change nothing.

    ``reference`` builds the blocks run row by row (default ``factory``). A length-agnostic
    factory returns its one block for every length, so it needs a second factory of its own
    here: the reference must not be the (hybridized) block under test."""
    batch = random_batch(seed, length, rows, task, float_data=float_data)
    graphs = GraphCache(factory, memory=memory, keys=[length])
    set_params(graphs.collect_params(), seed)
    padded, padded_grads = step(graphs, batch)
    # The reference: plain imperative blocks (no cache, no hybridization), one row at a time.
    alone = GraphCache(reference or factory, memory="dynamic", keys=[length])
    set_params(alone.collect_params(), seed)
    for p in alone.collect_params().values():
        p.grad_req = "add"
    alone.collect_params().zero_grad()
    for i in range(rows):
        row = row_alone(batch, i)
        block = alone.block(row.bucket_key)
        with autograd.record():
            out = block(row.data, row.valid_length, row.label, row.weight)
        out = out if isinstance(out, tuple) else (out,)
        out[0].backward()
        for got, want in zip(padded, out):
            np.testing.assert_allclose(got[i], want.asnumpy()[0], rtol=1e-4, atol=1e-5)
    # Fill rows have weight 0: their loss is exactly 0.
    np.testing.assert_array_equal(padded[0][rows:], 0)
    ref = grads(alone.collect_params())
    assert set(ref) == set(padded_grads)
    assert any(np.abs(g).sum() > 0 for g in ref.values())
    for name, g in ref.items():
        np.testing.assert_allclose(padded_grads[name], g, rtol=1e-4, atol=1e-5, err_msg=name)
    # The same batch without its fill rows: same summed loss, same gradients.
    unfilled, unfilled_grads = step(graphs, real_rows(batch))
    np.testing.assert_allclose(unfilled[0].sum(), padded[0].sum(), rtol=1e-5)
    for name, g in unfilled_grads.items():
        np.testing.assert_allclose(g, padded_grads[name], rtol=1e-5, atol=1e-6, err_msg=name)
    return graphs
