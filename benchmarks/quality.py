"""Time to a good model: bucketed training against padding to the longest, over seeds.

Usage::

    python -m benchmarks.quality [--tasks lm,pairs,tag] [--arms padded,bucketed,...]
                                 [--seeds 0,1,2] [--epochs N] [--jobs 1] [--tiny] [--json F]

Three tasks, each small enough that one training run takes about a minute on one thread:

``lm``
    Penn Treebank language model: the first 3,000 training sentences, a vocabulary of their
    2,000 most frequent words (the rest ``<unk>``), a 1-layer LSTM of 64 units; validation
    perplexity on the first 600 validation sentences.
``pairs``
    The toy sequence-pair task of :mod:`benchmarks.pairs` (``toy_pairs(2000, "translit",
    max_length=44)``, a bidirectional 48-unit LSTM encoder, MLP attention); greedy exact match
    on 150 held-out pairs.
``tag``
    A generated tagging task (:func:`toy_tags`): a token's tag is its id plus the sentence's
    first id, modulo 4, so every tag needs the first token carried through the sentence (the
    classes are about equally frequent); 3,000 sentences, log-normal lengths 2-40 (median 9),
    a 1-layer 64-unit LSTM tagger; token accuracy on 300 held-out sentences.

Every run trains with :class:`~bucketrnn.training.loop.TrainLoop` and the app's defaults (Adam,
learning rate 0.01 held for the first half of the run's steps, then falling to zero, gradient
norm clipped at 1, batch 32 rows, loss per real token), one MXNet thread (``OMP_NUM_THREADS=1``,
``OMP_WAIT_POLICY=PASSIVE``), in a fresh process; every graph is compiled before the clock
starts. An arm (:data:`ARMS`) changes the loader or the loop: ``padded`` (one bucket: every
sequence padded to the longest), ``bucketed`` (8 buckets, the app's default plan) and the
candidate remedies and controls. After each epoch the model is scored on the validation data
(untimed). Reported per task and arm: the validation quality per epoch (mean and spread over the
seeds), the training time (wall and process CPU seconds, mean over seeds), the plan's waste, and
the time each arm needs to reach the padded arm's final quality against what the waste alone
allows (padded time x (1 - padded waste) / (1 - arm waste)).

Quality per epoch does not depend on the machine's load (the runs are deterministic: same
seeds, one thread); the times do. With ``--jobs 2`` two runs share the machine: CPU seconds are
then the steadier time figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import write_json

__all__ = ["ARMS", "TASKS", "main", "markdown", "measure", "run_one", "summarise", "toy_tags"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Per task: data and model sizes, epochs, and which way quality is better.
TASKS = {
    "lm": dict(sentences=3000, valid_sentences=600, vocab=2000, hidden=64, epochs=4,
               metric="perplexity", higher_is_better=False),
    "pairs": dict(pairs=2000, test_pairs=150, max_length=44, hidden=48, epochs=4,
                  metric="exact_match", higher_is_better=True),
    "tag": dict(sentences=3000, valid_sentences=300, vocab=24, classes=4, max_length=40,
                hidden=64, epochs=4, metric="accuracy", higher_is_better=True),
}
TINY = {"lm": dict(sentences=200, valid_sentences=40, vocab=200, hidden=8, epochs=2),
        "pairs": dict(pairs=120, test_pairs=12, max_length=12, hidden=8, epochs=2),
        "tag": dict(sentences=200, valid_sentences=30, max_length=12, hidden=8, epochs=2)}

# What each arm changes from the app's defaults (8 buckets, batch 32 rows, the learning rate
# held for the first half of the run's steps, then falling to zero, each batch's loss divided by
# its own real tokens).
ARMS = {
    "padded": dict(num_buckets=1),
    "bucketed": dict(num_buckets=8),
    # Token budget: rows per batch = budget // bucket length (key length: source + target for
    # pairs), so every batch holds about the same number of tokens; the budget is 32 rows of
    # the mean real length, so an epoch has about as many steps as with 32 rows.
    "tokens": dict(num_buckets=8, batch_size=None, max_tokens="mean32"),
    # 24 rows a batch: about the steps per epoch of "tokens" with fixed rows (a control for the
    # number of updates).
    "bucketed-24": dict(num_buckets=8, batch_size=24),
    "padded-24": dict(num_buckets=1, batch_size=24),
    # Each batch's summed loss divided by the mean real tokens of a batch (a constant) instead
    # of its own: every real token weighs the same in every update.
    "constant": dict(num_buckets=8, normalize="constant"),
    # The last partial batch of a bucket is carried into the next epoch (no fill rows).
    "rollover": dict(num_buckets=8, last_batch="rollover"),
    # The other schedules: a half cosine down to zero over the run's steps, and the halving
    # every epoch (lr_schedule="epoch") that was the only schedule before issue 23.
    "padded-cosine": dict(num_buckets=1, lr_schedule="cosine"),
    "bucketed-cosine": dict(num_buckets=8, lr_schedule="cosine"),
    "tokens-cosine": dict(num_buckets=8, batch_size=None, max_tokens="mean32",
                          lr_schedule="cosine"),
    "padded-epoch": dict(num_buckets=1, lr_schedule="epoch", lr_decay=0.5),
    "bucketed-epoch": dict(num_buckets=8, lr_schedule="epoch", lr_decay=0.5),
    # A constant learning rate (as benchmarks/pairs.py trains), padded and bucketed.
    "padded-flat": dict(num_buckets=1, lr_schedule="epoch", lr_decay=1.0),
    "bucketed-flat": dict(num_buckets=8, lr_schedule="epoch", lr_decay=1.0),
    "constant-flat": dict(num_buckets=8, normalize="constant", lr_schedule="epoch",
                          lr_decay=1.0),
    # A control: the bucketed arm's batches (the same rows in the same order), each padded to
    # the longest key instead of its bucket's. Only the padding differs from "bucketed", so
    # this arm tells the padding's share of the gap from the batch composition's. Its waste
    # and times are not a plan's (one graph, compiled in its first epoch): no time target.
    "bucket-batches-padded": dict(num_buckets=8, pad_to_longest=True, control=True),
    # Updates that mix buckets: the summed gradients of `accumulate` consecutive batches (the
    # sampler interleaves the buckets at random), divided by their real tokens, one update per
    # group: 4 x 8 rows has the 32 rows and the updates per epoch of the 32-row arms.
    "mixed": dict(num_buckets=8, batch_size=8, accumulate=4),
    "mixed-2": dict(num_buckets=8, batch_size=16, accumulate=2),
    # The time axis: the default plan trained for more epochs (the schedule spans them all),
    # measured by when it reaches the padded arm's final quality, not epoch by epoch.
    "bucketed-6": dict(num_buckets=8, epochs=6),
    "bucketed-8": dict(num_buckets=8, epochs=8),
}
DEFAULT_ARMS = ("padded", "bucketed", "tokens", "constant")
BATCH_SIZE = 32
LEARNING_RATE = 0.01


def toy_tags(n: int, vocab: int = 24, classes: int = 4, max_length: int = 40,
             median: float = 9.0, seed: int = 0) -> list:
    """``n`` generated ``(token ids, tags)`` sentences: the tag of a token is the sum of its id
    and the sentence's first id, modulo ``classes``.

    So every tag needs the first token, carried over the whole sentence (longer sentences carry
    it further), and the classes are about equally frequent. Token ids are ``1..vocab-1`` (0
    stays the padding/unknown id); lengths are log-normal around ``median`` (sigma 0.6),
    clipped to ``[2, max_length]``, as in :func:`bucketrnn.data.pairs.toy_pairs`.

    Examples
    --------
    >>> tokens, tags = toy_tags(1, vocab=5, max_length=5, seed=3)[0]
    >>> tokens.tolist(), tags.tolist()
    ([1, 1, 1, 4, 4], [2, 2, 2, 1, 1])
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(median), 0.6, n)), 2, max_length)
    out = []
    for length in lengths.astype(np.int64):
        tokens = rng.integers(1, vocab, length).astype(np.int32)
        out.append((tokens, ((tokens + tokens[0]) % classes).astype(np.int32)))
    return out


