"""One length-agnostic graph (``cell="foreach"``) against one graph per bucket and the fused
layer: when is one graph worth its per-step cost?

Usage::

    flock /tmp/bench.lock python -m benchmarks.foreach [--rounds 2] [--steps 16] [--limit N]

The model is the default PTB language model (``LanguageModel``, 2 x 200 LSTM, embedding 200,
tied weights, Adam), batch 32, ``GraphCache(memory="static")`` unless ``--memory`` says
otherwise. For each data set (the Penn Treebank train sentences, and a heavy-tailed synthetic
length distribution where many buckets would be needed) and each bucketing (K = 8, 32, and no
bucketing: one bucket, padded to the longest) each cell (``foreach``, ``unrolled``, ``fused``)
runs in a fresh process (:func:`worker`, so its peak RSS is its own): it compiles every bucket
of its plan (``GraphCache.warmup``: one forward/backward per key; the compile column), then
times ``--steps`` training steps of its shuffled epoch-0 schedule, loader included. Rounds
alternate the order of the arms; the table gives the median over rounds and the spread.

Real tokens per CPU-second are real (non-padding) target tokens over the process CPU time of
the timed steps (all threads; the workers run with ``OMP_NUM_THREADS=1``, so on a shared
machine this is less noisy than wall time, which is given too).

:func:`measure` returns the raw figures as a dict and :func:`markdown` renders the table, for a
caller such as ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.common import write_json

__all__ = ["CELLS", "BUCKETINGS", "heavy_tailed", "main", "markdown", "measure",
           "shape_switch", "worker"]

CELLS = ("foreach", "unrolled", "fused")
BUCKETINGS = (8, 32, 1)  # 1: no bucketing, every batch padded to the longest sequence
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = dict(embed_size=200, hidden_size=200, num_layers=2, tie_weights=True)
# --tiny (the smoke run of make bench's driver): every code path, a model and a longest
# sequence small enough that compiling the unrolled arm's graphs takes well under a second.
TINY_MODEL = dict(embed_size=16, hidden_size=16, num_layers=1, tie_weights=True)
TINY_LONGEST = 40


def heavy_tailed(n: int = 4000, vocab_size: int = 10_000, longest: int = 200,
                 seed: int = 0):
    """``n`` random-token sequences whose lengths follow a Pareto (Lomax, shape 1.2) tail:
    most are short, a few reach ``longest`` (lengths ``2 + floor(6 * X)``, cut at ``longest``).
    Returns ``(tokens, offsets)``."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(2 + np.floor(6 * rng.pareto(1.2, n)).astype(np.int64), longest)
    lengths[0] = longest  # the tail is really there in every draw
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(0, vocab_size, offsets[-1]).astype(np.int32)
    return tokens, offsets


