"""Sequence pairs planned on the source side only against both sides: waste and training speed.

Usage::

    python -m benchmarks.pairplan [--pairs 3000] [--rounds 3] [--buckets 8] [--tiny] [--json F]

Two corpora of ``--pairs`` pairs: ``toy`` (:func:`bucketrnn.data.pairs.toy_pairs`,
``"translit"``, whose targets follow the sources closely) and ``weak`` (generated: source lengths
as ``toy``, each target length ``round(0.3 * source + lognormal noise)``, so target lengths
correlate only weakly with source lengths; random letters). Two plans of each with the same
number of keys (graphs) and batch size: ``source-side`` (the boundaries the one-sided ``optimal``
strategy chooses on source lengths, every key's target length its bucket's longest target: the
plan before pairs were planned on both sides) and ``two-sided`` (``plan_buckets``' ``optimal``
now: source buckets split on target lengths, :mod:`bucketrnn.data.pairplan`). Reported per
plan: keys, waste (the share of computed slots, source plus target steps with fill rows, that is
not real tokens) and, training the same :class:`~bucketrnn.models.Seq2Seq` from the same initial
parameters for one epoch per round with every graph compiled first, real tokens per second
(source plus target; target tokens alone too) and CPU seconds per 1,000 real tokens. The arms
alternate within each corpus (A B, B A, ...) so load changes hit both; the load average is
recorded before each epoch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from benchmarks.common import write_json

__all__ = ["corpora", "main", "markdown", "measure", "plans"]


def weak_pairs(n: int, max_length: int = 44, seed: int = 0) -> list:
    """``n`` random-letter pairs whose target lengths correlate weakly with their sources'."""
    rng = np.random.default_rng(seed)
    src = np.clip(np.rint(rng.lognormal(np.log(9.0), 0.6, n)), 3, max_length).astype(int)
    tgt = np.clip(np.rint(0.3 * src + rng.lognormal(np.log(6.0), 0.7, n)), 2,
                  max_length).astype(int)
    letters = list("abcdefghijkl")
    return [([letters[i] for i in rng.integers(0, 12, s)],
             [letters[i].upper() for i in rng.integers(0, 12, t)]) for s, t in zip(src, tgt)]


def corpora(pairs: int, max_length: int = 44, seed: int = 0) -> dict:
    """``{"toy": pairs, "weak": pairs}`` as token lists."""
    from bucketrnn.data.pairs import toy_pairs

    return {"toy": toy_pairs(pairs, "translit", max_length=max_length, seed=seed),
            "weak": weak_pairs(pairs, max_length=max_length, seed=seed)}


def plans(lengths, buckets: int, batch_size: int) -> dict:
    """The ``source-side`` and ``two-sided`` plans of ``(N, 2)`` lengths with ``buckets`` keys.

    The two-sided plan is asked for the number of keys the source-side one has, so both compile
    the same number of graphs.
    """
    from bucketrnn.data.plan import bucket_batch_sizes, optimal_boundaries, plan_buckets

    values, counts = np.unique(lengths[:, 0], return_counts=True)
    bounds = optimal_boundaries(values, counts, min(buckets, values.size),
                                bucket_batch_sizes(values, batch_size))
    one = plan_buckets(lengths, strategy="fixed", boundaries=bounds.tolist(),
                       batch_size=batch_size)
    two = plan_buckets(lengths, num_buckets=one.num_buckets, batch_size=batch_size)
    return {"source-side": one, "two-sided": two}


def _epoch(graphs, trainer, loader):
    from mxnet import autograd, gluon

    from bucketrnn.models import loss_normalizer

    params = [p for p in graphs.collect_params().values() if p.grad_req != "null"]
    real = target = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in loader:
        n = loss_normalizer(batch)
        with autograd.record():
            mean = graphs(batch).sum() / n
        mean.backward()
        gluon.utils.clip_global_norm([p.grad() for p in params], 1.0)
        trainer.step(1)
        rows = np.asarray(batch.indices) >= 0
        real += float(batch.valid_length.asnumpy()[rows].sum()) + n
        target += n
    mean.wait_to_read()
    return {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
            "real_tokens": real, "target_tokens": target}


