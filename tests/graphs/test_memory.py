"""GraphCache estimates a graph's memory before building it and refuses one that cannot fit."""

import json
import os
import subprocess
import sys
import time

import pytest
from _graphs import VOCAB, lm_batch, lm_factory

from bucketrnn.errors import GraphTooLargeError
from bucketrnn.graphs.cache import NODE_BYTES, GraphCache
from bucketrnn.models import LanguageModel, SequenceClassifier

HUGE = 10**6


def test_a_key_over_memory_limit_is_refused_quickly_before_any_graph():
    # Unrolled whatever its length: by default a key past unroll_limit runs on the length-
    # agnostic twin outside training (tests/graphs/test_unroll_limit.py), held to the limit too.
    graphs = GraphCache(lm_factory(), memory_limit=2**30, unroll_limit=None)
    graphs.initialize()
    started = time.perf_counter()
    with pytest.raises(GraphTooLargeError, match=r"bucket_key=1000000 with 2 rows needs about "
                                                 r"[\d.]+ GB \(estimated before building it\) "
                                                 r"but memory_limit=1073741824 \(1.0 GB\): lower "
                                                 r"the largest bucket length .*max_length=N with "
                                                 r"on_overflow=.*fewer rows per batch"):
        graphs(lm_batch(0, HUGE, rows=1, fill=1))
    assert time.perf_counter() - started < 5
    assert graphs.compiled == 0
    assert graphs.estimate_memory(HUGE, batch_size=2) > 2**30
    assert isinstance(GraphTooLargeError("x"), ValueError)  # the app reports ValueErrors cleanly


def test_auto_limit_refuses_a_huge_key_at_warmup_before_its_arrays_exist():
    graphs = GraphCache(lm_factory())  # memory_limit="auto": the memory available now
    graphs.initialize()
    started = time.perf_counter()
    # 10^9 steps: far beyond any machine; the warmup batch of this key is never allocated.
    with pytest.raises(GraphTooLargeError, match=r"bucket_key=1000000000 with 4 rows needs "
                                                 r"about [\d.]+ GB .* is available on cpu\(0\)"):
        graphs.warmup([4, 10**9], example=lm_batch(0, 4))
    assert time.perf_counter() - started < 5
    assert graphs.compiled == 0


def test_keys_that_fit_build_as_before():
    graphs = GraphCache(lm_factory(), memory_limit=2**30)
    graphs.initialize()
    graphs(lm_batch(0, 9))
    graphs.warmup([4, 6], example=lm_batch(0, 4))
    assert graphs.compiled == 3
    assert graphs.estimate_memory(9, batch_size=4) < 2**30


def test_memory_limit_none_never_estimates():
    graphs = GraphCache(lm_factory(), memory_limit=None)
    graphs.initialize()
    graphs(lm_batch(0, 6))
    assert graphs._fits == {} and graphs._estimates == {}
    with pytest.raises(ValueError, match="memory_limit must be 'auto', a number of bytes > 0 or "
                                         "None, got memory_limit='8GB'"):
        GraphCache(lm_factory(), memory_limit="8GB")


def lm_rows(length, rows):
    return lm_batch(0, length, rows=rows, fill=0)


def clf_rows(length, rows):
    b = lm_rows(length, rows)
    b.label = b.label[:, 0]
    return b


@pytest.mark.parametrize("factory, make_batch", [
    (LanguageModel.factory(vocab_size=VOCAB, hidden_size=8, num_layers=2), lm_rows),
    (SequenceClassifier.factory(num_classes=3, vocab_size=VOCAB, hidden_size=8,
                                bidirectional=True, mode="gru"), clf_rows),
])
def test_the_linear_fit_equals_tracing_the_key_itself(factory, make_batch):
    # An unrolled graph grows linearly in the length, so the fit from lengths 8 and 16 must
    # predict a mid-size key exactly as tracing that key does.
    graphs = GraphCache(factory)
    example = make_batch(5, 3)
    fitted = graphs.estimate_memory(150, example=example)
    activations, params, nodes = graphs._sizes(150, 3, example, factory(150))
    assert fitted == int(activations + 2 * params + NODE_BYTES * nodes)


def test_the_estimate_is_cached_per_batch_size(monkeypatch):
    graphs = GraphCache(lm_factory())
    example = lm_batch(0, 4)
    first = graphs.estimate_memory(40, example=example)

    def no_more_tracing(*args):
        raise AssertionError("traced again")

    monkeypatch.setattr(graphs, "_sizes", no_more_tracing)
    assert graphs.estimate_memory(40, example=example) == first
    assert graphs.estimate_memory(80, example=example) > first  # a new key: arithmetic only
    with pytest.raises(ValueError, match="estimate_memory needs example="):
        GraphCache(lm_factory()).estimate_memory(40)


