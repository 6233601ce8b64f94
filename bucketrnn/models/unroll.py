"""The unrolled recurrence of ``cell="unrolled"``: input products hoisted out of the time loop.

Gluon's ``LSTMCell.unroll``/``GRUCell.unroll`` run two small matrix products per time step, one
of the step's input and one of the previous state. The input product does not depend on the
state, so :func:`unroll` computes it for every step at once, as one ``FullyConnected`` over the
whole ``(B, length, input)`` sequence, and leaves only the state product inside the loop. One
large product runs near the machine's GEMM peak where ``length`` small ones do not, and every
step runs fewer operators (forward and backward). The measured gain on the default language
model is in docs/concepts.md ("Where the time of a step goes", ``python -m benchmarks.step``).

It computes what ``cell.unroll(length, x, layout="NTC", merge_outputs=True,
valid_length=valid_length)`` computes, from the cell's own parameters (same names and shapes,
so checkpoints are unchanged): outputs past each row's valid length are zero, the final states
are those at the last valid step (``SequenceLast`` of the stacked states). The first step starts
from zero states, so an LSTM skips the forget gate's product with the zero cell state, and a GRU
forms ``(1 - z) * n + z * h`` as ``n + z * (h - n)``: float rounding only.

Each bias enters the graph on its own (``i2h_bias`` in the sequence product, ``h2h_bias`` in
every step's): adding the two once would be one operator less per step, but MXNet 1.9.1's
``CachedOp`` then accumulates the biases' gradients wrongly under ``grad_req="add"`` (the
``static`` and ``dynamic`` policies; tests/graphs/test_cache.py holds it).
"""

from __future__ import annotations

from mxnet import symbol

__all__ = ["unroll"]


def _weights(F, cell, like):
    """The cell's four parameters as ``F`` arrays: variables when tracing a symbol (as a
    hybridized block's own parameters are), the arrays on ``like``'s context otherwise."""
    names = ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")
    if F is symbol:
        return [getattr(cell, n).var() for n in names]
    return [getattr(cell, n).data(like.context) for n in names]


def _steps(F, x, length):
    """The ``length`` time steps of ``x`` ``(B, length, C)`` as a list of ``(B, C)``."""
    if length == 1:
        return [F.reshape(x, shape=(0, -1))]
    return list(F.SliceChannel(x, num_outputs=length, axis=1, squeeze_axis=True))


def _lstm(F, cell, x, length, hidden):
    i2h_weight, h2h_weight, i2h_bias, h2h_bias = _weights(F, cell, x)
    proj = F.FullyConnected(x, i2h_weight, i2h_bias, num_hidden=4 * hidden, flatten=False)
    hs, cs, h, c = [], [], None, None
    for gates in _steps(F, proj, length):
        if h is None:
            # The zero begin state, shaped from the data: its product is zero, the bias stays.
            h = F.zeros_like(F.slice_axis(gates, axis=1, begin=0, end=hidden))
        gates = gates + F.FullyConnected(h, h2h_weight, h2h_bias, num_hidden=4 * hidden)
        i, f, g, o = F.SliceChannel(gates, num_outputs=4)
        i, g = F.sigmoid(i), F.tanh(g)
        c = i * g if c is None else F.sigmoid(f) * c + i * g
        h = F.sigmoid(o) * F.tanh(c)
        hs.append(h)
        cs.append(c)
    return hs, [hs, cs]


def _gru(F, cell, x, length, hidden):
    i2h_weight, h2h_weight, i2h_bias, h2h_bias = _weights(F, cell, x)
    proj = F.FullyConnected(x, i2h_weight, i2h_bias, num_hidden=3 * hidden, flatten=False)
    hs, h = [], None
    for step in _steps(F, proj, length):
        x_r, x_z, x_n = F.SliceChannel(step, num_outputs=3)
        if h is None:
            h = F.zeros_like(x_r)  # the zero begin state, shaped from the data
        h_r, h_z, h_n = F.SliceChannel(
            F.FullyConnected(h, h2h_weight, h2h_bias, num_hidden=3 * hidden), num_outputs=3)
        r, z = F.sigmoid(x_r + h_r), F.sigmoid(x_z + h_z)
        n = F.tanh(x_n + r * h_n)
        h = n + z * (h - n)
        hs.append(h)
    return hs, [hs]


def unroll(F, cell, x, valid_length, length: int, mode: str):
    """Run ``cell`` (an ``LSTMCell`` for ``mode="lstm"``, a ``GRUCell`` for ``"gru"``) over
    ``x`` ``(B, length, input)`` from zero states; ``(outputs (B, length, H), states)`` with
    ``states`` ``[h, c]`` (LSTM) or ``[h]`` (GRU) at each row's last valid step."""
    hidden = cell.h2h_weight.shape[1]
    hs, states = (_lstm if mode == "lstm" else _gru)(F, cell, x, length, hidden)
    out = F.SequenceMask(F.stack(*hs, axis=1), valid_length, use_sequence_length=True, axis=1)
    last = [F.SequenceLast(F.stack(*s, axis=0), valid_length, use_sequence_length=True)
            for s in states]
    return out, last
