"""A corpus larger than memory: prepare once, memory-map, start in seconds.

    .venv/bin/python -m benchmarks.corpus                    # 20 MB: a few minutes
    .venv/bin/python -m benchmarks.corpus --size-mb 200      # the issue's 200 MB case
    .venv/bin/python -m benchmarks.corpus --size-mb 1024     # 1 GB (4+ minutes of 2 cores)
    .venv/bin/python -m benchmarks.corpus --tiny             # seconds: what the smoke test runs

The corpus is generated like a user's text: a Zipf vocabulary of 50,000 words (random letter
strings), line lengths log-normal around 14 words, clipped to 1-201 (mean ~19). Every figure is
measured in a fresh process (``/usr/bin/time -v`` for one process's peak RSS and the CPU
seconds of it and its children; the process tree's peak PSS is sampled from /proc,
so the workers of a prepare count once each, shared pages split among them; every 0.2 s):

- ``prepare``: ``bucketrnn-prepare CORPUS OUT`` (both cores);
- ``plan``: ``bucketrnn-plan dataset=prepared dataset.path=OUT`` (load + lengths + plan);
- ``first_step``: the app on the prepared corpus, ``trainer.max_steps=1`` and no held-out
  split (load + plan + model + one training step + the run's files), beside the same run on a
  10 MB prepared corpus and on the 10 MB text file read in memory;
- ``tokens_per_s``: the default model (``lstm_lm``, 2x200) on the 10 MB corpus, prepared vs
  read in memory (the same batches), the arms interleaved A B A B over ``--rounds``;
- ``loader``: CPU milliseconds per batch of the loader alone (no model) on the same two
  datasets, interleaved: what the memory maps could add to a step;
- ``planner``: the exact planner (``plan_buckets``, ``strategy=optimal``, 8 buckets) on 10^7
  (and with ``--planner-1e8`` 10^8) synthetic lengths, and the size of the sampler's state.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from benchmarks.common import app_env, write_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 50_000
SMALL_MB = 10
APP = ["model.hidden_size=200", "trainer.progress=false", "plots=false",
       "dataset.valid_fraction=0", "dataset.test_fraction=0"]


# ------------------------------------------------------------------ the corpus
def generate(path: str, size_mb: float, seed: int = 0) -> dict:
    """Write about ``size_mb`` MB of text to ``path``; returns its lines, tokens and bytes."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    word_len = np.clip(rng.poisson(4.0, VOCAB) + 1, 1, 12)
    words = [letters[rng.integers(0, 26, n)].tobytes() for n in word_len]
    words = list(dict.fromkeys(words))  # distinct strings
    rank = np.arange(1, len(words) + 1, dtype=np.float64)
    cdf = np.cumsum(rank ** -1.07)
    cdf /= cdf[-1]
    spaced = np.array([w + b" " for w in words], dtype=object)
    ended = np.array([w + b"\n" for w in words], dtype=object)
    target, written, lines, tokens = int(size_mb * 2**20), 0, 0, 0
    with open(path, "wb") as f:
        while written < target:
            n = 20_000
            lengths = np.clip(np.rint(rng.lognormal(np.log(14.0), 0.75, n)), 1, 201)
            lengths = lengths.astype(np.int64)
            ids = np.searchsorted(cdf, rng.random(int(lengths.sum())))
            last = np.zeros(ids.size, dtype=bool)
            last[np.cumsum(lengths) - 1] = True
            block = b"".join(np.where(last, ended[ids], spaced[ids]).tolist())
            f.write(block)
            written += len(block)
            lines += n
            tokens += ids.size
    return {"bytes": written, "lines": lines, "tokens": tokens, "mb": round(written / 2**20, 1)}


# ------------------------------------------------------------------ measuring a process
def _tree(pid: int) -> list:
    """``pid`` and its descendants (``/proc/PID/task/TID/children``: only this subtree is read,
    so sampling costs little beside the measured processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class _Sampler(threading.Thread):
    """Peak PSS (KB) of a process tree, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.stop = pid, every, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, sum(_pss_kb(p) for p in _tree(self.pid)))
            self.stop.wait(self.every)


def measure(cmd: list, env: dict | None = None, cwd: str | None = None) -> dict:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, CPU seconds (it and its waited
    children), its own peak RSS and the process tree's peak PSS, in MB."""
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    sampler = _Sampler(proc.pid)
    start = time.perf_counter()
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")

    def field(name):
        m = re.search(rf"{re.escape(name)}: ([0-9.]+)", err)
        return float(m.group(1)) if m else float("nan")

    return {"wall_s": round(wall, 2),
            "cpu_s": round(field("User time (seconds)") + field("System time (seconds)"), 2),
            "peak_rss_mb": round(field("Maximum resident set size (kbytes)") / 1024, 1),
            "tree_peak_pss_mb": round(sampler.peak / 1024, 1), "stdout": out[-2000:]}


