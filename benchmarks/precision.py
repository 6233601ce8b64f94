"""fp32 against bf16 mixed precision: the app's real tokens/s with ``trainer.precision=fp32`` and
``trainer.precision=bf16`` on the same threads, interleaved, as a ratio.

Usage::

    python -m benchmarks.precision [--rounds 3] [--limit 4000] [--steps 160]
    python -m benchmarks.precision --rounds 1 --full     # the default experiment, 2 epochs each

Each round runs the app twice in fresh processes (fp32, then bf16) on the first ``--limit`` Penn
Treebank sentences for ``--steps`` steps (``--full``: the default experiment as it is), and
reads each run's ``summary.json``. Both arms get the same thread settings (bucketrnn's default,
all physical cores, unless ``--threads`` fixes ``OMP_NUM_THREADS``) and ``OMP_WAIT_POLICY=
PASSIVE`` (idle OpenMP threads sleep rather than spin, so CPU time is work). Prints every run
(with the load average before it), the median ratio of real tokens/s (wall clock, the app's
figure) and of real tokens per CPU-second of the whole process (steadier on a shared machine),
the spread of the per-round ratios, and the validation perplexities with their difference.
Needs a CPU with AVX512_BF16 (the bf16 arm is refused otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

from benchmarks.common import app_env, write_json

__all__ = ["markdown", "ARMS", "main", "measure"]

ARMS = ("fp32", "bf16")


def _run(run_dir: str, precision: str, limit: int | None, steps: int | None,
         threads: int | None, extra=()) -> dict:
    env = app_env(threads)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cmd = [sys.executable, "-m", "bucketrnn", f"trainer.precision={precision}", "plots=false",
           "trainer.progress=false", f"hydra.run.dir={run_dir}"]
    if limit is not None:
        cmd += [f"dataset.limit={limit}", f"trainer.max_steps={steps}", "trainer.epochs=1"]
    cmd += list(extra)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    summary["cpu_seconds"] = (after.ru_utime - before.ru_utime
                              + after.ru_stime - before.ru_stime)
    return summary


def measure(rounds: int = 3, limit: int | None = 4000, steps: int | None = 160,
            threads: int | None = None, extra=()) -> dict:
    """Per-round figures of both arms and the bf16/fp32 ratios (``limit=None``: the default
    experiment as configured; ``extra``: more ``key=value`` overrides for both arms)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for arm in ARMS:
                load = os.getloadavg()[0]
                s = _run(os.path.join(tmp, f"{r}-{arm}"), arm, limit, steps, threads, extra)
                tokens = s["tokens_per_s"] * s["train_seconds"]
                rows.append({"round": r, "arm": arm, "load": load, "threads": s["threads"],
                             "precision": s.get("precision"), "steps": s["steps"],
                             "tokens_per_s": s["tokens_per_s"],
                             "tokens_per_cpu_s": tokens / max(s["cpu_seconds"], 1e-9),
                             "cpu_seconds": s["cpu_seconds"],
                             "wall_seconds": s["wall_seconds"],
                             "valid_perplexity": s["valid"]["perplexity"]})
    pairs = list(zip(rows[::2], rows[1::2]))
    wall = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in pairs]
    cpu = [b["tokens_per_cpu_s"] / a["tokens_per_cpu_s"] for a, b in pairs]
    ppl = [b["valid_perplexity"] / a["valid_perplexity"] - 1 for a, b in pairs]
    return {"rows": rows, "ratios": wall, "median": statistics.median(wall),
            "cpu_ratios": cpu, "cpu_median": statistics.median(cpu), "ppl_differences": ppl}


def markdown(result: dict) -> str:
    """The rounds of :func:`measure` and the bf16/fp32 ratios as a markdown table."""
    lines = ["| round | precision | load | threads | steps | real tokens/s | per CPU-s | valid "
             "perplexity |", "|---:|---|---:|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['round']} | {row['arm']} | {row['load']:.2f} | {row['threads']} | "
                     f"{row['steps']} | {row['tokens_per_s']:,.0f} | "
                     f"{row['tokens_per_cpu_s']:,.0f} | {row['valid_perplexity']:.2f} |")
    wall, cpu = result["ratios"], result["cpu_ratios"]
    lines += ["", f"bf16 / fp32 real tokens/s: wall median {result['median']:.2f}x (rounds "
              f"{', '.join(f'{r:.2f}' for r in wall)}), per CPU-second median "
              f"{result['cpu_median']:.2f}x (rounds {', '.join(f'{r:.2f}' for r in cpu)}); "
              "valid perplexity bf16 vs fp32: "
              + ", ".join(f"{100 * d:+.2f}%" for d in result["ppl_differences"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--full", action="store_true",
                    help="the default experiment (2 epochs on 21,000 sentences) in each arm")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for both arms (default: bucketrnn's, all cores)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    for name in ("rounds", "limit", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    limit, steps = (None, None) if args.full else (args.limit, args.steps)
    result = measure(args.rounds, limit, steps, args.threads)
    for row in result["rows"]:
        print(f"round {row['round']}  {row['arm']}  load {row['load']:.2f}  "
              f"{row['tokens_per_s']:,.0f} real tokens/s ({row['tokens_per_cpu_s']:,.0f} per "
              f"CPU-s)  {row['steps']} steps  valid perplexity {row['valid_perplexity']:.2f}  "
              f"threads: {row['threads']}")
    for label, key, median in (("wall", "ratios", "median"),
                               ("CPU", "cpu_ratios", "cpu_median")):
        ratios = result[key]
        print(f"bf16 / fp32 real tokens/s ({label}): median {result[median]:.2f}x (rounds "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; spread {min(ratios):.2f}-"
              f"{max(ratios):.2f})")
    print("valid perplexity bf16 vs fp32: "
          + ", ".join(f"{100 * d:+.2f}%" for d in result["ppl_differences"]))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