# ------------------------------------------------------------------------------- one run
def _data(task: str, s: dict, seed: int):
    """``(train, valid, build, extra)`` of a task: datasets, the model factory, and what the
    scorer needs."""
    if task == "lm":
        from bucketrnn.data.datasets import (
            Vocabulary,
            encode_lines,
            penn_treebank_sentences,
        )
        from bucketrnn.models import LanguageModel

        lines = list(penn_treebank_sentences("train"))[:s["sentences"]]
        vocab = Vocabulary.build(lines, max_size=s["vocab"])
        valid = list(penn_treebank_sentences("valid"))[:s["valid_sentences"]]
        build = LanguageModel.factory(vocab_size=len(vocab), hidden_size=s["hidden"],
                                      num_layers=1)
        return encode_lines(lines, vocab), encode_lines(valid, vocab), build, {}
    if task == "pairs":
        from bucketrnn.data.datasets import EOS
        from bucketrnn.data.pairs import encode_pairs, pair_vocabularies, toy_pairs
        from bucketrnn.models import Seq2Seq

        # The data seed is fixed (the pairs of benchmarks/pairs.py): seeds vary the training.
        train_pairs = toy_pairs(s["pairs"], "translit", max_length=s["max_length"], seed=0)
        held = toy_pairs(s["test_pairs"], "translit", max_length=s["max_length"], seed=1)
        src, tgt = pair_vocabularies(train_pairs)
        eos = tgt[EOS]
        build = Seq2Seq.factory(src_vocab_size=len(src), tgt_vocab_size=len(tgt), bos_id=eos,
                                hidden_size=s["hidden"], embed_size=s["hidden"] // 2,
                                bidirectional=True, attention="mlp")
        return (encode_pairs(train_pairs, src, tgt), encode_pairs(held, src, tgt), build,
                {"eos": eos})
    from bucketrnn.models import SequenceTagger

    data = toy_tags(s["sentences"] + s["valid_sentences"], vocab=s["vocab"],
                    classes=s["classes"], max_length=s["max_length"], seed=0)
    build = SequenceTagger.factory(num_classes=s["classes"], vocab_size=s["vocab"],
                                   hidden_size=s["hidden"], outputs=("loss", "logits"))
    return data[:s["sentences"]], data[s["sentences"]:], build, {}


