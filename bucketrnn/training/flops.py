"""How much of the machine a run uses: model FLOPs per trained token and the measured GEMM peak.

A recurrent model's work is its matrix products. Per token and layer, a cell with ``G`` gates
(4 for an LSTM, 3 for a GRU) multiplies its input (``in``) and its state (``H``) by ``G * H``
weights: ``2 * G * H * (in + H)`` FLOPs; a language model's output layer adds ``2 * H * V``.
Training costs about three times the forward pass (the backward pass computes the gradient of
the inputs and of the weights, each as large as the forward product), so
``flops_per_token = 3 * forward``. Element-wise work (gates, softmax) is left out: it is small
against the products and not what a GEMM peak measures.

The achieved model FLOP/s of a run is ``flops_per_token * real tokens/s`` (padding and fill rows
are work the model did not need: they are not counted), and :func:`gemm_peak` measures what one
large fp32 ``dot`` reaches on the same context with the same threads, so their ratio says how much
of the machine's matrix throughput the training uses.

Examples
--------
>>> round(lm_flops_per_token(vocab_size=10000, embed_size=200, hidden_size=200,
...                          num_layers=2, mode="lstm") / 1e6, 2)
15.84
"""

from __future__ import annotations

import time

from bucketrnn.validation import check_choice, check_int

__all__ = ["GATES", "classifier_flops_per_token", "gemm_peak", "lm_flops_per_token"]

GATES = {"lstm": 4, "gru": 3}
TRAINING_FACTOR = 3  # forward + backward (input and weight gradients)


def _recurrent_forward(input_size: int, hidden_size: int, num_layers: int, mode: str,
                       directions: int = 1) -> int:
    gates = GATES[check_choice("mode", mode, tuple(GATES))]
    total, size = 0, input_size
    for _ in range(num_layers):
        total += directions * 2 * gates * hidden_size * (size + hidden_size)
        size = directions * hidden_size
    return total


def lm_flops_per_token(vocab_size: int, embed_size: int | None, hidden_size: int,
                       num_layers: int, mode: str = "lstm", training: bool = True) -> int:
    """Matrix-product FLOPs per token of :class:`~bucketrnn.models.LanguageModel`
    (``embed_size`` None: ``hidden_size``), training (x3) or forward only."""
    for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        check_int(name, value, low=1)
    embed = check_int("embed_size", embed_size, low=1, allow_none=True) or hidden_size
    forward = _recurrent_forward(embed, hidden_size, num_layers, mode)
    forward += 2 * hidden_size * vocab_size
    return forward * (TRAINING_FACTOR if training else 1)


def classifier_flops_per_token(embed_size: int, hidden_size: int, num_layers: int,
                               mode: str = "lstm", bidirectional: bool = False,
                               training: bool = True) -> int:
    """Matrix-product FLOPs per token of :class:`~bucketrnn.models.SequenceClassifier`'s
    recurrent layers (its one output product per sequence is left out)."""
    for name, value in (("embed_size", embed_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        check_int(name, value, low=1)
    forward = _recurrent_forward(embed_size, hidden_size, num_layers, mode,
                                 directions=2 if bidirectional else 1)
    return forward * (TRAINING_FACTOR if training else 1)


def gemm_peak(ctx=None, size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of the fastest of ``repeats`` fp32 ``size x size`` ``mx.nd.dot`` on ``ctx``
    (default: CPU), after one warm-up: the matrix throughput this process can reach now."""
    import mxnet as mx

    check_int("size", size, low=1)
    check_int("repeats", repeats, low=1)
    ctx = ctx or mx.cpu()
    a = mx.nd.random.uniform(shape=(size, size), ctx=ctx)
    b = mx.nd.random.uniform(shape=(size, size), ctx=ctx)
    mx.nd.dot(a, b).wait_to_read()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        mx.nd.dot(a, b).wait_to_read()
        best = min(best, time.perf_counter() - started)
    return 2.0 * size ** 3 / best
