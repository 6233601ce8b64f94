"""``num_buckets="auto"`` against the best fixed K, in real tokens/s over the planned run
including compile time, measured on the real graphs.

Usage::

    python -m benchmarks.autoplan [--epochs 2] [--ks 4,8,12,16,24,32,48] [--repeats 3]
                                  [--check-limit 6000] [--tiny] [--json out.json]
                                  [--only ptb,lognormal,pareto,check]
    python -m benchmarks.autoplan --render a.json b.json ...     # one table of several jobs

The model is the app's default (2-layer unrolled LSTM LM, 200 units, tied 10,000-word output,
batch 32, memory policy ``shared``) and the planned run is the app's default length (2 epochs).
Three length distributions: Penn Treebank's training sentences, a log-normal and a Pareto
(heavy-tailed) one of the same size (synthetic lengths; the graphs' cost does not depend on
which token ids fill them).

Method (per distribution):

1. ``auto``: :func:`bucketrnn.autoplan.costmodel.probe` measures the real graph at a few shapes and
   :func:`bucketrnn.autoplan.auto_plan` plans with the fitted model.
2. ``K=4..48``: the ``optimal`` plan with at most K buckets.
3. Every bucket key of every plan is measured on the real graph, in one ``GraphCache`` bound
   longest first as a run binds them: its compile time (first call less a step) and its step
   time (forward, backward, update, loss read back; fastest of ``--repeats`` after a warm-up)
   at the plan's rows. A plan's time is ``epochs * sum(batches_k * step_k) + sum(compile_k)``
   and its real tokens/s ``epochs * real_tokens / time``. All plans share the same per-key
   measurements, so the comparison between plans is paired.
4. Check against real training (``--check-limit`` sentences of Penn Treebank, one epoch):
   auto and the best fixed K of that subset each train with
   :class:`bucketrnn.training.loop.TrainLoop` from fresh graphs, interleaved over ``--rounds``
   rounds; the wall time of the fit (compile included) gives real tokens/s, set beside what
   step 3's per-key figures predict for the same plan. The median of the per-round ratios is
   reported, with every round's.

:func:`measure` returns the figures as a dict; :func:`markdown` renders them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks.common import write_json

__all__ = ["distributions", "key_costs", "main", "markdown", "measure", "merge",
           "plan_seconds"]

KS = (4, 8, 12, 16, 24, 32, 48)


def distributions(n: int | None = None, seed: int = 0) -> dict:
    """``{name: lengths}``: Penn Treebank (language-model lengths, words + <eos> - 1), and
    log-normal and Pareto lengths of the same count."""
    from bucketrnn.data.datasets import penn_treebank

    train, _ = penn_treebank("train", limit=n)
    ptb = np.asarray(train.lengths(), dtype=np.int64) - 1
    rng = np.random.default_rng(seed)
    lognormal = np.clip(np.round(rng.lognormal(np.log(22), 0.55, ptb.size)), 2, 160)
    pareto = np.clip(np.round(6 * (1 + rng.pareto(1.6, ptb.size))), 2, 320)
    return {"ptb": ptb, "lognormal": lognormal.astype(np.int64),
            "pareto": pareto.astype(np.int64)}


def _model(vocab: int, tiny: bool):
    from bucketrnn.models import LanguageModel

    size = 16 if tiny else 200
    return LanguageModel.factory(vocab_size=vocab, hidden_size=size, num_layers=2)


def key_costs(build, example, keys, rows: int, ctx, memory: str = "shared",
              repeats: int = 3) -> dict:
    """``{key: (step_seconds, compile_seconds)}`` of the real graph, bound longest first."""
    import mxnet as mx
    from mxnet import gluon

    from bucketrnn.autoplan.costmodel import probe_step
    from bucketrnn.graphs.cache import GraphCache, batch_like

    keys = sorted(set(int(k) for k in keys), reverse=True)
    graphs = GraphCache(build, ctx=ctx, memory=memory, keys=[keys[0]], memory_limit=None)
    graphs.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 1e-6})

    step = probe_step(graphs, trainer)  # timed as the probe times it
    out = {}
    for key in keys:
        batch = batch_like(example, key, rows)
        t0 = time.perf_counter()
        step(batch)
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - t0)
        out[key] = (min(times), max(first - min(times), 0.0))
    return out


def plan_seconds(plan, costs: dict, epochs: float) -> dict:
    """Time, compile share and real tokens/s of ``plan`` from per-key ``costs``."""
    steps = sum(n * costs[k][0] for k, n in zip(plan.keys, plan.bucket_num_batches))
    comp = sum(costs[k][1] for k in plan.keys)
    total = epochs * steps + comp
    return {"buckets": plan.num_buckets, "seconds": total, "compile_seconds": comp,
            "compile_share": comp / total, "tokens_per_s": epochs * plan.real_tokens / total,
            "waste": plan.waste}


def _plans(lengths, cost, epochs, ks, rows):
    from bucketrnn.autoplan import auto_plan
    from bucketrnn.data.plan import plan_buckets

    plans = {"auto": auto_plan(lengths, cost, batch_size=rows, epochs=epochs)}
    distinct = np.unique(lengths).size
    for k in ks:
        if k <= distinct:
            plans[f"K={k}"] = plan_buckets(lengths, num_buckets=k, batch_size=rows)
    return plans


def _one(name, lengths, build_fn, example, args, ctx) -> dict:
    from bucketrnn.autoplan.costmodel import probe, probe_lengths

    cost = probe(build_fn(), example, probe_lengths(lengths), args.rows, ctx=ctx,
                 repeats=args.repeats)
    plans = _plans(lengths, cost, args.epochs, args.ks, args.rows)
    keys = set().union(*(p.keys for p in plans.values()))
    started = time.perf_counter()
    costs = key_costs(build_fn(), example, keys, args.rows, ctx, repeats=args.repeats)
    arms = {arm: plan_seconds(p, costs, args.epochs) for arm, p in plans.items()}
    arms["auto"]["predicted_tokens_per_s"] = plans["auto"].auto.tokens_per_s
    fixed = {a: r for a, r in arms.items() if a != "auto"}
    best = max(fixed, key=lambda a: fixed[a]["tokens_per_s"])
    return {"name": name, "examples": int(lengths.size), "distinct": int(np.unique(lengths).size),
            "max_length": int(lengths.max()), "mean_length": float(lengths.mean()),
            "epochs": args.epochs, "probe_seconds": cost.probe_seconds,
            "probe_share": cost.probe_seconds / arms["auto"]["seconds"],
            "cost_model": cost.to_dict(), "auto_choice": plans["auto"].auto.to_dict(),
            "keys_measured": len(keys), "measure_seconds": time.perf_counter() - started,
            "arms": arms, "best_fixed": best,
            "auto_vs_best": arms["auto"]["tokens_per_s"] / fixed[best]["tokens_per_s"]}


def _train_check(lengths_limit, args, ctx, build_fn, example) -> dict:
    """Auto and the best fixed K of the subset, trained for real (one epoch each)."""
    from bucketrnn.autoplan.costmodel import probe, probe_lengths
    from bucketrnn.data.datasets import penn_treebank
    from bucketrnn.data.loader import BucketLoader
    from bucketrnn.training.loop import TrainLoop

    train, _ = penn_treebank("train", limit=lengths_limit)
    lengths = np.asarray(train.lengths(), dtype=np.int64) - 1
    cost = probe(build_fn(), example, probe_lengths(lengths), args.rows, ctx=ctx,
                 repeats=args.repeats)
    plans = _plans(lengths, cost, 1.0, args.ks, args.rows)
    costs = key_costs(build_fn(), example, set().union(*(p.keys for p in plans.values())),
                      args.rows, ctx, repeats=args.repeats)
    predicted = {a: plan_seconds(p, costs, 1.0) for a, p in plans.items()}
    best = max((a for a in predicted if a != "auto"), key=lambda a: predicted[a]["tokens_per_s"])
    out = {"examples": int(lengths.size), "best_fixed": best, "arms": {}}
    for arm in ("auto", best) * args.rounds:  # interleaved: A, B, A, B, ...
        plan = plans[arm]
        loader = BucketLoader(train, batch_size=args.rows, strategy="fixed",
                              boundaries=list(plan.boundaries), seed=0, ctx=ctx)
        loop = TrainLoop(build_fn(), loader, ctx=ctx, epochs=1, progress=False, seed=0,
                         log_every=10**6, optimizer_params={"learning_rate": 1e-3})
        t0 = time.perf_counter()
        history = loop.fit()
        wall = time.perf_counter() - t0
        real = history["real_tokens"] / wall
        rec = out["arms"].setdefault(arm, {"buckets": plan.num_buckets, "real_tokens_per_s": [],
                                           "predicted_tokens_per_s":
                                               predicted[arm]["tokens_per_s"]})
        rec["real_tokens_per_s"].append(real)
    ratios = [a / b for a, b in zip(out["arms"]["auto"]["real_tokens_per_s"],
                                    out["arms"][best]["real_tokens_per_s"])]
    out["round_ratios"] = ratios
    out["auto_vs_best_real"] = float(np.median(ratios))
    out["auto_vs_best_predicted"] = (predicted["auto"]["tokens_per_s"]
                                     / predicted[best]["tokens_per_s"])
    return out


def measure(epochs: float = 2.0, ks=KS, repeats: int = 3, check_limit: int | None = 6000,
            tiny: bool = False, rows: int = 32, only=None, rounds: int = 3) -> dict:
    """Run the benchmark; returns the figures (see the module docstring). ``only``: names of
    the distributions to measure (default all; ``check`` runs the training check, which also
    needs ``check_limit``)."""
    import mxnet as mx

    from bucketrnn.autoplan.costmodel import example_batch
    from bucketrnn.data.datasets import penn_treebank

    args = argparse.Namespace(epochs=epochs, ks=tuple(ks), repeats=repeats, rows=rows,
                              rounds=rounds)
    ctx = mx.cpu()
    train, vocab = penn_treebank("train", limit=200 if tiny else None)
    example = example_batch(train, rows=2, ctx=ctx)

    def build_fn():
        return _model(len(vocab), tiny)

    result = {"load_before": os.getloadavg(), "threads": os.environ.get("OMP_NUM_THREADS"),
              "rows": rows, "epochs": epochs, "ks": list(ks), "distributions": []}
    for name, lengths in distributions(200 if tiny else None).items():
        if only is None or name in only:
            result["distributions"].append(_one(name, lengths, build_fn, example, args, ctx))
    if check_limit and (only is None or "check" in only):
        result["check"] = _train_check(200 if tiny else check_limit, args, ctx, build_fn,
                                       example)
    result["load_after"] = os.getloadavg()
    return result


def merge(results: list) -> dict:
    """One result of several jobs' (``--only``): distributions and check side by side; the
    load figures are the extremes over the jobs."""
    out = dict(results[0], distributions=[])
    for r in results:
        out["distributions"] += r["distributions"]
        if "check" in r:
            out["check"] = r["check"]
    out["load_before"] = max((r["load_before"] for r in results), key=lambda x: x[0])
    out["load_after"] = max((r["load_after"] for r in results), key=lambda x: x[0])
    return out


def markdown(result: dict) -> str:
    """The figures as markdown tables."""
    arms = ["auto"] + [f"K={k}" for k in result["ks"]]
    head = "| distribution | " + " | ".join(arms) + " | auto / best K | auto compile | probe |"
    lines = [head, "|" + "---|" * (len(arms) + 4)]
    for d in result["distributions"]:
        cells = []
        for arm in arms:
            r = d["arms"].get(arm)
            if r is None:
                cells.append("n/a")
                continue
            mark = "**" if arm == d["best_fixed"] else ""
            label = f" (K={r['buckets']})" if arm == "auto" else ""
            cells.append(f"{mark}{r['tokens_per_s']:,.0f}{mark}{label}")
        auto = d["arms"]["auto"]
        lines.append(f"| {d['name']} (N={d['examples']}, max {d['max_length']}) | "
                     + " | ".join(cells)
                     + f" | {d['auto_vs_best']:.3f} | {100 * auto['compile_share']:.1f}% | "
                     f"{d['probe_seconds']:.1f} s ({100 * d['probe_share']:.1f}%) |")
    check = result.get("check")
    if check:
        lines += ["", f"Real training check ({check['examples']} Penn Treebank sentences, one "
                  "epoch, TrainLoop wall time incl. compile, interleaved rounds):", "",
                  "| arm | buckets | predicted tokens/s | real tokens/s (rounds) |",
                  "|---|---|---|---|"]
        for arm, rec in check["arms"].items():
            rounds = ", ".join(f"{v:,.0f}" for v in rec["real_tokens_per_s"])
            lines.append(f"| {arm} | {rec['buckets']} | {rec['predicted_tokens_per_s']:,.0f} | "
                         f"{rounds} |")
        lines.append("")
        rounds = ", ".join(f"{r:.3f}" for r in check.get("round_ratios", []))
        predicted = check.get("auto_vs_best_predicted", float("nan"))
        lines.append(f"auto / {check['best_fixed']} in real training: median "
                     f"{check['auto_vs_best_real']:.3f} over rounds ({rounds}); predicted from "
                     f"the per-key figures: {predicted:.3f}")
    lines.append("")
    lines.append(f"Load average before {tuple(round(x, 2) for x in result['load_before'])}, "
                 f"after {tuple(round(x, 2) for x in result['load_after'])}; OMP_NUM_THREADS="
                 f"{result['threads']}; rows {result['rows']}, {result['epochs']:g} epochs.")
    return "\n".join(lines)


def main(argv=None) -> dict:
    """Entry point of ``python -m benchmarks.autoplan``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.autoplan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--ks", default=",".join(map(str, KS)))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check-limit", type=int, default=6000, help="0: no training check")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the check")
    p.add_argument("--tiny", action="store_true", help="a 16-unit model on 200 sentences")
    p.add_argument("--json", default=None, help="write the figures here too")
    p.add_argument("--only", default=None,
                   help="comma list of ptb,lognormal,pareto,check (one short job each)")
    p.add_argument("--render", nargs="+", default=None,
                   help="merge these --json files into one table instead of measuring")
    a = p.parse_args(argv)
    if a.render:
        result = merge([json.load(open(path)) for path in a.render])
        print(markdown(result))
        return result
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    result = measure(a.epochs, tuple(int(k) for k in a.ks.split(",")), a.repeats,
                     a.check_limit or None, a.tiny, only=a.only and a.only.split(","),
                     rounds=a.rounds)
    print(markdown(result))
    write_json(a.json, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