def _mean_real_length(loader) -> float:
    plan = loader.plan
    return plan.real_tokens / plan.num_examples


def _loader(train, task: str, arm: dict, seed: int):
    from bucketrnn.data.loader import BucketLoader

    kw = dict(batch_size=arm.get("batch_size", BATCH_SIZE), max_tokens=None,
              num_buckets=arm["num_buckets"], last_batch=arm.get("last_batch", "fill"))
    ltask = {"pairs": "seq2seq"}.get(task, task)
    if arm.get("max_tokens") == "mean32":
        # The budget from the real lengths (a one-bucket plan counts them all).
        mean = _mean_real_length(BucketLoader(train, batch_size=BATCH_SIZE, num_buckets=1,
                                              task=ltask))
        kw["max_tokens"] = int(round(BATCH_SIZE * mean))
    loader = BucketLoader(train, shuffle=True, seed=seed, task=ltask, **kw)
    if arm.get("pad_to_longest"):
        from bucketrnn.data.batchify import PadToBucket

        keys = loader.plan.keys
        longest = tuple(max(k[i] for k in keys) for i in range(2)) \
            if isinstance(keys[0], tuple) else max(keys)
        loader.batchify = PadToBucket((longest,) * len(keys), task=loader.task)
    return loader


def _score(task: str, loop, valid, extra: dict, s: dict) -> dict:
    if task == "pairs":
        from bucketrnn.inference.translate import score_pairs
        from bucketrnn.models.decode import Seq2SeqDecoder

        dec = Seq2SeqDecoder(loop.graphs.block(loop.loader.plan.keys[0]), eos_id=extra["eos"])
        got = score_pairs(dec, valid, batch_size=BATCH_SIZE, num_buckets=8)
        return {"exact_match": got["exact_match"], "bleu": got["bleu"]}
    from bucketrnn.data.loader import BucketLoader

    loader = BucketLoader(valid, batch_size=64, num_buckets=8, shuffle=False,
                          task=None if task == "lm" else task)
    got = loop.evaluate(loader)
    return {k: got[k] for k in ("loss", "perplexity", "accuracy") if k in got}


def _constant_denominator(base):
    """``base`` (TrainLoop) dividing each batch's summed loss by the mean real tokens of a batch
    over an epoch, a constant, instead of the batch's own: every real token then weighs the same
    in every update, whatever its bucket (the ``constant`` arm, a control)."""

    class ConstantDenominator(base):
        def __init__(self, model, loader, **kwargs):
            super().__init__(model, loader, **kwargs)
            lengths = loader.lengths
            tokens = lengths[:, 1].sum() if lengths.ndim == 2 else lengths.sum()
            self.mean_count = float(tokens) / loader.num_batches(0)

        def _batch_counts(self, batch):
            real, slots, _, rows = super()._batch_counts(batch)
            return real, slots, self.mean_count, rows

    return ConstantDenominator


