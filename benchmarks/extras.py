"""Measurements beside the arms: the loader alone, scaling with data size, compile time against
the number of buckets, and a profile (by ablation) of where a training step's time goes.

Each function takes ``(cfg, data, **args)`` and returns a JSON-able dict; the parent runs each in
its own process through :mod:`benchmarks.worker`.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.arms import GluonNLPBuckets, gluon_step, lm_factory, quiet_import_gluonnlp
from benchmarks.common import profiler_file


def _bucket_loader(cfg, data, num_buckets=8, num_workers=0):
    from bucketrnn.data.loader import BucketLoader

    return BucketLoader(data, batch_size=cfg.batch_size, num_buckets=num_buckets, shuffle=True,
                        seed=cfg.seed, task="lm", num_workers=num_workers)


def _drain(batches, real_tokens):
    """Iterate a loader to the end; returns (batches, real tokens, seconds)."""
    started = time.perf_counter()
    n = tokens = 0
    for batch in batches:
        n += 1
        tokens += real_tokens(batch)
    return n, tokens, time.perf_counter() - started


def loader_alone(cfg, data, workers=(0, 2), epochs=1):
    """Batches/s and real tokens/s of one epoch of each loader, no model: ``BucketLoader``
    (default plan) against GluonNLP ``DataLoader`` + ``FixedBucketSampler`` (10) + ``Pad``."""
    from mxnet.gluon.data import DataLoader, SimpleDataset

    rows = []
    for w in workers:
        started = time.perf_counter()
        loader = _bucket_loader(cfg, data, num_workers=w)
        build = time.perf_counter() - started
        lengths = loader.lengths
        total = [0, 0, 0.0]
        for _ in range(epochs):
            n, tok, sec = _drain(
                loader, lambda b, lengths=lengths: int(lengths[b.indices[b.indices >= 0]].sum()))
            total = [total[0] + n, total[1] + tok, total[2] + sec]
        loader.close()
        rows.append({"loader": "bucketrnn BucketLoader (K=8)", "workers": w, "batches": total[0],
                     "real_tokens": total[1], "seconds": total[2], "build_seconds": build})

        gnlp = GluonNLPBuckets(cfg, data, 10)
        gnlp.lengths = data.lengths() - 1
        started = time.perf_counter()
        nlp_ds = SimpleDataset([(s[:-1], s[1:]) for s in (data[i] for i in range(len(data)))])
        nlp = quiet_import_gluonnlp()
        pad = nlp.data.batchify
        batchify = pad.Tuple(pad.Pad(axis=0, pad_val=0, ret_length=True, dtype="int32"),
                             pad.Pad(axis=0, pad_val=0, dtype="int32"))
        build = time.perf_counter() - started
        total = [0, 0, 0.0]
        for _ in range(epochs):
            dl = DataLoader(nlp_ds, batch_sampler=gnlp._sampler(), batchify_fn=batchify,
                            num_workers=w)
            n, tok, sec = _drain(dl, lambda b: int(b[0][1].asnumpy().sum()))
            total = [total[0] + n, total[1] + tok, total[2] + sec]
            del dl
        rows.append({"loader": "GluonNLP DataLoader + FixedBucketSampler(10) + Pad",
                     "workers": w, "batches": total[0], "real_tokens": total[1],
                     "seconds": total[2], "build_seconds": build})
    for r in rows:
        r["batches_per_s"] = r["batches"] / r["seconds"]
        r["tokens_per_s"] = r["real_tokens"] / r["seconds"]
    return {"rows": rows}


def _trainer(params, cfg):
    import mxnet as mx
    from mxnet import gluon

    params.initialize(mx.init.Xavier(), ctx=mx.cpu())
    return gluon.Trainer(params, "adam", {"learning_rate": cfg.learning_rate})


def scaling_point(cfg, data, fraction=1.0, steps=10, num_buckets=8):
    """Time per epoch-equivalent on a random ``fraction`` of the sentences (default plan).

    The training time is extrapolated: ``steps`` steps are timed and multiplied out to the
    epoch's number of batches. Planning/loader construction and one full loader epoch are timed
    for real.
    """
    from mxnet import nd

    from bucketrnn.graphs.cache import GraphCache

    rng = np.random.default_rng(cfg.seed)
    n = max(cfg.batch_size, int(round(fraction * len(data))))
    subset = data.subset(np.sort(rng.permutation(len(data))[:n]))
    started = time.perf_counter()
    loader = _bucket_loader(cfg, subset, num_buckets)
    build = time.perf_counter() - started
    _, _, loader_epoch = _drain(loader, lambda b: 0)
    loader = _bucket_loader(cfg, subset, num_buckets)
    graphs = GraphCache(lm_factory(cfg), memory=cfg.memory, keys=loader.plan.keys)
    trainer = _trainer(graphs.collect_params(), cfg)
    compile_s = sum(graphs.warmup(loader.plan, example=loader.example_batch()).values())
    it = iter(loader)
    steps = min(steps, len(loader))
    nd.waitall()
    started, cpu_started = time.perf_counter(), time.process_time()
    tokens = 0
    for _ in range(steps):
        batch = next(it)
        real = int(loader.lengths[batch.indices[batch.indices >= 0]].sum())
        tokens += real
        gluon_step(trainer, lambda batch=batch: graphs(batch), real)
    nd.waitall()
    seconds = time.perf_counter() - started
    cpu_per_step = (time.process_time() - cpu_started) / steps
    per_step = seconds / steps
    return {"fraction": fraction, "sentences": n, "batches_per_epoch": len(loader),
            "timed_steps": steps, "seconds_per_step": per_step,
            "tokens_per_s": tokens / seconds, "epoch_seconds_extrapolated": per_step * len(loader),
            "cpu_seconds_per_step": cpu_per_step,
            "epoch_cpu_seconds_extrapolated": cpu_per_step * len(loader),
            "plan_and_loader_build_seconds": build, "loader_epoch_seconds": loader_epoch,
            "compile_seconds": compile_s, "graphs": loader.plan.num_buckets}


def compile_sweep(cfg, data, ks=(1, 2, 4)):
    """Seconds to compile (warm up) every graph of the default-strategy plan with K buckets."""
    from bucketrnn.graphs.cache import GraphCache

    rows = []
    for k in ks:
        loader = _bucket_loader(cfg, data, k)
        plan = loader.plan
        graphs = GraphCache(lm_factory(cfg), memory=cfg.memory, keys=plan.keys)
        _trainer(graphs.collect_params(), cfg)
        per_key = graphs.warmup(plan, example=loader.example_batch())
        rows.append({"num_buckets": k, "graphs": graphs.compiled,
                     "compile_seconds": sum(per_key.values()),
                     "sum_of_lengths": int(sum(plan.keys))})
        del graphs
    return {"rows": rows}


def _time(step, n):
    """CPU seconds of this process per call of ``step`` (after two untimed calls): unlike wall
    time, not inflated when other jobs share the machine."""
    from mxnet import nd

    for _ in range(2):
        step()
    nd.waitall()
    started = time.process_time()
    for _ in range(n):
        step()
    nd.waitall()
    return (time.process_time() - started) / n


def profile(cfg, data, length=None, steps=6):
    """Where a training step's time goes, by ablation at one (rows, length) shape.

    Times a full step of the unrolled and of the fused model, and of their parts on their own:
    the output layer (embedding, vocabulary projection, log-softmax, masked pick) and the
    recurrent encoder (unrolled cells or fused layers, loss = sum of outputs). Also returns the
    top operators of MXNet's aggregate profiler for the unrolled step.
    """
    import mxnet as mx
    from mxnet import gluon, nd

    from bucketrnn.models import RecurrentEncoder, masked_token_loss

    lengths = data.lengths() - 1
    length = int(length or round(lengths.mean()))
    b = cfg.batch_size
    rng = np.random.default_rng(0)
    ids = nd.array(rng.integers(0, cfg.vocab_size, (b, length)), dtype="int32")
    vl = nd.full((b,), length, dtype="int32")
    ones = nd.ones(b)
    tokens = float(b * length)

    class OutputOnly(gluon.HybridBlock):
        def __init__(self):
            super().__init__(prefix="outonly_")
            with self.name_scope():
                self.embed = self.params.get("embed", shape=(cfg.vocab_size, cfg.embed_size))
                self.w = self.params.get("w", shape=(cfg.vocab_size, cfg.embed_size))
                self.b = self.params.get("b", shape=(cfg.vocab_size,), init="zeros")

        def hybrid_forward(self, F, data, valid_length, label, weight, embed, w, b):
            x = F.Embedding(data, embed, input_dim=cfg.vocab_size, output_dim=cfg.embed_size)
            logits = F.FullyConnected(x, w, b, num_hidden=cfg.vocab_size, flatten=False)
            return masked_token_loss(F, logits, label, valid_length, weight)

    def timed(block, inputs):
        block.hybridize(static_alloc=True, static_shape=True)
        trainer = _trainer(block.collect_params(), cfg)
        return _time(lambda: gluon_step(trainer, lambda: block(*inputs), tokens), steps)

    x = nd.array(rng.standard_normal((b, length, cfg.embed_size)), dtype="float32")
    out = {"rows": b, "length": length}
    for cell in ("unrolled", "fused"):
        out[f"step_{cell}"] = timed(lm_factory(cfg, cell)(length), (ids, vl, ids, ones))
        enc = RecurrentEncoder(length, cfg.embed_size, cfg.hidden_size, cfg.num_layers,
                               cell=cell, prefix=f"enc{cell}_")
        out[f"encoder_{cell}"] = timed(_EncoderSum(enc), (x, vl))
    out["output_layer"] = timed(OutputOnly(), (ids, vl, ids, ones))

    # Operator-level view of the unrolled step, from MXNet's aggregate profiler.
    block = lm_factory(cfg)(length)
    block.hybridize(static_alloc=True, static_shape=True)
    trainer = _trainer(block.collect_params(), cfg)
    step = lambda: gluon_step(trainer, lambda: block(ids, vl, ids, ones), tokens)  # noqa: E731
    _time(step, 1)
    with profiler_file() as path:
        mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=path)
        mx.profiler.set_state("run")
        _time(step, steps)
        mx.profiler.set_state("stop")
        out["top_operators"] = _top_operators(mx.profiler.dumps(reset=True))
    return out


class _EncoderSum:
    """A block returning the summed encoder outputs, shaped like a per-row loss."""

    def __new__(cls, encoder):
        from mxnet import gluon

        class Wrapped(gluon.HybridBlock):
            def __init__(self):
                super().__init__(prefix=encoder.prefix + "wrap_")
                self.enc = encoder

            def hybrid_forward(self, F, x, valid_length):
                out, _ = self.enc(x, valid_length)
                return F.sum(out, axis=(1, 2))

        return Wrapped()


def _top_operators(text, top=8):
    """Parse MXNet's aggregate profiler table: [(operator, calls, total ms)], largest first."""
    totals = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        try:
            count, total = int(parts[-5]), float(parts[-4])
        except ValueError:
            continue
        name = " ".join(parts[:-5])
        # Skip memory counters and C API calls (MXNDArrayWaitAll ...): operators only.
        if name.startswith(("Memory", "cpu/", "Device", "MX")):
            continue
        calls, ms = totals.get(name, (0, 0.0))
        totals[name] = (calls + count, ms + total)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][1])[:top]
    return [{"operator": k, "calls": c, "total_ms": round(ms, 1)} for k, (c, ms) in ranked]


def gemm_peak(cfg, data, size=1024, repeats=10):
    """The machine's fp32 matrix-product peak now, in this process's thread setting: the
    fastest of ``repeats`` ``size x size`` ``mx.nd.dot``
    (:func:`bucketrnn.training.flops.gemm_peak`)."""
    from benchmarks.arms import threads_used
    from bucketrnn.training.flops import gemm_peak as peak

    return {"flops": peak(size=size, repeats=repeats), "size": size, "repeats": repeats,
            "threads": threads_used()}