def test_a_mapping_of_blocks_is_estimated_from_its_own_graph_when_small():
    block = LanguageModel(6, vocab_size=VOCAB, hidden_size=8)
    graphs = GraphCache({6: block})
    assert graphs.estimate_memory(6, example=lm_batch(0, 6)) > 0
    # A long key of a mapping would be costly to trace: no estimate, no refusal.
    long = GraphCache({5000: LanguageModel(5000, vocab_size=VOCAB, hidden_size=8)},
                      memory_limit=1)
    started = time.perf_counter()
    assert long.estimate_memory(5000, example=lm_batch(0, 6)) is None
    assert time.perf_counter() - started < 1


MEASURE = """
import json, sys
import mxnet as mx, numpy as np
from mxnet import autograd
from bucketrnn import Batch
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import LanguageModel

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))

L, B = 150, 32
batch = Batch(L, mx.nd.ones((B, L), dtype="int32"), mx.nd.full((B,), L, dtype="int32"),
              mx.nd.ones((B, L), dtype="int32"), mx.nd.ones(B), np.arange(B))
factory = LanguageModel.factory(vocab_size=2000, hidden_size=256)
estimate = GraphCache(factory, memory_limit=None).estimate_memory(L, example=batch)
mx.nd.waitall()
before = rss()
graphs = GraphCache(factory, memory_limit=None)
graphs.initialize()
with autograd.record():
    loss = graphs(batch)
loss.backward()
mx.nd.waitall()
print(json.dumps({"estimate": estimate, "measured": rss() - before}))
"""


def _in_a_fresh_process(script: str) -> dict:
    """The JSON a measuring script prints last, run in a fresh one-thread process (its resident
    memory is the graph's alone)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_SUBGRAPH_VERBOSE="0")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_the_estimate_is_within_2x_of_the_measured_memory():
    # Measured: resident memory a fresh process gains by building the graph of a moderate key
    # (150 steps, 32 rows, ~200 MB) and running one training step. Parameters, gradients,
    # the executor's pool and graph structures are all in it.
    got = _in_a_fresh_process(MEASURE)
    ratio = got["estimate"] / got["measured"]
    assert 0.5 < ratio < 2, got


def test_each_batch_size_gets_its_own_fit():
    graphs = GraphCache(lm_factory(), memory_limit=2**30)
    graphs.initialize()
    graphs(lm_batch(0, 4, rows=2, fill=0))
    graphs(lm_batch(0, 7, rows=5, fill=1))
    assert set(graphs._fits) == {2, 6}
    assert graphs.estimate_memory(7, batch_size=6) > graphs.estimate_memory(7, batch_size=2)


LONG_LINE = """
import json
import mxnet as mx, numpy as np
from bucketrnn import Batch
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import SequenceClassifier

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))

L, B = 1000, 8  # one long line and its fill rows, as `bucketrnn predict` batches it
batch = Batch(L, mx.nd.ones((B, L), dtype="int32"), mx.nd.full((B,), L, dtype="int32"),
              mx.nd.zeros((B,), dtype="int32"), mx.nd.ones(B), np.arange(B))
factory = SequenceClassifier.factory(num_classes=2, vocab_size=32, hidden_size=16)
estimate = GraphCache(factory, memory_limit=None).estimate_memory(L, example=batch)
graphs = GraphCache(factory, memory_limit=None)
graphs.initialize()
for p in graphs.collect_params().values():
    p.grad_req = "null"  # a trained run's graphs: inference only
mx.nd.waitall()
before = rss()
graphs(batch)[0].asnumpy()
print(json.dumps({"estimate": estimate, "measured": rss() - before}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_a_lone_long_line_of_a_small_model_is_estimated_at_or_above_its_peak():
    # Issue 21: a lone 25,000-token line of a 16-unit classifier took 3.0 GB (~120 kB per
    # token) in `bucketrnn predict`. Nearly all of it is per-node cost (the arrays of 16 units
    # are tiny): the estimate counts it (NODE_BYTES per node) and must not read below the
    # peak the process reaches, so a graph that would not fit is refused before it is built.
    got = _in_a_fresh_process(LONG_LINE)
    assert got["measured"] <= got["estimate"] < 3 * got["measured"], got