def run_one(task: str, arm: str, seed: int, epochs: int | None = None,
            tiny: bool = False) -> dict:
    """Train one ``(task, arm, seed)`` run in this process; its figures per epoch.

    Returns
    -------
    dict
        ``plan`` (keys, batch sizes, waste, steps per epoch), ``compile_seconds`` and
        ``epochs``: per epoch the training wall and process CPU seconds (evaluation excluded),
        the steps, the training loss and the validation figures.
    """
    import mxnet as mx

    from bucketrnn.data.loader import BucketLoader
    from bucketrnn.training.loop import TrainLoop

    s = {**TASKS[task], **(TINY[task] if tiny else {})}
    a = ARMS[arm]
    epochs = epochs or a.get("epochs") or s["epochs"]
    train, valid, build, extra = _data(task, s, seed)
    loader = _loader(train, task, a, seed)
    plan = loader.plan
    cls = _constant_denominator(TrainLoop) if a.get("normalize") == "constant" else TrainLoop
    loop = cls(build, loader, epochs=epochs, seed=seed, progress=False,
               optimizer_params={"learning_rate": LEARNING_RATE},
               lr_schedule=a.get("lr_schedule", "warmdown"), lr_decay=a.get("lr_decay"),
               accumulate=a.get("accumulate", 1), checkpoint_every=0, log_every=10**9)
    # fit() runs one epoch at a time below (to score each): the curve spans all of them.
    loop.schedule_steps = loop.count_planned_steps()
    # The shape template from a twin loader, so this one's epoch 0 stays whole.
    twin = BucketLoader(train, batch_size=plan.batch_sizes[0], num_buckets=1, task=loader.task)
    started = time.perf_counter()
    if a.get("pad_to_longest"):  # one graph: the longest key
        loop.graphs.warmup(loader.batchify.keys[:1], example=next(iter(twin)),
                           batch_size=plan.batch_sizes[0])
    else:
        loop.graphs.warmup(plan, example=next(iter(twin)))
    compile_seconds = time.perf_counter() - started
    mx.nd.waitall()
    out = {"task": task, "arm": arm, "seed": seed, "settings": s, "arm_settings": a,
           "plan": {"keys": [list(k) if isinstance(k, tuple) else k for k in plan.keys],
                    "batch_sizes": list(plan.batch_sizes), "waste": plan.waste,
                    "padding_fraction": plan.padding_fraction,
                    "steps_per_epoch": loader.num_batches(0)},
           # The shapes trained on: the plan's keys, or one for the padded-batches control.
           "graph_keys": [list(k) if isinstance(k, tuple) else k for k in loop.graphs.keys],
           "compile_seconds": compile_seconds, "epochs": []}
    for epoch in range(epochs):
        loop.epochs = epoch + 1
        cpu = time.process_time()
        steps = loop.global_step
        loop.fit()
        cpu = time.process_time() - cpu
        record = loop.history["epochs"][-1]
        valid_figures = _score(task, loop, valid, extra, s)
        out["epochs"].append({"epoch": epoch, "seconds": record["seconds"], "cpu_seconds": cpu,
                              "steps": loop.global_step - steps,
                              "train_loss": record["train_loss"],
                              "load": os.getloadavg()[0], **valid_figures})
    return out


