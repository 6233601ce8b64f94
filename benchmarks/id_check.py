"""What the graphs' id check costs a training step of one's own Gluon loop.

Usage::

    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.id_check [--rounds 5] [--steps 300]

A loader built without ``vocab_size`` hands its batches to a ``GraphCache`` whose model declares
one, as in README's "Use it in your own Gluon loop": the cache then checks every batch's token
ids on the host (:func:`bucketrnn.data.batchify.check_batch_ids`, a copy of ``data`` and
``label`` and a min and a max of each). Three arms train the same compiled graphs (a small
language model: vocabulary 1,000, one 64-unit LSTM layer, batch 32, 8 buckets, synthetic
sentences of 5-40 tokens, Adam), ``--steps`` steps each, interleaved in every round:

``graphs check``
    the loader checks nothing, the cache checks every batch (the own loop);
``no check``
    the same with the cache's check switched off (what the own loop did before it);
``loader check``
    the loader checks (``vocab_size=`` given, as ``TrainLoop`` installs it), the cache sees the
    batch was checked against its model's limit and skips it.

It prints, per arm, the median over rounds of the process CPU time and the wall time per step,
and each arm's ratio to ``no check`` (median and range over rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

VOCAB = 1000


def _loader(seqs, vocab_size):
    from bucketrnn import BucketLoader

    return BucketLoader(seqs, batch_size=32, num_buckets=8, task="lm", seed=0,
                        vocab_size=vocab_size)


def _run(graphs, trainer, loader, steps):
    """CPU seconds and wall seconds of ``steps`` training steps (loader included)."""
    from mxnet import autograd

    from bucketrnn.models import loss_normalizer

    done = 0
    cpu, wall = time.process_time(), time.perf_counter()
    while done < steps:
        for batch in loader:
            with autograd.record():
                loss = graphs(batch)
            loss.backward()
            trainer.step(loss_normalizer(batch))
            done += 1
            if done == steps:
                break
    loss.wait_to_read()
    return time.process_time() - cpu, time.perf_counter() - wall


def measure(rounds: int = 5, steps: int = 300) -> dict:
    """Per arm: CPU and wall seconds per step of every round."""
    import mxnet as mx
    from mxnet import gluon

    from bucketrnn.graphs import cache
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.models import LanguageModel

    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, VOCAB, int(n)).tolist() for n in rng.integers(5, 41, 4000)]
    unchecked, checked = _loader(seqs, None), _loader(seqs, VOCAB)
    graphs = GraphCache(LanguageModel.factory(vocab_size=VOCAB, embed_size=64, hidden_size=64,
                                              num_layers=1), keys=unchecked.plan.keys)
    graphs.initialize(mx.init.Xavier())
    graphs.warmup(unchecked.plan, example=unchecked.example_batch())
    trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 0.001})
    real_check = cache.check_batch_ids
    arms = {"graphs check": (unchecked, real_check),
            "no check": (unchecked, lambda *args: None),
            "loader check": (checked, real_check)}
    out = {name: {"cpu": [], "wall": []} for name in arms}
    for r in range(rounds):
        # Alternate the order of the arms from round to round.
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for name in order:
            loader, check = arms[name]
            cache.check_batch_ids = check
            try:
                cpu, wall = _run(graphs, trainer, loader, steps)
            finally:
                cache.check_batch_ids = real_check
            out[name]["cpu"].append(cpu / steps)
            out[name]["wall"].append(wall / steps)
    return out


def report(result: dict) -> str:
    base = result["no check"]
    lines = ["| arm | CPU ms/step | wall ms/step | CPU vs no check (range) | "
             "wall vs no check (range) |", "|---|---|---|---|---|"]
    for name, figs in result.items():
        cells = [f"{1e3 * statistics.median(figs['cpu']):.3f}",
                 f"{1e3 * statistics.median(figs['wall']):.3f}"]
        for what in ("cpu", "wall"):
            ratios = [a / b for a, b in zip(figs[what], base[what])]
            cells.append(f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-"
                         f"{max(ratios):.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.id_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    print(report(measure(args.rounds, args.steps)))


if __name__ == "__main__":
    main()
