"""One long line, predicted alone: the unrolled graph of its length against the length-agnostic
twin (``cell="foreach"``, the same parameters) that ``GraphCache`` runs it on past its
``unroll_limit``.

Usage::

    OMP_WAIT_POLICY=PASSIVE python -m benchmarks.long_line [--rounds 3] [--lengths 1000 25000]

The model is a 16-unit LSTM classifier (vocabulary 30, 2 classes, random parameters), one row
of one line, no gradients: what ``bucketrnn predict`` runs for a file of one line. Each arm
(``unrolled``: ``GraphCache(unroll_limit=None)``; ``twin``: the default ``unroll_limit``) and
length runs in a fresh process, so its peak RSS is its own; rounds alternate the order of the
arms. The figures are the first call's wall and CPU seconds (the graph built, bound and run:
what a command waits for) and the peak RSS over the process's RSS before the call, the median
over rounds with the spread (min-max) in brackets.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

WORKER = r"""
import json, resource, sys, time
import mxnet as mx, numpy as np
from bucketrnn import Batch, GraphCache
from bucketrnn.models import SequenceClassifier
arm, length = sys.argv[1], int(sys.argv[2])
build = SequenceClassifier.factory(num_classes=2, vocab_size=30, hidden_size=16,
                                   outputs=("loss", "logits"))
graphs = GraphCache(build, memory_limit=None, **({"unroll_limit": None} if arm == "unrolled"
                                                  else {}))
graphs.initialize(mx.init.Xavier())
for p in graphs.collect_params().values():
    p.grad_req = "null"
ids = mx.nd.array(np.random.default_rng(0).integers(0, 30, (1, length)), dtype="int32")
batch = Batch(length, ids, mx.nd.array([length], dtype="int32"), mx.nd.zeros(1, dtype="int32"),
              mx.nd.ones(1), np.array([0]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
wall, cpu = time.perf_counter(), time.process_time()
graphs(batch)[1].asnumpy()
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                  "mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "long_keys": graphs.long_keys}))
"""


def run_one(arm: str, length: int) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, arm, str(length)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 4000, 25000])
    args = parser.parse_args(argv)
    got: dict = {}
    for r in range(args.rounds):
        for length in args.lengths:
            arms = ("unrolled", "twin") if r % 2 == 0 else ("twin", "unrolled")
            for arm in arms:
                got.setdefault((arm, length), []).append(run_one(arm, length))
    print("| steps | arm | first call, s | CPU-s | peak RSS added, MB |")
    print("|---:|---|---:|---:|---:|")
    for length in args.lengths:
        for arm in ("unrolled", "twin"):
            rows = got[(arm, length)]
            cells = [_spread([row[name] for row in rows], fmt)
                     for name, fmt in (("wall", ".2f"), ("cpu", ".2f"), ("mb", ".0f"))]
            print(f"| {length:,} | {arm} | {' | '.join(cells)} |")


def _spread(values, fmt: str) -> str:
    """The median, and the min-max over rounds in brackets."""
    return (f"{statistics.median(values):{fmt}} "
            f"({min(values):{fmt}}-{max(values):{fmt}})")


if __name__ == "__main__":
    main()