# ------------------------------------------------------------------------------- the driver
def _child_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE",
               MXNET_SUBGRAPH_VERBOSE="0")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measure(tasks=("lm", "pairs", "tag"), arms=DEFAULT_ARMS, seeds=(0, 1, 2),
            epochs: int | None = None, jobs: int = 1, tiny: bool = False,
            timeout: float = 1800, runs_dir: str | None = None) -> dict:
    """Every ``(task, arm, seed)`` run in a fresh process (``jobs`` at a time; arms
    interleaved within each seed), then :func:`summarise`. Each run's figures are kept in
    ``runs_dir`` (default: a new temporary folder) as ``TASK-ARM-SEED.json``; a run whose file
    is already there is not run again (an interrupted study continues)."""
    runs, queue = [], []
    for task in tasks:
        for seed in seeds:
            order = list(arms) if seed % 2 == 0 else list(reversed(arms))
            queue += [(task, arm, seed) for arm in order]
    folder = runs_dir or tempfile.mkdtemp(prefix="quality-")
    os.makedirs(folder, exist_ok=True)
    active = []
    started = time.time()

    def launch(item):
        task, arm, seed = item
        path = os.path.join(folder, f"{task}-{arm}-{seed}.json")
        cmd = [sys.executable, "-m", "benchmarks.quality", "--one", task, arm, str(seed),
               "--json", path] + (["--epochs", str(epochs)] if epochs else []) + \
            (["--tiny"] if tiny else [])
        # stderr to a file: a pipe nobody reads while the run goes on could fill and stall it.
        with open(path + ".err", "w") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_child_env(), stdout=subprocess.DEVNULL,
                                    stderr=err)
        return proc, item, path, time.time()

    def finish(proc, item, path, err):
        if proc.returncode == 0 and os.path.exists(path):
            with open(path) as f:
                runs.append(json.load(f))
            print(f"done {item} at {time.time() - started:.0f}s", file=sys.stderr, flush=True)
        else:
            runs.append({"task": item[0], "arm": item[1], "seed": item[2],
                         "error": (err or "")[-2000:]})
            print(f"FAILED {item}: {(err or '')[-500:]}", file=sys.stderr, flush=True)

    for item in list(queue):  # runs a previous invocation finished in runs_dir are kept
        path = os.path.join(folder, "{}-{}-{}.json".format(*item))
        if runs_dir and os.path.exists(path):
            with open(path) as f:
                runs.append(json.load(f))
            queue.remove(item)
    while queue or active:
        while queue and len(active) < jobs:
            active.append(launch(queue.pop(0)))
        time.sleep(0.5)
        for entry in list(active):
            proc, item, path, t0 = entry
            if proc.poll() is None and time.time() - t0 < timeout:
                continue
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                err = f"timed out after {timeout:.0f}s"
            else:
                with open(path + ".err") as f:
                    err = f.read()
            active.remove(entry)
            finish(proc, item, path, err)
    return summarise({"config": {"tasks": list(tasks), "arms": list(arms), "seeds": list(seeds),
                                 "epochs": epochs, "jobs": jobs, "tiny": tiny},
                      "runs": runs})


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def _reaches(value, target, higher):
    return value >= target if higher else value <= target


def summarise(result: dict) -> dict:
    """Add ``summary``: per task and arm the quality per epoch (mean, spread), times, waste,
    time to the padded arm's final quality and the waste bound; and the issue's targets."""
    summary = {}
    for task in result["config"]["tasks"]:
        spec = TASKS[task]
        metric, higher = spec["metric"], spec["higher_is_better"]
        arms = {}
        for arm in result["config"]["arms"]:
            runs = [r for r in result["runs"] if r["task"] == task and r["arm"] == arm
                    and "error" not in r]
            if not runs:
                continue
            n = min(len(r["epochs"]) for r in runs)
            per_epoch = []
            for e in range(n):
                per_epoch.append({
                    "quality": _stats([r["epochs"][e][metric] for r in runs]),
                    "seconds": statistics.fmean(sum(x["seconds"] for x in r["epochs"][:e + 1])
                                                for r in runs),
                    "cpu_seconds": statistics.fmean(
                        sum(x["cpu_seconds"] for x in r["epochs"][:e + 1]) for r in runs),
                    "steps": statistics.fmean(r["epochs"][e]["steps"] for r in runs)})
            arms[arm] = {"seeds": [r["seed"] for r in runs], "epochs": per_epoch,
                         "waste": runs[0]["plan"]["waste"],
                         "keys": len(runs[0]["plan"]["keys"]),
                         "compile_seconds": statistics.fmean(r["compile_seconds"] for r in runs)}
        for arm, a in arms.items():
            padded = arms.get(_reference(arm, arms))
            if padded is None:
                continue
            final = padded["epochs"][-1]
            target = final["quality"]["mean"]
            hit = next((e for e, x in enumerate(a["epochs"])
                        if _reaches(x["quality"]["mean"], target, higher)), None)
            ratio = (1 - padded["waste"]) / (1 - a["waste"])
            a["reference"] = _reference(arm, arms)
            a["to_padded_final"] = None if hit is None else {
                "epoch": hit + 1, "seconds": a["epochs"][hit]["seconds"],
                "cpu_seconds": a["epochs"][hit]["cpu_seconds"],
                "time_ratio": a["epochs"][hit]["seconds"] / final["seconds"],
                "cpu_ratio": a["epochs"][hit]["cpu_seconds"] / final["cpu_seconds"]}
            a["waste_bound"] = {"seconds": final["seconds"] * ratio,
                                "cpu_seconds": final["cpu_seconds"] * ratio, "ratio": ratio}
            a["per_epoch_gap"] = [x["quality"]["mean"] - p["quality"]["mean"]
                                  for x, p in zip(a["epochs"], padded["epochs"])]
        summary[task] = {"metric": metric, "higher_is_better": higher, "arms": arms,
                         "targets": _targets(task, arms)}
    result["summary"] = summary
    return result


