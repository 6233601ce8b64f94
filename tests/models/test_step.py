"""The one-step language-model graph: the bucket graph's logits, one token at a time."""

import mxnet as mx
import numpy as np
import pytest

from bucketrnn.models import LanguageModel
from bucketrnn.models.step import LanguageModelStep


@pytest.mark.parametrize("mode", ["lstm", "gru"])
@pytest.mark.parametrize("cell", ["unrolled", "fused"])
@pytest.mark.parametrize("tie", [True, False])
def test_steps_equal_the_bucket_graph(mode, cell, tie):
    kw = dict(vocab_size=20, hidden_size=8, num_layers=2, mode=mode, cell=cell, tie_weights=tie)
    full = LanguageModel.factory(outputs=("logits",), **kw)(6)
    full.initialize(mx.init.Xavier())
    ids = mx.nd.array([[1, 4, 5, 2, 7, 3], [2, 2, 9, 0, 0, 0]], dtype="int32")
    vl = mx.nd.array([6, 3], dtype="int32")
    logits = full(ids, vl, ids, mx.nd.ones(2)).asnumpy()
    step = LanguageModelStep(prefix=full.prefix, params=full.collect_params(), **kw)
    step.hybridize(static_alloc=True, static_shape=True)
    states = step.begin_state(2)
    for t in range(6):
        out, *states = step(ids[:, t], *states)
        # Row 1 is valid for 3 steps; the step graph has no padding to mask.
        rows = [0, 1] if t < 3 else [0]
        np.testing.assert_allclose(out.asnumpy()[rows], logits[rows, t], rtol=1e-5, atol=1e-6)
    assert step.collect_params()[full.prefix + "embed_weight"] is \
        full.collect_params()[full.prefix + "embed_weight"]


def test_step_refuses_length_and_outputs():
    with pytest.raises(TypeError, match="do not pass length="):
        LanguageModelStep(length=3, vocab_size=5)