def _python(*args) -> list:
    return [sys.executable, *args]


def _env() -> dict:
    return {**app_env(), "OMP_WAIT_POLICY": "PASSIVE", "MXNET_SUBGRAPH_VERBOSE": "0"}


# ------------------------------------------------------------------ the arms
def prepare_once(corpus: str, out: str, workers: int | None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = _python("-m", "bucketrnn.app.prepare", corpus, out, "--quiet")
    if workers:
        cmd += ["--workers", str(workers)]
    result = measure(cmd, _env())
    result["mb_per_s"] = round(os.path.getsize(corpus) / 2**20 / result["wall_s"], 1)
    return result


def plan_once(prepared: str) -> dict:
    result = measure(_python("-m", "bucketrnn.app.plan", "dataset=prepared",
                             f"dataset.path={prepared}", "model=lstm_lm"), _env())
    result["plan"] = [ln for ln in result.pop("stdout").splitlines() if "this plan" in ln]
    return result


def first_step(dataset: list, workdir: str, tag: str) -> dict:
    run_dir = os.path.join(workdir, f"run-{tag}")
    shutil.rmtree(run_dir, ignore_errors=True)
    result = measure(_python("-m", "bucketrnn", *dataset, *APP, "trainer.max_steps=1",
                             f"hydra.run.dir={run_dir}"), _env(), cwd=workdir)
    result.pop("stdout")
    return result


def tokens_per_s(dataset: list, workdir: str, tag: str, steps: int) -> float:
    run_dir = os.path.join(workdir, f"tps-{tag}")
    shutil.rmtree(run_dir, ignore_errors=True)
    measure(_python("-m", "bucketrnn", *dataset, *APP, f"trainer.max_steps={steps}",
                    f"hydra.run.dir={run_dir}"), _env(), cwd=workdir)
    with open(os.path.join(run_dir, "summary.json")) as f:
        return float(json.load(f)["tokens_per_s"])


LOADER = """
import json, sys, time
from bucketrnn.data.datasets import text_file
from bucketrnn.data.loader import BucketLoader
from bucketrnn.data.prepared import PreparedDataset
kind, path, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = PreparedDataset(path) if kind == "prepared" else text_file(path)[0]
loader = BucketLoader(ds, batch_size=32, num_buckets=8, shuffle=True, seed=0, task="lm")
start, tokens = time.process_time(), 0
for i, batch in enumerate(loader):
    tokens += int(batch.valid_length.sum().asscalar())
    if i + 1 == batches:
        break
print(json.dumps({"cpu_s": time.process_time() - start, "tokens": tokens}))
"""


def loader_cost(kind: str, path: str, batches: int) -> dict:
    """CPU seconds the loader takes for ``batches`` batches (no model): what the prepared
    dataset could add to a training step."""
    out = measure(_python("-c", LOADER, kind, path, str(batches)), _env())
    figures = json.loads(out["stdout"].strip().splitlines()[-1])
    return {"cpu_ms_per_batch": round(1000 * figures["cpu_s"] / batches, 3),
            "tokens": figures["tokens"]}


def planner(n: int, seed: int = 0) -> dict:
    """The exact planner and the sampler on ``n`` synthetic lengths, in this process."""
    from bucketrnn.data.plan import length_histogram, plan_buckets
    from bucketrnn.data.sampler import BucketBatchSampler

    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(14.0), 0.75, n)), 1, 201).astype(np.int64)
    t = time.perf_counter()
    values, counts = length_histogram(lengths)
    hist_s = time.perf_counter() - t
    t = time.perf_counter()
    plan = plan_buckets(lengths, num_buckets=8, strategy="optimal", batch_size=32)
    plan_s = time.perf_counter() - t
    row = {"n": n, "distinct_lengths": int(values.size), "histogram_s": round(hist_s, 3),
           "plan_buckets_s": round(plan_s, 3), "keys": list(plan.keys)}
    if n <= 10**7:
        t = time.perf_counter()
        sampler = BucketBatchSampler(lengths, plan, shuffle=True, seed=0,
                                     bucket_ids=plan.example_buckets)
        row["sampler_init_s"] = round(time.perf_counter() - t, 3)
        sampler.set_epoch(3)
        t = time.perf_counter()
        next(iter(sampler))
        row["sampler_epoch_start_s"] = round(time.perf_counter() - t, 3)
        row["sampler_state_bytes"] = len(json.dumps(sampler.state_dict()))
    return row