def _reference(arm: str, arms: dict) -> str:
    """The padded arm an arm is measured against: the padded arm of the same learning-rate
    schedule (``padded-flat`` for ``*-flat``, ``padded-cosine`` for ``*-cosine``, ...) when it
    ran, else ``padded``."""
    for suffix in ("-flat", "-cosine", "-epoch"):
        if arm.endswith(suffix) and "padded" + suffix in arms:
            return "padded" + suffix
    return "padded"


def _targets(task: str, arms: dict) -> dict:
    """The issue's targets for each non-padded arm: per epoch within seed noise of its padded
    reference, time to that one's final quality <= 0.4x (LM and pairs) and <= 1.15x the waste
    bound."""
    out = {}
    for arm, a in arms.items():
        if arm.startswith("padded") or "to_padded_final" not in a or _control(arm):
            continue
        padded = arms[a["reference"]]
        if len(a["epochs"]) != len(padded["epochs"]):
            # A longer (or shorter) run: its schedule differs, so only the time axis compares.
            hit = a["to_padded_final"]
            out[arm] = {"per_epoch": None, "final_epoch_met": None, "time": (
                {"met": False, "why": "never reached the padded arm's final quality"}
                if hit is None else _time_target(task, hit, a["waste_bound"]))}
            continue
        pairs = list(zip(a["epochs"], padded["epochs"]))
        if task == "lm":
            ok = all(x["quality"]["mean"] <= 1.02 * p["quality"]["mean"] for x, p in pairs)
            rule = "valid perplexity <= 1.02x padded mean at every epoch"
        elif task == "pairs":
            ok = all(x["quality"]["mean"] >= p["quality"]["mean"] - 0.02 for x, p in pairs)
            rule = "exact match >= padded - 0.02 at every epoch"
        else:
            ok = all(x["quality"]["mean"] >= p["quality"]["mean"] - 0.005 for x, p in pairs)
            rule = "token accuracy >= padded - 0.005 at every epoch"
        final_ok = {"lm": lambda q, p: q <= 1.02 * p, "pairs": lambda q, p: q >= p - 0.02,
                    "tag": lambda q, p: q >= p - 0.005}[task](
            a["epochs"][-1]["quality"]["mean"], padded["epochs"][-1]["quality"]["mean"])
        hit = a["to_padded_final"]
        t = {"per_epoch": {"rule": rule, "met": ok}, "final_epoch_met": final_ok}
        if hit is None:
            t["time"] = {"met": False, "why": "never reached the padded arm's final quality"}
        else:
            t["time"] = _time_target(task, hit, a["waste_bound"])
        out[arm] = t
    return out


def _time_target(task: str, hit: dict, bound: dict) -> dict:
    return {"cpu_ratio": hit["cpu_ratio"], "wall_ratio": hit["time_ratio"],
            "met_0.4x": hit["cpu_ratio"] <= 0.4 if task in ("lm", "pairs") else None,
            "vs_waste_bound_cpu": hit["cpu_seconds"] / bound["cpu_seconds"],
            "met_1.15x_bound": hit["cpu_seconds"] <= 1.15 * bound["cpu_seconds"]}


# ------------------------------------------------------------------------------- report
def _fmt(q, metric):
    if q is None:
        return ""
    if metric == "perplexity":
        return f"{q['mean']:.1f} ({q['min']:.1f}-{q['max']:.1f})"
    return f"{q['mean']:.3f} ({q['min']:.3f}-{q['max']:.3f})"


