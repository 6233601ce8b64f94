"""What the training tests share: a small run to interrupt, how to compare two runs, and
graphs that give a NaN loss at chosen steps."""

import json
import os

import numpy as np
import pytest

from bucketrnn.data.loader import BucketLoader
from bucketrnn.models import LanguageModel
from bucketrnn.training.loop import TrainLoop

# Timing, and the graphs compiled by this process (a resumed process compiles its own).
TIMING = {"time", "tokens_per_s", "seconds", "graphs_compiled"}
OPTIMIZERS = {"adam": ("adam", {"learning_rate": 0.01}),
              "sgd-momentum": ("sgd", {"learning_rate": 0.1, "momentum": 0.9})}


def _sequences(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 20, size=int(rng.integers(3, 14))).tolist() for _ in range(n)]


SEQS = _sequences()


def _loop(run_dir, optimizer="adam", **kw):
    loader = BucketLoader(SEQS, batch_size=4, num_buckets=3, seed=5)
    # dropout > 0: resuming must also reproduce the dropout masks.
    build = LanguageModel.factory(vocab_size=20, hidden_size=8, num_layers=2, dropout=0.3)
    name, params = OPTIMIZERS[optimizer]
    args = dict(epochs=3, checkpoint_every=4, log_every=3, progress=False, seed=11,
                optimizer=name, optimizer_params=params, clip_norm=1.0,
                fingerprint={"model.hidden_size": 8, "optimizer": optimizer})
    args.update(kw)
    return TrainLoop(build, loader, run_dir=str(run_dir), **args)


def _params(loop):
    return {n: p.data().asnumpy() for n, p in loop.params.items()}


def _records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line, parse_constant=_no_constant) for line in f]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _no_constant(name):
    raise AssertionError(f"metrics.jsonl holds {name}, which is not JSON")


def _assert_same_run(a, b, dir_a, dir_b):
    assert a.global_step == b.global_step
    pa, pb = _params(a), _params(b)
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)
    assert _records(dir_b) == _records(dir_a)


def _crash(loop, at_step):
    step = loop.train_step

    def train_step(batch):
        if loop.global_step == at_step:
            raise KeyboardInterrupt("simulated crash")
        return step(batch)

    loop.train_step = train_step
    with pytest.raises(KeyboardInterrupt):
        loop.fit()


class _Poison:
    """The model's graphs, with a NaN loss at the given global steps."""

    def __init__(self, loop, steps):
        self.loop, self.graphs, self.steps = loop, loop.graphs, steps

    def __call__(self, batch):
        out = self.graphs(batch)
        return out * float("nan") if self.loop.global_step in self.steps else out

    def __getattr__(self, name):
        return getattr(self.graphs, name)
