"""One step of a trained language model, its recurrent state in and out: for generation.

A :class:`~bucketrnn.models.LanguageModel` graph reads a whole padded sequence from a zero
state. Sampling needs the opposite: one token at a time, the state carried from step to step,
so the prefix is never read twice. :class:`LanguageModelStep` is the length-1 graph that does
it, built on the same parameters (same prefix, ``params=``) as the bucket graphs.
"""

from __future__ import annotations

from mxnet import nd

from bucketrnn.models.base import BucketModel
from bucketrnn.models.language_model import LanguageModel

__all__ = ["LanguageModelStep"]


class LanguageModelStep(LanguageModel):
    """``(token_ids (B,), *states) -> (logits (B, vocab_size), *new_states)``.

    Takes the keyword arguments of :class:`~bucketrnn.models.LanguageModel` (without
    ``length`` and ``outputs``); give it the ``prefix`` and ``params`` of the trained model's
    parameters (``GraphCache.collect_params()``) so both use the same arrays. Dropout is not
    applied (a step graph is for inference).

    The states are a flat list, per layer: ``h, c`` of an LSTM, ``h`` of a GRU, each ``(B,
    hidden_size)`` for ``cell="unrolled"`` and ``(1, B, hidden_size)`` for ``cell="fused"``;
    :meth:`begin_state` makes the zero state a sequence starts from.

    Examples
    --------
    >>> import mxnet as mx
    >>> build = LanguageModel.factory(vocab_size=20, hidden_size=8, num_layers=2)
    >>> full = build(5)
    >>> full.initialize()
    >>> step = LanguageModelStep(vocab_size=20, hidden_size=8, num_layers=2,
    ...                          prefix=full.prefix, params=full.collect_params())
    >>> states = step.begin_state(batch_size=3)
    >>> logits, *states = step(mx.nd.array([1, 2, 3], dtype="int32"), *states)
    >>> logits.shape, len(states), states[0].shape
    ((3, 20), 4, (3, 8))
    """

    def __init__(self, **kwargs):
        bad = [k for k in ("length", "outputs") if k in kwargs]
        if bad:
            raise TypeError(f"LanguageModelStep is always one step returning logits and states: "
                            f"do not pass {bad[0]}=")
        super().__init__(1, outputs=("logits",), **kwargs)

    def _cells(self):
        return [pair[0] for pair in self.encoder._layers]

    def begin_state(self, batch_size: int = 1, ctx=None) -> list:
        """The zero state of ``batch_size`` sequences (a flat list of NDArrays on ``ctx``)."""
        states = []
        for cell in self._cells():
            for info in cell.state_info(batch_size):
                states.append(nd.zeros(info["shape"], ctx=ctx))
        return states

    def forward(self, data, *states):
        # BucketModel.forward checks a (B, length) batch; a step takes (B,) token ids.
        return super(BucketModel, self).forward(data, *states)

    def hybrid_forward(self, F, data, *states, embed_weight, out_bias, out_weight=None):
        x = F.Embedding(data, embed_weight, input_dim=self.vocab_size,
                        output_dim=self.embed_weight.shape[1])
        new_states, i = [], 0
        for cell in self._cells():
            n = len(cell.state_info())
            mine = list(states[i:i + n])
            i += n
            if self.encoder.cell == "unrolled":
                x, got = cell(x, mine)
            else:
                out, got = cell(F.expand_dims(x, axis=1), mine)
                x = F.reshape(out, shape=(0, -1))
            new_states.extend(got)
        w = embed_weight if self.tie_weights else out_weight
        logits = F.FullyConnected(x, w, out_bias, num_hidden=self.vocab_size)
        return (logits, *new_states)
