"""Stateful sampling from a language model, one token at a time.

The recurrent state is carried from step to step through a one-step graph
(:class:`~bucketrnn.models.step.LanguageModelStep`): the prompt is read once, token by token,
and every generated token costs one step, never a re-run of the prefix. Sampling draws from a
``numpy.random.Generator`` of its own (``seed=``), never a global generator.

Examples
--------
>>> import mxnet as mx
>>> from bucketrnn.models.step import LanguageModelStep
>>> step = LanguageModelStep(vocab_size=10, hidden_size=8, num_layers=1)
>>> step.initialize(mx.init.Xavier())
>>> a = generate(step, [1, 4], max_tokens=5, seed=3)
>>> a == generate(step, [1, 4], max_tokens=5, seed=3), len(a) <= 5
(True, True)
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from mxnet import nd

from bucketrnn.validation import check_int

__all__ = ["feed", "generate", "sample"]


def sample(logits, rng: np.random.Generator, temperature: float = 1.0,
           top_k: int | None = None) -> int:
    """One token id drawn from ``softmax(logits / temperature)`` over the ``top_k`` largest
    logits (all when None); ``temperature=0`` takes the arg-max (greedy)."""
    logits = np.asarray(logits, dtype=np.float64).ravel()
    if temperature == 0:
        return int(np.argmax(logits))
    if top_k is not None and top_k < logits.size:
        # Ties at the k-th value are cut by position (argpartition), so exactly k remain.
        keep = np.argpartition(-logits, top_k - 1)[:top_k]
        masked = np.full_like(logits, -np.inf)
        masked[keep] = logits[keep]
        logits = masked
    with np.errstate(over="ignore"):  # a tiny temperature sends the others to -inf: greedy
        scaled = (logits - logits.max()) / temperature
    p = np.exp(scaled)
    p /= p.sum()
    return int(rng.choice(p.size, p=p))


def _check(step, temperature, top_k, max_tokens, seed=None):
    if not hasattr(step, "begin_state"):
        raise TypeError(f"step must be a one-step model with begin_state() (a "
                        f"LanguageModelStep), got {type(step).__name__}")
    if isinstance(temperature, bool) or not isinstance(temperature, Real) \
            or not 0 <= temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got "
                         f"temperature={temperature!r}")
    check_int("top_k", top_k, low=1, allow_none=True)
    check_int("max_tokens", max_tokens, low=0)
    check_int("seed", seed, low=0, allow_none=True)  # numpy's own error names no argument


def feed(step, ids, states=None, ctx=None):
    """Read the token ``ids`` (at least one) one step at a time from ``states`` (default: the
    zero state); returns ``(logits, states)`` after the last one, logits as numpy ``(V,)``."""
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError("ids must hold at least one token id to feed, got ids=[]")
    vocab_size = getattr(step, "vocab_size", None)
    bad = [i for i in ids if i < 0 or (vocab_size is not None and i >= vocab_size)]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside [0, {vocab_size}) for this model")
    states = step.begin_state(1, ctx=ctx) if states is None else list(states)
    logits = None
    for i in ids:
        logits, *states = step(nd.array([i], ctx=ctx, dtype="int32"), *states)
    return logits.asnumpy()[0], states


def generate(step, prompt_ids, max_tokens: int = 50, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None, stop_id: int | None = None,
             states=None, ctx=None, on_token=None) -> list:
    """Sample up to ``max_tokens`` token ids after ``prompt_ids``.

    Parameters
    ----------
    step : LanguageModelStep
        The one-step graph (initialized, or sharing a trained model's parameters).
    prompt_ids : sequence of int
        Read once, in order, from ``states``; at least one id.
    max_tokens : int
        Most tokens generated (``stop_id`` may end earlier).
    temperature : float
        Divides the logits; below 1 sharper, above 1 flatter, 0 greedy.
    top_k : int, optional
        Sample among the ``top_k`` most likely tokens only.
    seed : int, optional
        Seed of the sampling generator (an integer >= 0): the same seed gives the same tokens.
    stop_id : int, optional
        Stop after generating this id (e.g. ``<eos>``); it is included in the result.
    states : list of NDArray, optional
        The state to start from (e.g. from :func:`feed`): generating from ``prompt[k:]`` with
        the states of ``feed(step, prompt[:k])`` gives what generating from ``prompt`` does.
    ctx : mx.Context, optional
        Where the step graph's parameters live.
    on_token : callable, optional
        Called with each id as it is drawn (``stop_id`` too), before the next step: to show
        the tokens as they come rather than after the last one.

    Returns
    -------
    list of int
        The generated ids (not the prompt).
    """
    _check(step, temperature, top_k, max_tokens, seed)
    rng = np.random.default_rng(seed)
    logits, states = feed(step, prompt_ids, states, ctx=ctx)
    out = []
    for _ in range(max_tokens):
        token = sample(logits, rng, temperature, top_k)
        out.append(token)
        if on_token is not None:
            on_token(token)
        if token == stop_id or len(out) == max_tokens:
            break
        logits, states = feed(step, [token], states, ctx=ctx)
    return out