def worker(spec: dict) -> dict:
    """One arm in this process: build, compile every bucket, time the steps."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from bucketrnn.data.datasets import FlatSequences
    from bucketrnn.data.loader import BucketLoader
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.models import LanguageModel

    with np.load(spec["data"]) as f:
        data = FlatSequences(f["tokens"], f["offsets"])
    loader = BucketLoader(data, batch_size=spec["batch_size"], num_buckets=spec["buckets"],
                          shuffle=True, seed=0, task="lm", num_workers=0)
    plan = loader.plan
    factory = LanguageModel.factory(vocab_size=spec["vocab_size"], cell=spec["cell"],
                                    **spec.get("model", MODEL))
    graphs = GraphCache(factory, memory=spec["memory"], keys=plan.keys)
    mx.random.seed(0)
    graphs.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 1e-3})
    batches = iter(loader)
    first = next(batches)
    wall, cpu = time.perf_counter(), time.process_time()
    graphs.warmup(plan, example=first)
    compile_wall, compile_cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = slots = 0
    losses = []
    wall, cpu = time.perf_counter(), time.process_time()
    batch = first
    for step in range(spec["steps"]):
        if step:
            batch = next(batches)
        real = float((batch.valid_length.asnumpy() * batch.weight.asnumpy()).sum())
        with autograd.record():
            loss_sum = graphs(batch).sum()
            loss = loss_sum / real
        loss.backward()
        trainer.step(1)
        losses.append(loss)
        tokens += real
        slots += batch.data.size
    mx.nd.waitall()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return {"cell": spec["cell"], "buckets": spec["buckets"], "data": spec["name"],
            "plan_buckets": plan.num_buckets, "longest": int(max(plan.keys)),
            "graphs": graphs.compiled, "keys": len(graphs.keys),
            "compile_s": compile_wall, "compile_cpu_s": compile_cpu,
            "tokens": tokens, "slot_waste": 1 - tokens / max(slots, 1),
            "cpu_s": cpu, "wall_s": wall, "tokens_per_cpu_s": tokens / cpu,
            "tokens_per_wall_s": tokens / wall, "peak_rss_mb": peak,
            "first_loss": float(losses[0].asscalar()), "last_loss": float(losses[-1].asscalar())}


def shape_switch(memory: str = "dynamic", lengths=(29, 30, 31), steps: int = 12,
                 batch_size: int = 32, vocab_size: int = 10_000, model=None) -> dict:
    """What a change of input shape costs one hybridized foreach block, in this process.

    Times forward + backward steps of one ``LanguageModel(cell="foreach")`` hybridized as
    ``GraphCache`` does for ``memory``, (a) at one length over and over, (b) cycling through
    ``lengths`` (nearly the same work, a new input shape every step), interleaved in rounds.
    Returns the CPU milliseconds per step of each and the count of symbolic traces."""
    import mxnet as mx
    from mxnet import autograd

    from bucketrnn.models import LanguageModel

    lm = LanguageModel(None, vocab_size=vocab_size, cell="foreach", **(model or MODEL))
    lm.initialize(mx.init.Xavier())
    traces = []
    original = lm.hybrid_forward

    def traced(F, *args, **kwargs):
        if F is mx.sym:
            traces.append(1)
        return original(F, *args, **kwargs)

    lm.hybrid_forward = traced
    lm.hybridize(static_alloc=memory == "static", static_shape=False)
    rng = np.random.default_rng(0)

    def one(length):
        ids = mx.nd.array(rng.integers(0, vocab_size, (batch_size, length)), dtype="int32")
        vl = mx.nd.array(rng.integers(1, length + 1, batch_size), dtype="int32")
        with autograd.record():
            loss = lm(ids, vl, ids, mx.nd.ones(batch_size)).sum()
        loss.backward()
        mx.nd.waitall()

    for length in lengths:  # first sight of every shape, untimed
        one(length)
    middle = lengths[len(lengths) // 2]
    cpu = {"same": 0.0, "switch": 0.0}
    for _ in range(steps // len(lengths)):
        for arm, run in (("same", [middle] * len(lengths)), ("switch", list(lengths))):
            started = time.process_time()
            for length in run:
                one(length)
            cpu[arm] += time.process_time() - started
    n = (steps // len(lengths)) * len(lengths)
    return {"memory": memory, "lengths": list(lengths), "steps": n,
            "same_ms": 1000 * cpu["same"] / n, "switch_ms": 1000 * cpu["switch"] / n,
            "traces": len(traces)}


def _prepare(folder: str, limit: int | None, longest: int = 200) -> dict:
    from bucketrnn.data.datasets import penn_treebank

    ptb, vocab = penn_treebank("train", limit=limit)
    paths = {"ptb": os.path.join(folder, "ptb.npz"), "heavy": os.path.join(folder, "heavy.npz")}
    np.savez(paths["ptb"], tokens=ptb.tokens, offsets=ptb.offsets)
    tokens, offsets = heavy_tailed(n=limit or 4000, vocab_size=len(vocab), longest=longest)
    np.savez(paths["heavy"], tokens=tokens, offsets=offsets)
    return {"paths": paths, "vocab_size": len(vocab),
            "sequences": {"ptb": len(ptb), "heavy": len(offsets) - 1}}


def _run(spec: dict, folder: str, tag: str, timeout: float) -> dict:
    spec_path, out_path = (os.path.join(folder, f"{tag}.{e}.json") for e in ("spec", "out"))
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MXNET_SUBGRAPH_VERBOSE="0", OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run([sys.executable, "-m", "benchmarks.foreach", "--worker", spec_path,
                           out_path], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"arm {tag} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    with open(out_path) as f:
        return json.load(f)


def measure(rounds: int = 2, steps: int = 16, limit: int | None = 4000, batch_size: int = 32,
            memory: str = "static", cells=CELLS, bucketings=BUCKETINGS,
            datasets=("ptb", "heavy"), timeout: float = 1200, log=print, model=None,
            longest: int = 200) -> dict:
    """Run every (data set, bucketing, cell) arm ``rounds`` times, interleaved; the raw rows and
    the medians per arm. ``model``: the LanguageModel's sizes (default :data:`MODEL`);
    ``longest``: the heavy-tailed set's longest sequence."""
    model = dict(model or MODEL)
    arms = [(d, k, c) for d in datasets for k in bucketings for c in cells]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        prepared = _prepare(folder, limit, longest)
        for r in range(rounds):
            for d, k, c in (arms if r % 2 == 0 else arms[::-1]):
                spec = {"data": prepared["paths"][d], "name": d, "buckets": k, "cell": c,
                        "steps": steps, "batch_size": batch_size, "memory": memory,
                        "vocab_size": prepared["vocab_size"], "model": model}
                load = os.getloadavg()[0]
                row = _run(spec, folder, f"{d}-{k}-{c}-{r}", timeout)
                row.update(round=r, load=load)
                rows.append(row)
                if log:
                    log(f"round {r} {d:5} K={k:<2} {c:8} load {load:4.1f}  "
                        f"{row['tokens_per_cpu_s']:8,.0f} real tokens/CPU-s  compile "
                        f"{row['compile_s']:5.1f} s  peak {row['peak_rss_mb']:6.0f} MB  "
                        f"graphs {row['graphs']}")
    summary = []
    for d, k, c in arms:
        mine = [x for x in rows if (x["data"], x["buckets"], x["cell"]) == (d, k, c)]
        tps = [x["tokens_per_cpu_s"] for x in mine]
        summary.append({"data": d, "buckets": k, "cell": c,
                        "tokens_per_cpu_s": statistics.median(tps), "spread": [min(tps),
                                                                               max(tps)],
                        "tokens_per_wall_s": statistics.median(x["tokens_per_wall_s"]
                                                               for x in mine),
                        "compile_s": statistics.median(x["compile_s"] for x in mine),
                        "peak_rss_mb": max(x["peak_rss_mb"] for x in mine),
                        "graphs": mine[0]["graphs"], "keys": mine[0]["keys"],
                        "longest": mine[0]["longest"], "slot_waste": mine[0]["slot_waste"]})
    for s in summary:
        ref = next(x for x in summary if (x["data"], x["buckets"], x["cell"])
                   == (s["data"], s["buckets"], "unrolled"))
        s["x_unrolled"] = s["tokens_per_cpu_s"] / ref["tokens_per_cpu_s"]
    return {"config": {"rounds": rounds, "steps": steps, "limit": limit,
                       "batch_size": batch_size, "memory": memory, **model,
                       "vocab_size": prepared["vocab_size"],
                       "sequences": prepared["sequences"]},
            "rows": rows, "summary": summary,
            "load": [min(x["load"] for x in rows), max(x["load"] for x in rows)]}