def markdown(r: dict) -> str:
    """The figures as markdown: per task, quality per epoch (mean and range over seeds) and the
    time table."""
    c = r["config"]
    at_once = "runs at a time as the commands say" if c.get("jobs") is None else \
        f"{c['jobs']} run(s) at a time"
    lines = [f"Seeds {', '.join(map(str, c['seeds']))}; {at_once}, each on "
             "one MXNet thread; quality is the validation figure after each epoch, mean "
             "(min-max) over the seeds. Times are training only (compile and scoring excluded), "
             "mean over the seeds; CPU seconds are the process's."]
    loads = [e["load"] for x in r["runs"] if "epochs" in x for e in x["epochs"]]
    if loads:
        lines[0] += f" Load average at the epochs' ends {min(loads):.1f}-{max(loads):.1f}."
    failed = [x for x in r["runs"] if "error" in x]
    if failed:
        lines += ["", "Failed runs: " + ", ".join(f"{x['task']}/{x['arm']}/{x['seed']}"
                                                  for x in failed)]
    for task, s in r["summary"].items():
        arms, metric = s["arms"], s["metric"]
        if not arms:
            continue
        n = max(len(a["epochs"]) for a in arms.values())
        lines += ["", f"### {task}: {metric} ({'higher' if s['higher_is_better'] else 'lower'} "
                  "is better)", "",
                  "| arm | seeds | buckets | waste | "
                  + " | ".join(f"epoch {e + 1}" for e in range(n)) + " |",
                  "|---|---:|---:|---:|" + "---:|" * n]
        for arm, a in arms.items():
            cells = [_fmt(x["quality"], metric) for x in a["epochs"]]
            cells += [""] * (n - len(cells))
            # A control's batches are padded to the longest key: its plan's waste is not its own.
            waste = "" if _control(arm) else f"{100 * a['waste']:.1f}%"
            lines.append(f"| {arm} | {len(a['seeds'])} | {a['keys']} | {waste} | "
                         + " | ".join(cells) + " |")
        lines += ["", "| arm | steps/epoch | train s (all epochs) | CPU s | reference | to the "
                  "reference's final quality: epoch, CPU s (x reference) | waste bound CPU s | "
                  "x bound |", "|---|---:|---:|---:|---|---|---:|---:|"]
        for arm, a in arms.items():
            last = a["epochs"][-1]
            hit = a.get("to_padded_final")
            bound = a.get("waste_bound")
            reach = "not reached" if hit is None else \
                f"{hit['epoch']}, {hit['cpu_seconds']:.0f} ({hit['cpu_ratio']:.2f}x)"
            xb = "" if hit is None or bound is None else \
                f"{hit['cpu_seconds'] / bound['cpu_seconds']:.2f}"
            cpu_bound = "" if bound is None else f"{bound['cpu_seconds']:.0f}"
            if _control(arm):
                reach, xb, cpu_bound = "a control: no time target", "", ""
            lines.append(f"| {arm} | {a['epochs'][0]['steps']:.0f} | {last['seconds']:.0f} | "
                         f"{last['cpu_seconds']:.0f} | {a.get('reference', '')} | "
                         f"{reach if bound else ''} | {cpu_bound} | {xb} |")
        t = s.get("targets") or {}
        if t:
            lines += ["", "Targets: " + "; ".join(_target_line(arm, v)
                                                  for arm, v in t.items()) + "."]
    return "\n".join(lines)


def _control(arm: str) -> bool:
    return bool(ARMS.get(arm, {}).get("control"))


def _target_line(arm: str, v: dict) -> str:
    parts = []
    if v["per_epoch"] is not None:  # None: a run of another length, compared on time only
        parts += [f"per epoch {'met' if v['per_epoch']['met'] else 'NOT met'}",
                  f"final epoch {'met' if v['final_epoch_met'] else 'NOT met'}"]
    time = v["time"]
    parts.append("time not reached" if "cpu_ratio" not in time else
                 f"time {time['cpu_ratio']:.2f}x padded CPU, "
                 f"{time['vs_waste_bound_cpu']:.2f}x the waste bound")
    return f"{arm}: " + ", ".join(parts)