def measure(pairs: int = 3000, max_length: int = 44, rounds: int = 3, hidden: int = 48,
            buckets: int = 8, batch_size: int = 32, seed: int = 0) -> dict:
    """Plan, compile and train every arm; returns the figures (see the module docstring)."""
    import mxnet as mx
    from mxnet import gluon

    from bucketrnn.data.datasets import EOS
    from bucketrnn.data.loader import BucketLoader
    from bucketrnn.data.pairs import encode_pairs, pair_vocabularies
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.models import Seq2Seq

    result = {"config": dict(pairs=pairs, max_length=max_length, rounds=rounds, hidden=hidden,
                             buckets=buckets, batch_size=batch_size, seed=seed),
              "corpora": {}}
    for corpus, text in corpora(pairs, max_length, seed).items():
        src_vocab, tgt_vocab = pair_vocabularies(text)
        train = encode_pairs(text, src_vocab, tgt_vocab)
        lengths = np.array([(len(s), len(t)) for s, t in train], dtype=np.int64)
        arms = {}
        for name, plan in plans(lengths, buckets, batch_size).items():
            loader = BucketLoader(train, plan=plan, shuffle=True, seed=seed)
            build = Seq2Seq.factory(src_vocab_size=len(src_vocab),
                                    tgt_vocab_size=len(tgt_vocab), bos_id=tgt_vocab[EOS],
                                    hidden_size=hidden, embed_size=hidden // 2,
                                    bidirectional=True, attention="mlp")
            graphs = GraphCache(build, keys=plan.keys)
            mx.random.seed(seed)
            graphs.initialize(mx.init.Xavier())
            trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 0.01})
            example = next(iter(BucketLoader(train, plan=plan, shuffle=True, seed=seed)))
            compile_s = sum(graphs.warmup(plan, example=example).values())
            arms[name] = {"loader": loader, "graphs": graphs, "trainer": trainer,
                          "keys": [list(k) for k in plan.keys], "waste": plan.waste,
                          "padding_fraction": plan.padding_fraction,
                          "computed_slots": plan.computed_slots,
                          "compile_seconds": compile_s, "epochs": []}
        for r in range(rounds):
            order = ("source-side", "two-sided") if r % 2 == 0 else ("two-sided", "source-side")
            for name in order:
                a = arms[name]
                load = os.getloadavg()[0]
                a["loader"].set_epoch(r)
                a["epochs"].append({"round": r, "load": load, **_epoch(a["graphs"], a["trainer"],
                                                                       a["loader"])})
        out = {"correlation": float(np.corrcoef(lengths[:, 0], lengths[:, 1])[0, 1]),
               "source_lengths": [int(lengths[:, 0].min()), int(lengths[:, 0].max())],
               "target_lengths": [int(lengths[:, 1].min()), int(lengths[:, 1].max())],
               "arms": {}}
        for name, a in arms.items():
            e = a["epochs"]
            out["arms"][name] = {
                k: a[k] for k in ("keys", "waste", "padding_fraction", "computed_slots",
                                  "compile_seconds", "epochs")}
            out["arms"][name].update(
                tokens_per_s=sum(x["real_tokens"] for x in e) / sum(x["seconds"] for x in e),
                target_tokens_per_s=sum(x["target_tokens"] for x in e)
                / sum(x["seconds"] for x in e),
                cpu_s_per_1k_tokens=1000 * sum(x["cpu_seconds"] for x in e)
                / sum(x["real_tokens"] for x in e))
        two, one = out["arms"]["two-sided"]["epochs"], out["arms"]["source-side"]["epochs"]
        ratios = [(b["real_tokens"] / b["seconds"]) / (a["real_tokens"] / a["seconds"])
                  for a, b in zip(one, two)]
        cpu = [(a["cpu_seconds"] / a["real_tokens"]) / (b["cpu_seconds"] / b["real_tokens"])
               for a, b in zip(one, two)]
        out["speedup"] = {"per_round": ratios, "median": statistics.median(ratios),
                          "cpu_per_round": cpu, "cpu_median": statistics.median(cpu)}
        result["corpora"][corpus] = out
    return result


def markdown(r: dict) -> str:
    """The figures as a Markdown table."""
    c = r["config"]
    lines = [f"{c['pairs']} pairs per corpus, batch {c['batch_size']}, hidden {c['hidden']}, "
             f"{c['rounds']} interleaved epochs per plan", "",
             "| corpus | plan | keys | waste | real tokens/s (src+tgt) | target tokens/s | "
             "CPU s / 1k tokens | two-sided / source-side tokens/s per round |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for corpus, out in r["corpora"].items():
        name = f"{corpus} (r = {out['correlation']:.2f})"
        for arm, a in out["arms"].items():
            ratios = ", ".join(f"{x:.2f}" for x in out["speedup"]["per_round"]) \
                if arm == "two-sided" else ""
            lines.append(f"| {name} | {arm} | {len(a['keys'])} | {100 * a['waste']:.1f}% | "
                         f"{a['tokens_per_s']:,.0f} | {a['target_tokens_per_s']:,.0f} | "
                         f"{a['cpu_s_per_1k_tokens']:.3f} | {ratios} |")
    return "\n".join(lines)


TINY = dict(pairs=150, max_length=12, rounds=2, hidden=8, buckets=3, batch_size=16)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pairplan",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--max-length", type=int, default=44)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--buckets", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tiny", action="store_true", help="seconds: the smoke test's size")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    kwargs = TINY if args.tiny else dict(
        pairs=args.pairs, max_length=args.max_length, rounds=args.rounds, hidden=args.hidden,
        buckets=args.buckets, batch_size=args.batch_size)
    result = measure(**kwargs)
    print(markdown(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
