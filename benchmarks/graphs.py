"""Benchmark the graph cache: memory and speed of the memory policies, unrolled vs fused cells.

Each configuration runs in a fresh subprocess, so its peak RSS (``ru_maxrss``) is its own:

* ``shared`` / ``static`` / ``dynamic`` with 8 and 32 buckets, next to one graph of the
  largest bucket alone (``single``): peak RSS and training steps/s on the same schedule of
  Penn-Treebank-like sentence lengths (2..83 tokens, synthetic, seeded);
* the unrolled and the fused LSTM language model on the same batches: real (unpadded)
  tokens/s and the losses they compute.

Run from the repository root::

    .venv/bin/python benchmarks/graphs.py --hidden 200 --vocab 4000 --steps 40
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
    label = rng.integers(1, vocab, (len(vl), key))
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

    from bucketrnn.graphs import GraphCache
    from bucketrnn.models import LanguageModel

    lengths = ptb_like_lengths(20000, args.seed)
    keys = boundaries(lengths, args.buckets)
    steps = schedule(args, keys)
    if args.policy == "single":  # one graph, the largest bucket, every step padded to it
        keys, steps = [keys[-1]], [(keys[-1], vl) for _, vl in steps]
    memory = "static" if args.policy == "single" else args.policy
    factory = LanguageModel.factory(vocab_size=args.vocab, hidden_size=args.hidden,
                                    num_layers=args.layers, cell=args.cell)
    graphs = GraphCache(factory, ctx=mx.cpu(), memory=memory, keys=keys)
    graphs.initialize(mx.init.Uniform(0.1))
    trainer = gluon.Trainer(graphs.collect_params(), "sgd", {"learning_rate": 1.0})
    batches = [make_batch(k, vl, args.vocab, args.seed + i) for i, (k, vl) in enumerate(steps)]
    base = rss_mb()
    started = time.perf_counter()
    compile_s = graphs.warmup(keys, example=batches[0], batch_size=args.batch_size)
    warm = time.perf_counter() - started
    losses, tokens = [], 0
    mx.nd.waitall()
    started = time.perf_counter()
    for batch in batches:
        n = int(batch.valid_length.sum().asscalar())
        with autograd.record():
            loss = graphs(batch)
            mean = loss.sum() / n
        mean.backward()
        trainer.step(1)
        tokens += n
        losses.append(loss)
    mx.nd.waitall()
    elapsed = time.perf_counter() - started
    per_token = [float(l.sum().asscalar()) / int(b.valid_length.sum().asscalar())
                 for l, b in zip(losses, batches)]
    return {
        "policy": args.policy, "cell": args.cell, "buckets": len(keys),
        "peak_rss_mb": round(rss_mb(), 1), "rss_before_warmup_mb": round(base, 1),
        "steps_per_s": round(len(batches) / elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1), "warmup_s": round(warm, 2),
        "slowest_compile_s": round(max(compile_s.values()), 3),
        "first_losses": [round(x, 4) for x in per_token[:3]],
        "mean_loss": round(float(np.mean(per_token)), 4),
        "graphs": graphs.compiled,
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--layers", type=int, default=1)
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
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(f"# LSTM LM hidden={args.hidden} vocab={args.vocab} layers={args.layers} "
          f"batch={args.batch_size} steps={args.steps}, PTB-like lengths {MIN_LEN}..{MAX_LEN}")
    print(f"{'config':<22}{'graphs':>7}{'peak RSS MB':>13}{'steps/s':>9}{'tokens/s':>10}"
          f"{'warmup s':>10}")
    results = {}
    counts = [int(c) for c in args.bucket_counts.split(",")]
    for count in counts if args.only != "cells" else []:
        for policy in ("single", "shared", "static", "dynamic"):
            runs = [run(args, policy=policy, buckets=count) for _ in range(args.repeat)]
            # Best of the repeats: a shared machine only ever slows a run down.
            r = max(runs, key=lambda x: x["steps_per_s"])
            r["peak_rss_mb"] = min(x["peak_rss_mb"] for x in runs)
            results[(policy, count)] = r
            print(f"{policy + ' (' + str(count) + ' b.)':<22}{r['graphs']:>7}"
                  f"{r['peak_rss_mb']:>13}{r['steps_per_s']:>9}{r['tokens_per_s']:>10}"
                  f"{r['warmup_s']:>10}", flush=True)
        single, shared, static = (results[(p, count)] for p in ("single", "shared", "static"))
        print(f"  -> {count} buckets: shared peak RSS = "
              f"{shared['peak_rss_mb'] / single['peak_rss_mb']:.2f}x single largest graph "
              f"(target <= 1.3x), static = {static['peak_rss_mb'] / single['peak_rss_mb']:.2f}x;"
              f" shared step rate = {shared['steps_per_s'] / static['steps_per_s']:.2f}x static"
              f" (target >= 0.97x)", flush=True)
    if args.only == "policies":
        return
    count = counts[0]
    cells = {c: run(args, policy="static", buckets=count, cell=c) for c in ("unrolled", "fused")}
    for cell, r in cells.items():
        print(f"{cell:<9} static, {count} buckets: {r['tokens_per_s']:>9} real tokens/s, "
              f"first losses/token {r['first_losses']}, mean {r['mean_loss']}")
    ratio = cells["fused"]["tokens_per_s"] / cells["unrolled"]["tokens_per_s"]
    print(f"  -> fused = {ratio:.2f}x unrolled real tokens/s (target >= 2x)")


if __name__ == "__main__":
    main()