def merge(paths) -> dict:
    """One result from the JSON files of several invocations of the study, or from a
    ``--runs-dir`` folder of single runs (``TASK-ARM-SEED.json``): every ``(task, arm, seed)``
    once (the first found), tasks and arms in :data:`TASKS` and :data:`ARMS` order, the
    commands joined."""
    runs, machine, commands, jobs = {}, {}, [], None
    for path in paths:
        if os.path.isdir(path):
            found = []
            for name in sorted(os.listdir(path)):
                if name.endswith(".json") and name.count("-") >= 2:
                    with open(os.path.join(path, name)) as f:
                        found.append(json.load(f))
            r = {"runs": found}
            commands.append("python -m benchmarks.quality --runs-dir DIR ... (the runs kept there)")
        else:
            with open(path) as f:
                r = json.load(f)
            jobs = max(jobs or 1, r.get("config", {}).get("jobs", 1))
            machine = {**r.get("machine", {}), **machine}
            commands.append(r.get("machine", {}).get("command", "?"))
        for run in r["runs"]:
            if "error" not in run:
                runs.setdefault((run["task"], run["arm"], run["seed"]), run)
    present = {key[:2] for key in runs}
    config = {"tasks": [t for t in TASKS if any(t == k[0] for k in present)],
              "arms": [a for a in ARMS if any(a == k[1] for k in present)],
              "seeds": sorted({k[2] for k in runs}), "epochs": None, "jobs": jobs,
              "tiny": False}
    commands = list(dict.fromkeys(commands))
    machine["command"] = "`; `".join(commands) if commands else machine.get("command", "?")
    return {"config": config, "runs": list(runs.values()), "machine": machine}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                        "?")
    except OSError:
        return "?"


def _plain(rst: str) -> str:
    """The module docstring's reST as markdown: literals in single backquotes, no roles."""
    return re.sub(r":(?:func|mod|class|data):`~?([^`]+)`", r"`\1`", rst).replace("``", "`")


def write_page(path: str | None, result: dict) -> None:
    """Write the study's page (nothing when ``path`` is empty): what was run, then
    :func:`markdown`. Regenerate it with ``--from-json F --md PAGE``."""
    if not path:
        return
    m = result.get("machine", {})
    head = ["# Study: time to a good model (bucketed against padded, over seeds)", "",
            "Written by `python -m benchmarks.quality`; do not edit by hand (re-render with "
            "`python -m benchmarks.quality --from-json FILE --md PAGE`).", "",
            f"Command(s): `{m.get('command', '?')}`. CPU: {m.get('cpu', '?')}, "
            f"{m.get('nproc', '?')} cores, shared with other jobs: the times depend on the "
            "load, the quality figures do not. " + result.get("note", ""), "",
            _plain(__doc__[__doc__.index("Three tasks"):].strip())]
    with open(path, "w") as f:
        f.write("\n".join(head) + "\n\n" + markdown(result) + "\n")


# ------------------------------------------------------------------------------- CLI
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="lm,pairs,tag", help=f"comma-separated: {list(TASKS)}")
    ap.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                    help=f"comma-separated: {list(ARMS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="default: the task's (4)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at a time (quality is unaffected; times are then shared)")
    ap.add_argument("--tiny", action="store_true", help="seconds: the smoke test's size")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--from-json", default=None,
                    help="measure nothing: re-render these files (comma-separated: the runs of "
                         "several invocations are merged)")
    ap.add_argument("--note", default="", help="a sentence for the page's header")
    ap.add_argument("--md", default=None,
                    help="also write the tables as a page (e.g. docs/quality.md)")
    ap.add_argument("--runs-dir", default=None,
                    help="keep each run's figures here; runs already there are not repeated")
    ap.add_argument("--one", nargs=3, metavar=("TASK", "ARM", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        task, arm, seed = args.one
        result = run_one(task, arm, int(seed), epochs=args.epochs, tiny=args.tiny)
        write_json(args.json, result)
        return result
    if args.from_json:
        result = summarise(merge(args.from_json.split(",")))
        result["note"] = args.note
        result["machine"].setdefault("cpu", _cpu_model())
        result["machine"].setdefault("nproc", os.cpu_count())
        print(markdown(result))
        write_json(args.json, result)
        write_page(args.md, result)
        return result
    tasks = [t for t in args.tasks.split(",") if t]
    arms = [a for a in args.arms.split(",") if a]
    for name, given, known in (("tasks", tasks, TASKS), ("arms", arms, ARMS)):
        bad = [x for x in given if x not in known]
        if bad:
            ap.error(f"unknown {name} {bad}; choose from {list(known)}")
    seeds = [int(x) for x in args.seeds.split(",") if x]
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.tiny and args.seeds == "0,1,2":
        seeds = [0]
    result = measure(tasks, arms, seeds, epochs=args.epochs, jobs=args.jobs, tiny=args.tiny,
                     runs_dir=args.runs_dir)
    result["machine"] = {"cpu": _cpu_model(), "nproc": os.cpu_count(),
                         "command": "python -m benchmarks.quality " + " ".join(
                             argv if argv is not None else sys.argv[1:])}
    print(markdown(result))
    write_json(args.json, result)
    write_page(args.md, result)
    return result


if __name__ == "__main__":
    main()
