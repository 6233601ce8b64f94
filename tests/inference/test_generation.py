"""Sampling: temperature, top-k, seeds; the state carried between steps."""

import mxnet as mx
import numpy as np
import pytest

from bucketrnn.inference.generation import feed, generate, sample
from bucketrnn.models.step import LanguageModelStep


@pytest.fixture(scope="module")
def step():
    block = LanguageModelStep(vocab_size=12, hidden_size=8, num_layers=2)
    block.initialize(mx.init.Xavier())
    return block


def test_sample_greedy_top_k_and_temperature():
    logits = np.array([0.0, 3.0, 1.0, 2.0])
    rng = np.random.default_rng(0)
    assert sample(logits, rng, temperature=0) == 1
    drawn = {sample(logits, rng, top_k=2) for _ in range(200)}
    assert drawn == {1, 3}
    assert {sample(logits, rng, top_k=1) for _ in range(20)} == {1}
    # A low temperature concentrates on the arg-max, a high one spreads out.
    cold = [sample(logits, rng, temperature=0.05) for _ in range(200)]
    hot = [sample(logits, rng, temperature=50.0) for _ in range(400)]
    assert set(cold) == {1} and set(hot) == {0, 1, 2, 3}


def test_same_seed_same_tokens_and_state_is_carried(step):
    prompt = [1, 5, 6, 2]
    a = generate(step, prompt, max_tokens=15, seed=11)
    assert a == generate(step, prompt, max_tokens=15, seed=11) and len(a) == 15
    _, states = feed(step, prompt[:3])
    assert generate(step, prompt[3:], max_tokens=15, seed=11, states=states) == a
    # Starting from the zero state instead is another sequence: the state matters.
    logits_carried, _ = feed(step, prompt[3:], states)
    logits_fresh, _ = feed(step, prompt[3:])
    assert not np.allclose(logits_carried, logits_fresh)


def test_stop_id_ends_generation(step):
    first = generate(step, [1, 2], max_tokens=1, temperature=0)[0]
    assert generate(step, [1, 2], max_tokens=10, temperature=0, stop_id=first) == [first]


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": -0.5}, "temperature must be a finite number >= 0"),
    ({"temperature": float("inf")}, "temperature must be a finite number >= 0"),
    ({"top_k": 0}, "top_k"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"seed": -1}, "seed must be an integer >= 0, got seed=-1"),
])
def test_bad_options_are_refused(step, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(step, [1], **kwargs)


def test_bad_prompts_are_refused(step):
    with pytest.raises(ValueError, match=r"ids must hold at least one token id to feed"):
        generate(step, [])
    with pytest.raises(ValueError, match=r"token id 12 is outside \[0, 12\)"):
        generate(step, [1, 12])


def test_a_tiny_temperature_is_greedy_without_warnings():
    import warnings

    logits = np.array([0.0, 3.0, 1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow RuntimeWarning reached the user
        assert {sample(logits, np.random.default_rng(0), temperature=1e-320)
                for _ in range(20)} == {1}


def test_on_token_sees_each_id_as_it_is_drawn(step):
    seen = []
    out = generate(step, [1, 2], max_tokens=7, seed=4, on_token=seen.append)
    assert seen == out and len(out) == 7
