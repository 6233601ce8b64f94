"""Benchmark the graph cache: memory and speed of the memory policies, unrolled vs fused cells.

Each configuration runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own:

* ``shared`` / ``static`` / ``dynamic`` with 8 and 32 buckets, next to one graph of the
  largest bucket alone (``single``): peak RSS and training steps/s on the same schedule of
  Penn-Treebank-like sentence lengths (2..83 tokens, synthetic, seeded);
* where the memory goes: the same graphs with a tiny model (hidden 8, vocabulary 50), whose
  tensors are negligible, measure what each bound executor keeps besides the memory pool
  (MXNet's graph structures and operator state, which grow with the number of unrolled steps);
  and the fused model under ``shared``, whose RNN operators keep their own workspace;
* the unrolled and the fused LSTM language model on the same batches: real (unpadded)
  tokens/s and the losses they compute, with the real vocabulary and with a 100-word one (where
  the recurrent layers, not the output layer, take the time).

The defaults are the app's Penn Treebank model (``conf/model/lstm_lm.yaml``: hidden 200, two
layers, tied weights) with PTB's 10,000-word vocabulary. Run from the repository root::

    .venv/bin/python benchmarks/graphs.py --steps 30 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

MIN_LEN, MAX_LEN = 2, 83


def ptb_like_lengths(n: int, seed: int) -> np.ndarray:
    """Sentence lengths shaped like Penn Treebank's (median ~23, long right tail to 83)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(21), 0.55, n)), MIN_LEN, MAX_LEN).astype(int)


def boundaries(lengths: np.ndarray, buckets: int) -> list:
    """Upper bucket lengths at equal-count quantiles, the last one being the longest length."""
    qs = np.quantile(lengths, np.linspace(0, 1, buckets + 1)[1:], method="higher")
    keys = sorted(set(int(q) for q in qs) | {int(lengths.max())})
    return keys


def schedule(args, keys):
    """The batches of a run: (bucket length, valid lengths), seeded, same for every policy."""
    rng = np.random.default_rng(args.seed)
    lengths = ptb_like_lengths(20000, args.seed)
    bucket_of = np.searchsorted(keys, lengths)
    steps = []
    for _ in range(args.steps):
        b = int(bucket_of[rng.integers(len(lengths))])
        pool = lengths[bucket_of == b]
        steps.append((keys[b], rng.choice(pool, args.batch_size)))
    return steps


