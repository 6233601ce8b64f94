import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import rnn

from bucketrnn.models.unroll import unroll

HIDDEN, INPUT = 6, 4


class Hoisted(gluon.HybridBlock):
    """The cell run by :func:`unroll`, as a block (hybridizable: traced as a symbol)."""

    def __init__(self, cell, length, mode):
        super().__init__()
        self.cell, self.length, self.mode = cell, length, mode
        self.register_child(cell)

    def hybrid_forward(self, F, x, valid_length):
        out, states = unroll(F, self.cell, x, valid_length, self.length, self.mode)
        return [out, *states]


class Gluon(Hoisted):
    """The same cell through Gluon's own ``unroll``: the reference."""

    def hybrid_forward(self, F, x, valid_length):
        out, states = self.cell.unroll(self.length, x, layout="NTC", merge_outputs=True,
                                       valid_length=valid_length)
        return [out, *states]


def run(block, x, vl):
    params = block.collect_params()
    params.zero_grad()
    with autograd.record():
        outs = block(x, vl)
        # A different weight per output and position, so every value reaches the gradients.
        total = sum((o * mx.nd.arange(o.size).reshape(o.shape) / o.size).sum() for o in outs)
    total.backward()
    return ([o.asnumpy() for o in outs],
            {n.split("_", 1)[1]: p.grad().asnumpy().copy() for n, p in params.items()})


@pytest.mark.parametrize("hybridize", [False, True])
@pytest.mark.parametrize("length", [1, 5])
@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_unroll_equals_gluon_unroll(mode, length, hybridize):
    cls = rnn.LSTMCell if mode == "lstm" else rnn.GRUCell
    rng = np.random.default_rng(length)
    x = mx.nd.array(rng.normal(size=(3, length, INPUT)))
    vl = mx.nd.array([length, max(1, length - 2), 1], dtype="int32")
    got, want = (wrap(cls(HIDDEN, input_size=INPUT, prefix="c_"), length, mode)
                 for wrap in (Hoisted, Gluon))
    for block in (got, want):
        block.initialize()
        for name, p in sorted(block.collect_params().items()):
            p.set_data(mx.nd.array(np.random.default_rng(len(name)).uniform(-.5, .5, p.shape)))
        if hybridize:
            block.hybridize(static_alloc=True)
    assert sorted(got.collect_params()) == sorted(want.collect_params())
    (got_out, got_grads), (want_out, want_grads) = run(got, x, vl), run(want, x, vl)
    assert len(got_out) == len(want_out) == (3 if mode == "lstm" else 2)
    for g, w in zip(got_out, want_out):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_out[0][2, 1:], 0)  # past the valid length: zero
    assert set(got_grads) == set(want_grads) == {"i2h_weight", "h2h_weight", "i2h_bias",
                                                 "h2h_bias"}
    for name, g in want_grads.items():
        np.testing.assert_allclose(got_grads[name], g, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_length_one_graph_keeps_every_parameter():
    # The state product of the first step multiplies a zero state; it stays in the graph so a
    # Trainer sees a (zero) gradient for h2h_weight rather than a stale one.
    block = Hoisted(rnn.LSTMCell(HIDDEN, input_size=INPUT, prefix="c_"), 1, "lstm")
    block.initialize()
    block.hybridize()
    trainer = gluon.Trainer(block.collect_params(), "sgd", {"learning_rate": 0.1})
    x, vl = mx.nd.ones((2, 1, INPUT)), mx.nd.array([1, 1], dtype="int32")
    with autograd.record():
        out = block(x, vl)[0].sum()
    out.backward()
    trainer.step(1)
    assert not block.cell.h2h_weight.grad().asnumpy().any()