# ------------------------------------------------------------------ the run
def _ratio_spread(a: list, b: list) -> dict:
    ratios = [x / y for x, y in zip(a, b)]
    return {"ratio_mean": round(float(np.mean(ratios)), 4),
            "ratio_min": round(min(ratios), 4), "ratio_max": round(max(ratios), 4)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.corpus",
                                description=__doc__.split("\n")[0])
    p.add_argument("--size-mb", type=float, default=20.0, help="the large corpus (default 20)")
    p.add_argument("--workdir", default=None,
                   help="where corpora and prepared directories go (default: a temporary "
                        "directory, removed at the end)")
    p.add_argument("--workers", type=int, default=None, help="bucketrnn-prepare --workers")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=150,
                   help="training steps per tokens/s run (default 150)")
    p.add_argument("--skip", default="",
                   help="comma-separated parts to leave out: prepare,plan,first_step,"
                        "tokens_per_s,loader,planner")
    p.add_argument("--planner-1e8", action="store_true",
                   help="also plan 10^8 lengths (about 6 GB of memory)")
    p.add_argument("--tiny", action="store_true", help="seconds: 1 MB, 1 round, 4 steps")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    if args.tiny:
        args.size_mb, args.rounds, args.steps = 1.0, 1, 4
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    workdir = args.workdir or tempfile.mkdtemp(prefix="bucketrnn-corpus-")
    os.makedirs(workdir, exist_ok=True)
    small_mb = 0.5 if args.tiny else SMALL_MB
    result = {"machine": {"cpu": _cpu(), "cores": os.cpu_count(), "load_start": _load()}}
    try:
        big, small = (os.path.join(workdir, f"corpus-{n}.txt") for n in ("big", "small"))
        big_out, small_out = big + ".prepared", small + ".prepared"
        result["corpus"] = _reuse_or_generate(big, args.size_mb)
        result["small_corpus"] = _reuse_or_generate(small, small_mb, seed=1)
        _log(f"corpora: {result['corpus']} and {result['small_corpus']}")
        if "prepare" not in skip or not os.path.isdir(big_out):
            result["prepare"] = prepare_once(big, big_out, args.workers)
            result["prepare"].pop("stdout")
            _log(f"prepare {result['corpus']['mb']} MB: {result['prepare']}")
        if not os.path.isdir(small_out):
            prepare_once(small, small_out, args.workers)
        if "plan" not in skip:
            result["plan"] = [plan_once(big_out) for _ in range(args.rounds)]
            _log(f"bucketrnn-plan on the prepared corpus: {result['plan']}")
        if "first_step" not in skip:
            arms = {"prepared_large": ["dataset=prepared", f"dataset.path={big_out}"],
                    "prepared_10mb": ["dataset=prepared", f"dataset.path={small_out}"],
                    "text_10mb_in_memory": ["dataset=text", f"dataset.path={small}"]}
            rows = {name: [] for name in arms}
            for r in range(args.rounds):
                order = list(arms) if r % 2 == 0 else list(arms)[::-1]
                for name in order:
                    rows[name].append(first_step(arms[name], workdir, name))
                    _log(f"first step, round {r}, {name}: {rows[name][-1]}")
            result["first_step"] = rows
        if "tokens_per_s" not in skip:
            arms = {"prepared": ["dataset=prepared", f"dataset.path={small_out}"],
                    "in_memory": ["dataset=text", f"dataset.path={small}"]}
            tps = {name: [] for name in arms}
            for r in range(args.rounds):
                order = list(arms) if r % 2 == 0 else list(arms)[::-1]
                for name in order:
                    tps[name].append(round(tokens_per_s(arms[name], workdir, name, args.steps),
                                           1))
                    _log(f"tokens/s, round {r}, {name}: {tps[name][-1]}")
            result["tokens_per_s"] = {**tps, **_ratio_spread(tps["prepared"],
                                                             tps["in_memory"])}
        if "loader" not in skip:
            arms = {"prepared": ("prepared", small_out), "in_memory": ("text", small)}
            rows = {name: [] for name in arms}
            batches = 50 if args.tiny else 2000
            for r in range(args.rounds):
                for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
                    rows[name].append(loader_cost(*arms[name], batches))
                    _log(f"loader, round {r}, {name}: {rows[name][-1]}")
            cost = {name: [x["cpu_ms_per_batch"] for x in rows[name]] for name in rows}
            result["loader"] = {"batches": batches, **cost,
                                **_ratio_spread(cost["prepared"], cost["in_memory"])}
        if "planner" not in skip:
            sizes = [10**5] if args.tiny else [10**7] + ([10**8] if args.planner_1e8 else [])
            result["planner"] = [planner(n) for n in sizes]
            _log(f"planner: {result['planner']}")
    finally:
        result["machine"]["load_end"] = _load()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    write_json(args.json, result)
    print(json.dumps(result, indent=1))
    return result


def _reuse_or_generate(path: str, size_mb: float, seed: int = 0) -> dict:
    info = path + ".json"
    if os.path.isfile(path) and os.path.isfile(info):
        with open(info) as f:
            known = json.load(f)
        if abs(known["mb"] - size_mb) < max(1.0, 0.02 * size_mb):
            return known
    known = generate(path, size_mb, seed)
    with open(info, "w") as f:
        json.dump(known, f)
    return known


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def _load() -> list:
    return [round(x, 2) for x in os.getloadavg()]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