def make_batch(key, vl, vocab, seed):
    import mxnet as mx

    from bucketrnn import Batch

    rng = np.random.default_rng(seed)
    data = rng.integers(1, vocab, (len(vl), key))
    # Learnable targets (a fixed map of the current token), so the loss falls as the model
    # trains and two models that compute differently end up with different losses.
    label = (data * 7 + 3) % (vocab - 1) + 1
    pad = np.arange(key)[None, :] >= vl[:, None]
    data[pad], label[pad] = 0, 0
    return Batch(key, mx.nd.array(data, dtype="int32"), mx.nd.array(vl, dtype="int32"),
                 mx.nd.array(label, dtype="int32"), mx.nd.ones(len(vl)),
                 np.arange(len(vl), dtype=np.int64))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    """One configuration, in this process: warm up, train ``--steps`` steps, report."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.models import LanguageModel

    lengths = ptb_like_lengths(20000, args.seed)
    keys = boundaries(lengths, args.buckets)
    steps = schedule(args, keys)
    if args.policy == "single":  # one graph, the largest bucket, every step padded to it
        keys, steps = [keys[-1]], [(keys[-1], vl) for _, vl in steps]
    memory = "static" if args.policy == "single" else args.policy
    factory = LanguageModel.factory(vocab_size=args.vocab, hidden_size=args.hidden,
                                    num_layers=args.layers, cell=args.cell,
                                    tie_weights=bool(args.tie_weights))
    graphs = GraphCache(factory, ctx=mx.cpu(), memory=memory, keys=keys)
    # Seeded: unrolled cells and fused layers have the same parameter shapes, drawn in the same
    # order, so both models start from the same values and must compute the same losses.
    mx.random.seed(args.seed if args.init_seed is None else args.init_seed)
    graphs.initialize(mx.init.Uniform(0.1))
    trainer = gluon.Trainer(graphs.collect_params(), "sgd", {"learning_rate": 1.0})
    batches = [make_batch(k, vl, args.vocab, args.seed + i) for i, (k, vl) in enumerate(steps)]
    counts = [int(vl.sum()) for _, vl in steps]  # real tokens per batch, known up front
    base = rss_mb()
    started = time.perf_counter()
    compile_s = graphs.warmup(keys, example=batches[0], batch_size=args.batch_size)
    warm = time.perf_counter() - started
    losses, tokens = [], 0
    mx.nd.waitall()
    started = time.perf_counter()
    for batch, n in zip(batches, counts):
        with autograd.record():
            loss = graphs(batch)
            mean = loss.sum() / n
        mean.backward()
        trainer.step(1)
        tokens += n
        losses.append(loss)
    mx.nd.waitall()
    elapsed = time.perf_counter() - started
    per_token = [float(loss.sum().asscalar()) / n for loss, n in zip(losses, counts)]
    return {
        "policy": args.policy, "cell": args.cell, "buckets": len(keys),
        "peak_rss_mb": round(rss_mb(), 1), "rss_before_warmup_mb": round(base, 1),
        "steps_per_s": round(len(batches) / elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1), "warmup_s": round(warm, 2),
        "slowest_compile_s": round(max(compile_s.values()), 3),
        "first_losses": [round(x, 4) for x in per_token[:3]],
        "losses": per_token,
        "mean_loss": round(float(np.mean(per_token)), 4),
        "graphs": graphs.compiled, "keys": [int(k) for k in keys],
    }


def run(args, **override) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--worker"]
    for name, value in {**vars(args), **override}.items():
        if name in ("worker", "only", "repeat") or value is None:
            continue
        argv += [f"--{name.replace('_', '-')}", str(value)]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(
        __file__))) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise RuntimeError(f"worker {override} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--vocab", type=int, default=10000)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tie-weights", type=int, choices=(0, 1), default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--bucket-counts", default="8,32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per config (best is kept)")
    parser.add_argument("--only", choices=["policies", "cells"], default=None,
                        help="run one half of the benchmark")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="shared", help=argparse.SUPPRESS)
    parser.add_argument("--buckets", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--cell", default="unrolled", help=argparse.SUPPRESS)
    parser.add_argument("--init-seed", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("hidden", "vocab", "layers", "batch_size", "steps", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"# LSTM LM hidden={args.hidden} vocab={args.vocab} layers={args.layers} "
          f"tied={bool(args.tie_weights)} batch={args.batch_size} steps={args.steps}, "
          f"PTB-like lengths {MIN_LEN}..{MAX_LEN}")
    print(f"{'config':<30}{'graphs':>7}{'peak RSS MB':>13}{'steps/s':>9}{'tokens/s':>10}"
          f"{'warmup s':>10}")
    counts = [int(c) for c in args.bucket_counts.split(",")]
    results = {"policies": {}, "cells": {}}
    for count in counts if args.only != "cells" else []:
        results["policies"][count] = policies(args, count)
    if args.only != "policies":
        results["cells"] = cells(args, counts[0])
    return results


def best(args, label, **override) -> dict:
    """Best of ``--repeat`` runs (a shared machine only ever slows a run down), printed."""
    runs = [run(args, **override) for _ in range(args.repeat)]
    r = max(runs, key=lambda x: x["steps_per_s"])
    r["peak_rss_mb"] = min(x["peak_rss_mb"] for x in runs)
    print(f"{label:<30}{r['graphs']:>7}{r['peak_rss_mb']:>13}{r['steps_per_s']:>9}"
          f"{r['tokens_per_s']:>10}{r['warmup_s']:>10}", flush=True)
    return r


def policies(args, count: int) -> dict:
    """Memory and step rate of the policies for ``count`` buckets, and where the memory goes."""
    r = {p: best(args, f"{p} ({count} b.)", policy=p, buckets=count)
         for p in ("single", "shared", "static", "dynamic")}
    single, shared, static = r["single"], r["shared"], r["static"]
    print(f"  -> {count} buckets: shared peak RSS = "
          f"{shared['peak_rss_mb'] / single['peak_rss_mb']:.2f}x single largest graph "
          f"(target <= 1.3x), static = {static['peak_rss_mb'] / single['peak_rss_mb']:.2f}x;"
          f" shared step rate = {shared['steps_per_s'] / static['steps_per_s']:.2f}x static"
          f" (target >= 0.97x)", flush=True)
    # The same graphs with negligible tensors: what every bound executor keeps outside the pool.
    tiny = dict(hidden=8, vocab=50)
    # Baseline: one bound executor of the largest bucket (shared policy, one bucket).
    t_single = best(args, "shared (1 b.), tiny model", policy="shared", buckets=1, **tiny)
    t_shared = best(args, f"shared ({count} b.), tiny model", policy="shared", buckets=count,
                    **tiny)
    keys = shared["keys"]
    steps = (sum(keys) - max(keys)) * args.layers
    structure = t_shared["peak_rss_mb"] - t_single["peak_rss_mb"]
    rest = shared["peak_rss_mb"] - structure
    print(f"  -> graph structure: the {len(keys) - 1} smaller executors keep {structure:.0f} MB "
          f"outside the pool with a tiny model ({1024 * structure / max(steps, 1):.0f} kB per "
          f"unrolled step and layer); without it shared would be "
          f"{rest / single['peak_rss_mb']:.2f}x single", flush=True)
    fused = {p: best(args, f"{p} ({count} b.), fused" if p != "single" else "single, fused",
                     policy=p, buckets=count, cell="fused")
             for p in ("single", "shared", "dynamic")}
    one = fused["single"]["peak_rss_mb"]
    print(f"  -> fused layers: shared = {fused['shared']['peak_rss_mb'] / one:.2f}x, dynamic = "
          f"{fused['dynamic']['peak_rss_mb'] / one:.2f}x their single largest graph", flush=True)
    return {**r, "tiny_single": t_single, "tiny_shared": t_shared, "structure_mb": structure,
            **{f"fused_{p}": x for p, x in fused.items()}}


def cells(args, count: int) -> dict:
    """Unrolled vs fused on the same batches, with the real vocabulary and with a tiny one."""
    results = {}
    for vocab in dict.fromkeys((args.vocab, 100)):
        r = results[vocab] = {}
        for cell in ("unrolled", "fused"):
            x = r[cell] = best(args, f"{cell}, vocab {vocab}", policy="static", buckets=count,
                               cell=cell, vocab=vocab)
            print(f"{cell:<9} static, {count} buckets, vocab {vocab}: {x['tokens_per_s']:>9} "
                  f"real tokens/s, first losses/token {x['first_losses']}, mean {x['mean_loss']}")
        gap = max(abs(a - b) for a, b in zip(r["unrolled"]["losses"], r["fused"]["losses"]))
        print(f"  -> vocab {vocab}: loss per token, first step {r['unrolled']['losses'][0]:.4f}, "
              f"last step {r['unrolled']['losses'][-1]:.4f}; largest per-step gap fused vs "
              f"unrolled {gap:.1e}", flush=True)
        ratio = r["fused"]["tokens_per_s"] / r["unrolled"]["tokens_per_s"]
        print(f"  -> vocab {vocab}: fused = {ratio:.2f}x unrolled real tokens/s (target >= 2x)",
              flush=True)
    return results


if __name__ == "__main__":
    main()