def markdown(result: dict) -> str:
    """The summary of :func:`measure` as a markdown table (with a line on the setup)."""
    c = result["config"]
    names = {"ptb": "PTB", "heavy": "heavy-tailed"}
    lines = [
        f"Model {c['num_layers']} x {c['hidden_size']} LSTM LM (embedding {c['embed_size']}, "
        f"tied, vocabulary {c['vocab_size']}), batch {c['batch_size']}, Adam, "
        f"`memory={c['memory']!r}`, `OMP_NUM_THREADS=1`; {c['steps']} timed steps per arm and "
        f"round, {c['rounds']} interleaved rounds (median; spread = min-max over rounds); "
        f"sequences: PTB {c['sequences']['ptb']} (first train sentences), heavy-tailed "
        f"{c['sequences']['heavy']}; 1-minute load {result['load'][0]:.1f}-"
        f"{result['load'][1]:.1f}.",
        "",
        "| data | buckets | cell | real tokens per CPU-s (spread) | x unrolled | real tokens/s "
        "wall | compile s | peak RSS MB | graphs (keys) | slot waste |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["summary"]:
        k = f"K={s['buckets']}" if s["buckets"] > 1 else f"none (pad to {s['longest']})"
        lines.append(
            f"| {names.get(s['data'], s['data'])} | {k} | {s['cell']} | "
            f"{s['tokens_per_cpu_s']:,.0f} ({s['spread'][0]:,.0f}-{s['spread'][1]:,.0f}) | "
            f"{s['x_unrolled']:.2f} | {s['tokens_per_wall_s']:,.0f} | {s['compile_s']:.1f} | "
            f"{s['peak_rss_mb']:,.0f} | {s['graphs']} ({s['keys']}) | "
            f"{100 * s['slot_waste']:.0f}% |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.foreach",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=16, help="timed steps per arm and round")
    ap.add_argument("--limit", type=int, default=4000,
                    help="first N PTB train sentences (and N synthetic ones); 0: all of PTB")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--memory", default="static", choices=("shared", "static", "dynamic"))
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--buckets", default=",".join(map(str, BUCKETINGS)))
    ap.add_argument("--data", default="ptb,heavy")
    ap.add_argument("--json", default=None, help="also write the raw figures here")
    ap.add_argument("--tiny", action="store_true",
                    help=f"smoke size: a {TINY_MODEL['num_layers']} x "
                         f"{TINY_MODEL['hidden_size']} model and heavy-tailed sequences of at "
                         f"most {TINY_LONGEST} tokens")
    ap.add_argument("--switch", action="store_true",
                    help="only measure what a change of input shape costs one foreach block "
                         "(dynamic and static allocation, in fresh processes)")
    args = ap.parse_args(argv)
    if args.worker:
        with open(args.worker[0]) as f:
            spec = json.load(f)
        result = shape_switch(**spec["switch"]) if "switch" in spec else worker(spec)
        with open(args.worker[1], "w") as f:
            json.dump(result, f)
        return None
    if args.switch:
        rows = []
        with tempfile.TemporaryDirectory() as folder:
            for r in range(args.rounds):
                for memory in ("dynamic", "static"):
                    spec = {"switch": {"memory": memory, "steps": args.steps,
                                       "batch_size": args.batch_size}}
                    rows.append(_run(spec, folder, f"switch-{memory}-{r}", 1200))
        for row in rows:
            print(f"memory={row['memory']!r:9} lengths {row['lengths']}: one length "
                  f"{row['same_ms']:.1f} CPU-ms/step, a new shape every step "
                  f"{row['switch_ms']:.1f} CPU-ms/step (x{row['switch_ms'] / row['same_ms']:.2f}), "
                  f"traced {row['traces']}x")
        return {"switch": rows}
    for name in ("rounds", "steps", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    cells = [c for c in args.cells.split(",") if c]
    bad = [c for c in cells if c not in CELLS]
    if bad or "unrolled" not in cells:
        ap.error(f"--cells must be a subset of {','.join(CELLS)} including unrolled (the "
                 f"reference of the ratios), got {args.cells!r}")
    result = measure(args.rounds, args.steps, args.limit or None, args.batch_size, args.memory,
                     cells, [int(k) for k in args.buckets.split(",")],
                     [d for d in args.data.split(",") if d],
                     model=TINY_MODEL if args.tiny else None,
                     longest=TINY_LONGEST if args.tiny else 200)
    print()
    print(markdown(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
