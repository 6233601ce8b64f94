"""``python -m benchmarks``: every arm side by side in one run, written to docs/benchmarks.*.

    .venv/bin/python -m benchmarks                      # full run (11.8 min at 19:16 UTC, 2 cores)
    .venv/bin/python -m benchmarks --tiny --out /tmp/b  # seconds: what the smoke test runs
    .venv/bin/python -m benchmarks --arms ceiling,bucketrnn_default --steps 20

The parent process loads Penn Treebank once and runs every measurement in a fresh worker
process (:mod:`benchmarks.worker`), so each arm's peak RSS is its own. The timed steps of each
arm are split into rounds; round ``r`` runs the arms in alternating order and each arm continues
from the parameters and optimizer state its previous round saved.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import report
from benchmarks.arms import ARM_ENV, ARMS, TINY, Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=None,
                   help="timed training steps per arm, over all rounds (default 80; tiny 4)")
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 2; tiny 1)")
    p.add_argument("--tiny", action="store_true",
                   help="smoke run: 640 sentences, 16-unit model, batch 16, a few steps")
    p.add_argument("--arms", default=",".join(ARMS),
                   help=f"comma-separated subset of: {','.join(ARMS)}")
    p.add_argument("--out", default=os.path.join(ROOT, "docs"),
                   help="directory for benchmarks.md and benchmarks.json")
    p.add_argument("--extras", default="loader,scaling,compile,profile",
                   help="comma-separated extras to run (loader,scaling,compile,profile) or ''")
    p.add_argument("--studies", default=None,
                   help="comma-separated studies to run after the arms (benchmarks/studies.py: "
                        "foreach,pairs), each its own timed run; default all, none with --tiny")
    p.add_argument("--scaling-steps", type=int, default=None,
                   help="timed steps per data size for the scaling table (default 12; tiny 2)")
    p.add_argument("--memory", default="static", choices=("shared", "static", "dynamic"),
                   help="GraphCache memory policy of the bucketrnn arms and the ceiling")
    p.add_argument("--note", default="", help="free text for the report (e.g. machine shared)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker process")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="measure nothing: re-render benchmarks.md (and the targets) from the raw "
                        "figures of an earlier run's benchmarks.json, into --out")
    args = p.parse_args(argv)
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    args.extras = [e for e in args.extras.split(",") if e]
    from benchmarks.studies import STUDIES

    if args.studies is None:
        args.studies = "" if args.tiny else ",".join(STUDIES)
    args.studies = [s for s in args.studies.split(",") if s]
    unknown = [s for s in args.studies if s not in STUDIES]
    if unknown:
        p.error(f"unknown studies {unknown}; choose from {list(STUDIES)}")
    args.steps = args.steps or (4 if args.tiny else 80)
    args.rounds = args.rounds or (1 if args.tiny else 2)
    args.scaling_steps = args.scaling_steps or (2 if args.tiny else 12)
    if args.steps < args.rounds:
        p.error(f"--steps must be >= --rounds, got steps={args.steps}, rounds={args.rounds}")
    return args


def prepare_data(tiny: bool, folder: str):
    """Penn Treebank train sentences as ``<eos> words <eos>`` ids, saved once for the workers."""
    from bucketrnn.data.datasets import penn_treebank

    data, vocab = penn_treebank("train", limit=640 if tiny else None)
    path = os.path.join(folder, "data.npz")
    np.savez(path, tokens=data.tokens, offsets=data.offsets)
    return path, len(data), len(vocab)


def run_worker(spec: dict, folder: str, tag: str, timeout: float, env_extra=None) -> dict:
    spec_path = os.path.join(folder, f"{tag}.spec.json")
    out_path = os.path.join(folder, f"{tag}.out.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    from bucketrnn.cores import USER_THREAD_VARIABLES

    # Every worker gets bucketrnn's own thread setting (all physical cores) unless its arm says
    # otherwise (ARM_ENV): a thread variable of the caller's shell would silently change arms.
    env = {k: v for k, v in os.environ.items() if k not in USER_THREAD_VARIABLES}
    env.update(env_extra or {},
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # Idle OpenMP threads sleep instead of spinning: spinning burns CPU time that would count
    # as work whenever other jobs share the cores (the same setting for every arm).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", spec_path, out_path],
                              cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f}s"}
    wall = time.perf_counter() - started
    if not os.path.exists(out_path):
        return {"error": f"worker exited with {proc.returncode} without a result",
                "stderr": proc.stderr[-3000:]}
    with open(out_path) as f:
        result = json.load(f)
    if isinstance(result, dict):
        result["process_seconds"] = wall
    return result


def measure_peak(base: dict, folder: str, when: str, timeout: float) -> dict:
    """fp32 GEMM peak on every core and on one thread, each in a fresh worker like the arms."""
    out = {}
    for arm, env in (("all_cores", None), ("one_thread", {"OMP_NUM_THREADS": "1"})):
        out[arm] = run_worker(dict(base, task="gemm_peak"), folder, f"peak-{when}-{arm}",
                              timeout, env)
        if "flops" in out[arm]:
            log(f"GEMM peak ({when}, {arm.replace('_', ' ')}): "
                f"{out[arm]['flops'] / 1e9:.0f} GFLOP/s")
    return out


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rerender(path: str, out_dir: str, note: str = "") -> int:
    """Rewrite the report of an earlier run from its raw figures (no measurement); ``note`` is
    appended to the run's note."""
    with open(path) as f:
        result = json.load(f)
    if note:
        result["note"] = (result.get("note", "") + " " + note).strip()
    result["arms"] = {name: report.aggregate(rounds) for name, rounds in result["raw"].items()}
    result["targets"] = report.targets(result["arms"], result["extras"])
    md, js = report.write(result, out_dir)
    log(f"re-rendered {md} and {js} from {path}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        return rerender(args.from_json, args.out, args.note)
    # Checkpoints between rounds and worker specs live here (hundreds of MB for a full run).
    with tempfile.TemporaryDirectory(prefix="bucketrnn-bench-") as folder:
        return measure(args, folder, argv)


def measure(args, folder: str, argv=None) -> int:
    """Run every arm and extra with ``folder`` for the data, specs and checkpoints."""
    started = time.perf_counter()
    cfg = Config(memory=args.memory, **(TINY if args.tiny else {}))
    machine = report.machine()
    data_path, sentences, vocab = prepare_data(args.tiny, folder)
    if vocab != cfg.vocab_size:
        raise SystemExit(f"the PTB vocabulary has {vocab} entries, the model {cfg.vocab_size}")
    base = {"config": cfg.as_dict(), "data": data_path}

    peak = {"start": measure_peak(base, folder, "start", args.timeout)}
    per_round = [args.steps // args.rounds + (r < args.steps % args.rounds)
                 for r in range(args.rounds)]
    raw = {name: [] for name in args.arms}
    for r, steps in enumerate(per_round):
        order = args.arms if r % 2 == 0 else args.arms[::-1]
        for name in order:
            ckpt = os.path.join(folder, f"{name}.ckpt")
            prev = raw[name][-1] if raw[name] else None
            if prev is not None and "error" in prev:
                continue
            spec = dict(base, task="arm", arm=name, args={
                "steps": steps, "start": sum(per_round[:r]),
                "load": ckpt if r else None, "save": ckpt if r + 1 < args.rounds else None})
            res = run_worker(spec, folder, f"{name}.r{r}", args.timeout, ARM_ENV.get(name))
            raw[name].append(res)
            log(f"round {r} {name}: " + (res["error"] if "error" in res else
                f"{res['real_tokens'] / res['seconds']:,.0f} tok/s, "
                f"{res['real_tokens'] / res['cpu_seconds']:,.0f} tok/CPU-s, "
                f"{sum(res['warmup_seconds'].values()):.1f}s compile, "
                f"{res['process_seconds']:.0f}s in all"))

    peak["end"] = measure_peak(base, folder, "end", args.timeout)
    extras = {"gemm_peak": peak}
    if "loader" in args.extras:
        extras["loader_alone"] = run_worker(dict(base, task="loader_alone"), folder, "loader",
                                            args.timeout)
        log("loader alone done")
    if "compile" in args.extras:
        extras["compile_sweep"] = run_worker(dict(base, task="compile_sweep"), folder,
                                             "compile", args.timeout)
        log("compile sweep done")
    if "scaling" in args.extras:
        extras["scaling"] = [
            run_worker(dict(base, task="scaling_point",
                            args={"fraction": f, "steps": args.scaling_steps}),
                       folder, f"scaling{f}", args.timeout) for f in (0.1, 0.3, 1.0)]
        log("scaling done")
    if "profile" in args.extras:
        extras["profile"] = run_worker(dict(base, task="profile"), folder, "profile",
                                       args.timeout)
        log("profile done")

    from benchmarks import studies

    for name in args.studies:
        extras.setdefault("studies", {})[name] = studies.run(name, folder, args.timeout,
                                                            tiny=args.tiny)
        log(f"study {name} done")

    arms = {name: report.aggregate(rounds) for name, rounds in raw.items()}
    argv = sys.argv[1:] if argv is None else argv
    result = {
        "command": " ".join(["python -m benchmarks"] + [shlex.quote(a) for a in argv]),
        "machine": machine, "machine_end": {"loadavg": os.getloadavg()}, "note": args.note,
        "config": cfg.as_dict(), "sentences": sentences, "steps": args.steps,
        "rounds": args.rounds, "arms": arms, "raw": raw, "extras": extras,
        "wall_seconds": time.perf_counter() - started,
    }
    result["targets"] = report.targets(arms, extras)
    md, js = report.write(result, args.out)
    log(f"wrote {md} and {js} in {result['wall_seconds']:.0f}s")
    failed = [n for n, a in arms.items() if "error" in a]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
