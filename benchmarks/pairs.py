"""Sequence pairs: bucketed training against padding both sides to the longest; beam vs greedy.

Usage::

    python -m benchmarks.pairs [--pairs 2000] [--epochs 4] [--hidden 48] [--lr-decay 0.5]
                               [--tiny] [--json F]

The data is synthetic (:func:`bucketrnn.data.pairs.toy_pairs`, ``"translit"``: reverse the letters,
upper-case them, double the vowels), source lengths log-normal from 3 to ``--max-length`` (most
short, a long tail), targets 3 to about 1.5x that. Two arms train the same
:class:`~bucketrnn.models.Seq2Seq` from the same initial parameters on the same pairs for the
same number of epochs, batch size and learning-rate schedule (Adam 0.01, times ``lr_decay`` each
epoch: 0.5, as ``TrainLoop`` and the app; ``--lr-decay 1`` is the constant rate this benchmark
used before issue 20, under which the bucketed arm falls behind, see
:mod:`benchmarks.quality`): ``bucketed`` (``--buckets`` 2-D ``(src_len, tgt_len)``
buckets) and ``padded`` (one bucket: every pair padded to the longest source and the longest
target). Their epochs are interleaved (A, B, A, B, ...) so load changes hit both; every graph is
compiled before the clock starts. Reported: real target tokens per second of training per arm
and epoch, the ratio per epoch (its spread is the noise floor), and the exact match and BLEU-4
each arm reached on held-out pairs (greedy); then the bucketed arm trains on, whole epochs,
until it has used the padded arm's training time, and is scored again (exact match at equal
time); beam search against greedy on the bucketed model at both points. The load average is
recorded before each timed epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from benchmarks.common import write_json

__all__ = ["length_breakdown", "main", "markdown", "measure"]


def _arm(train, num_buckets, batch_size, seed):
    from bucketrnn.data.loader import BucketLoader

    return BucketLoader(train, batch_size=batch_size, num_buckets=num_buckets, shuffle=True,
                        seed=seed)


LEARNING_RATE = 0.01


def _epoch(graphs, trainer, loader, clip=1.0):
    from mxnet import autograd, gluon

    from bucketrnn.models import loss_normalizer

    params = [p for p in graphs.collect_params().values() if p.grad_req != "null"]
    tokens = loss_sum = 0.0
    started = time.perf_counter()
    for batch in loader:
        n = loss_normalizer(batch)
        with autograd.record():
            loss = graphs(batch).sum()
            mean = loss / n
        mean.backward()
        gluon.utils.clip_global_norm([p.grad() for p in params], clip)
        trainer.step(1)
        loss_sum += float(loss.asscalar())
        tokens += n
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "target_tokens": tokens, "tokens_per_s": tokens / seconds,
            "loss": loss_sum / tokens}


def measure(pairs: int = 2000, test_pairs: int = 150, max_length: int = 44, epochs: int = 4,
            hidden: int = 48, buckets: int = 6, batch_size: int = 32, beam: int = 4,
            seed: int = 0, lr_decay: float = 0.5) -> dict:
    """Train both arms and decode; returns the figures (see the module docstring)."""
    import mxnet as mx
    from mxnet import gluon

    from bucketrnn.data.datasets import EOS
    from bucketrnn.data.pairs import encode_pairs, pair_vocabularies, toy_pairs
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.inference.translate import score_pairs
    from bucketrnn.models import Seq2Seq
    from bucketrnn.models.decode import Seq2SeqDecoder

    train_pairs = toy_pairs(pairs, "translit", max_length=max_length, seed=seed)
    held = toy_pairs(test_pairs, "translit", max_length=max_length, seed=seed + 1)
    src_vocab, tgt_vocab = pair_vocabularies(train_pairs)
    train = encode_pairs(train_pairs, src_vocab, tgt_vocab)
    test = encode_pairs(held, src_vocab, tgt_vocab)
    eos = tgt_vocab[EOS]
    arms = {}
    for name, k in (("bucketed", buckets), ("padded", 1)):
        loader = _arm(train, k, batch_size, seed)
        build = Seq2Seq.factory(src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab),
                                bos_id=eos, hidden_size=hidden, embed_size=hidden // 2,
                                bidirectional=True, attention="mlp")
        graphs = GraphCache(build, keys=loader.plan.keys)
        mx.random.seed(seed)  # the same initial parameters in both arms
        graphs.initialize(mx.init.Xavier())
        trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": LEARNING_RATE})
        # The shape template comes from a twin loader: this one's epoch 0 stays whole.
        example = next(iter(_arm(train, k, batch_size, seed)))
        compile_s = sum(graphs.warmup(loader.plan, example=example).values())
        arms[name] = {"loader": loader, "graphs": graphs, "trainer": trainer,
                      "compile_seconds": compile_s, "epochs": [],
                      "plan_waste": loader.plan.waste, "keys": len(loader.plan.keys)}
    for epoch in range(epochs):
        order = ("bucketed", "padded") if epoch % 2 == 0 else ("padded", "bucketed")
        for name in order:
            a = arms[name]
            load = os.getloadavg()[0]
            a["loader"].set_epoch(epoch)
            a["trainer"].set_learning_rate(LEARNING_RATE * lr_decay ** epoch)
            figures = _epoch(a["graphs"], a["trainer"], a["loader"])
            a["epochs"].append({"epoch": epoch, "load": load, **figures})
    result = {"config": dict(pairs=pairs, test_pairs=test_pairs, max_length=max_length,
                             epochs=epochs, hidden=hidden, buckets=buckets,
                             batch_size=batch_size, beam=beam, seed=seed, lr_decay=lr_decay),
              "source_lengths": [min(len(s) for s, _ in train_pairs),
                                 max(len(s) for s, _ in train_pairs)],
              "target_lengths": [min(len(t) for _, t in train_pairs) + 1,
                                 max(len(t) for _, t in train_pairs) + 1],
              "arms": {}}
    for name, a in arms.items():
        dec = Seq2SeqDecoder(a["graphs"].block(a["loader"].plan.keys[0]), eos_id=eos)
        started = time.perf_counter()
        greedy = score_pairs(dec, test, batch_size=batch_size, num_buckets=buckets)
        greedy["seconds"] = time.perf_counter() - started
        tokens = sum(e["target_tokens"] for e in a["epochs"])
        seconds = sum(e["seconds"] for e in a["epochs"])
        result["arms"][name] = {
            "keys": a["keys"], "plan_waste": a["plan_waste"],
            "compile_seconds": a["compile_seconds"], "epochs": a["epochs"],
            "tokens_per_s": tokens / seconds, "train_seconds": seconds,
            "final_loss": a["epochs"][-1]["loss"], "greedy": greedy}
        if name == "bucketed":
            started = time.perf_counter()
            b = score_pairs(dec, test, beam_size=beam, batch_size=batch_size,
                            num_buckets=buckets)
            b["seconds"] = time.perf_counter() - started
            result["arms"][name]["beam"] = b
    ratios = [b["tokens_per_s"] / p["tokens_per_s"] for b, p in
              zip(result["arms"]["bucketed"]["epochs"], result["arms"]["padded"]["epochs"])]
    result["ratios"] = ratios
    result["median_ratio"] = statistics.median(ratios)
    # The same training time: the bucketed arm goes on (whole epochs) until it has trained as
    # long as the padded arm did, then is decoded again.
    a, budget = arms["bucketed"], result["arms"]["padded"]["train_seconds"]
    spent = result["arms"]["bucketed"]["train_seconds"]
    epoch = epochs
    while spent < budget:
        a["loader"].set_epoch(epoch)
        a["trainer"].set_learning_rate(max(LEARNING_RATE * lr_decay ** epoch, 1e-30))
        figures = _epoch(a["graphs"], a["trainer"], a["loader"])
        spent += figures["seconds"]
        epoch += 1
    dec = Seq2SeqDecoder(a["graphs"].block(a["loader"].plan.keys[0]), eos_id=eos)
    result["bucketed_same_time"] = {
        "epochs": epoch, "train_seconds": spent, "final_loss": figures["loss"],
        "greedy": score_pairs(dec, test, batch_size=batch_size, num_buckets=buckets),
        "beam": score_pairs(dec, test, beam_size=beam, batch_size=batch_size,
                            num_buckets=buckets)} if epoch > epochs else None
    return result


BANDS = ((3, 8), (9, 16), (17, 44))


def length_breakdown(bucketed_epochs: int = 13, padded_epochs: int = 4, pairs: int = 2000,
                     test_pairs: int = 150, max_length: int = 44, hidden: int = 48,
                     buckets: int = 6, batch_size: int = 32, seed: int = 0,
                     bands=BANDS, lr_decay: float = 0.5) -> dict:
    """Untimed: train each arm as :func:`measure` does (same data, seeds and settings; the runs
    are deterministic) for the given epochs, then greedy exact match per source-length band on
    the held-out pairs and on the first 300 training pairs, and how many outputs ran on to the
    length limit (``2 * src_len + 10`` tokens without ``<eos>``)."""
    import mxnet as mx
    import numpy as np
    from mxnet import gluon

    from bucketrnn.data.pairs import encode_pairs, pair_vocabularies, toy_pairs
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.inference.translate import decode_ids
    from bucketrnn.models import Seq2Seq
    from bucketrnn.models.decode import Seq2SeqDecoder

    train_pairs = toy_pairs(pairs, "translit", max_length=max_length, seed=seed)
    held = toy_pairs(test_pairs, "translit", max_length=max_length, seed=seed + 1)
    src_vocab, tgt_vocab = pair_vocabularies(train_pairs)
    train = encode_pairs(train_pairs, src_vocab, tgt_vocab)
    test = encode_pairs(held, src_vocab, tgt_vocab)
    out = {}
    for name, k, epochs in (("bucketed", buckets, bucketed_epochs),
                            ("padded", 1, padded_epochs)):
        loader = _arm(train, k, batch_size, seed)
        graphs = GraphCache(Seq2Seq.factory(
            src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab), bos_id=1,
            hidden_size=hidden, embed_size=hidden // 2, bidirectional=True, attention="mlp"),
            keys=loader.plan.keys)
        mx.random.seed(seed)
        graphs.initialize(mx.init.Xavier())
        trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": LEARNING_RATE})
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            trainer.set_learning_rate(LEARNING_RATE * lr_decay ** epoch)
            figures = _epoch(graphs, trainer, loader)
        dec = Seq2SeqDecoder(graphs.block(loader.plan.keys[0]), eos_id=1)
        out[name] = {"epochs": epochs, "final_loss": figures["loss"]}
        for split, data in (("test", test), ("train", train[:300])):
            hyps = decode_ids(dec, [s for s, _ in data], batch_size=batch_size,
                              num_buckets=buckets)
            n = np.array([len(s) for s, _ in data])
            ok = np.array([h == list(t[:-1]) for h, (_, t) in zip(hyps, data)])
            out[name][split] = {
                "exact_match": float(ok.mean()),
                "ran_on": int(sum(len(h) >= 2 * len(s) + 10 for h, (s, _) in zip(hyps, data))),
                "bands": {f"{lo}-{hi}": {"pairs": int(((n >= lo) & (n <= hi)).sum()),
                                         "exact_match": float(ok[(n >= lo) & (n <= hi)].mean())}
                          for lo, hi in bands}}
    return out


def markdown(r: dict) -> str:
    """The figures as a markdown table (one row per arm, then beam vs greedy)."""
    c, b = r["config"], r["arms"]["bucketed"]
    lines = [f"{c['pairs']} training pairs (source {r['source_lengths'][0]}-"
             f"{r['source_lengths'][1]} tokens, target with <eos> {r['target_lengths'][0]}-"
             f"{r['target_lengths'][1]}), {c['epochs']} epochs, batch {c['batch_size']}, "
             f"Adam {LEARNING_RATE} x {c.get('lr_decay', 1.0)} per epoch, "
             f"hidden {c['hidden']}, {c['test_pairs']} held-out pairs.", "",
             "| arm | buckets | plan waste | real target tokens/s | train s | final loss | "
             "exact match (greedy) | BLEU-4 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, a in r["arms"].items():
        g = a["greedy"]
        lines.append(f"| {name} | {a['keys']} | {100 * a['plan_waste']:.1f}% | "
                     f"{a['tokens_per_s']:,.0f} | {a['train_seconds']:.0f} | "
                     f"{a['final_loss']:.3f} | {g['exact_match']:.3f} | "
                     f"{100 * g['bleu']:.1f} |")
    same = r.get("bucketed_same_time")
    if same:
        g = same["greedy"]
        lines.append(f"| bucketed, {same['epochs']} epochs (the padded arm's training time) | "
                     f"{b['keys']} | {100 * b['plan_waste']:.1f}% | | "
                     f"{same['train_seconds']:.0f} | {same['final_loss']:.3f} | "
                     f"{g['exact_match']:.3f} | {100 * g['bleu']:.1f} |")
    spread = f"{min(r['ratios']):.2f}-{max(r['ratios']):.2f}"
    loads = [e["load"] for a in r["arms"].values() for e in a["epochs"]]
    lines += ["", f"Bucketed / padded real target tokens/s: median {r['median_ratio']:.2f}x "
              f"over {len(r['ratios'])} interleaved epochs (per-epoch ratios {spread}); load "
              f"average before the timed epochs {min(loads):.1f}-{max(loads):.1f}.", "",
              "| decoding (bucketed model) | exact match | BLEU-4 | seconds |",
              "|---|---:|---:|---:|",
              f"| greedy | {b['greedy']['exact_match']:.3f} | {100 * b['greedy']['bleu']:.1f} | "
              f"{b['greedy']['seconds']:.1f} |",
              f"| beam {c['beam']} | {b['beam']['exact_match']:.3f} | "
              f"{100 * b['beam']['bleu']:.1f} | {b['beam']['seconds']:.1f} |"]
    if same:
        lines += [f"| greedy, after {same['epochs']} epochs | "
                  f"{same['greedy']['exact_match']:.3f} | {100 * same['greedy']['bleu']:.1f} | |",
                  f"| beam {c['beam']}, after {same['epochs']} epochs | "
                  f"{same['beam']['exact_match']:.3f} | {100 * same['beam']['bleu']:.1f} | |"]
    return "\n".join(lines)


TINY = dict(pairs=120, test_pairs=12, max_length=12, epochs=2, hidden=8, buckets=3,
            batch_size=16, beam=2)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pairs",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--test-pairs", type=int, default=150)
    ap.add_argument("--max-length", type=int, default=44)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--buckets", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--beam", type=int, default=4)
    ap.add_argument("--lr-decay", type=float, default=0.5,
                    help="learning rate of epoch e: 0.01 * lr_decay ** e (1: constant, the "
                         "figures before issue 20)")
    ap.add_argument("--tiny", action="store_true", help="seconds: the smoke test's size")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--by-length", action="store_true",
                    help="instead: untimed exact match per source-length band "
                         "(length_breakdown: 13 bucketed epochs, 4 padded)")
    args = ap.parse_args(argv)
    kwargs = TINY if args.tiny else dict(
        pairs=args.pairs, test_pairs=args.test_pairs, max_length=args.max_length,
        epochs=args.epochs, hidden=args.hidden, buckets=args.buckets,
        batch_size=args.batch_size, beam=args.beam)
    kwargs = {**kwargs, "lr_decay": args.lr_decay}
    if args.by_length:
        result = length_breakdown(lr_decay=args.lr_decay)
        print(json.dumps(result, indent=1))
        return result
    result = measure(**kwargs)
    print(markdown(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
