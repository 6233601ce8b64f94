"""One thread against every core: the app's real tokens/s with ``OMP_NUM_THREADS=1`` and with
the default bucketrnn sets (all physical cores), interleaved, as a ratio.

Usage::

    python -m benchmarks.threads [--rounds 3] [--limit 4000] [--steps 160]

Each round runs the app twice in fresh processes (one thread, then all cores) on the first
``--limit`` Penn Treebank sentences for ``--steps`` steps, and reads each run's
``summary.json``. Prints every run (with the load average before it), the median ratio and the
spread of the per-round ratios (the noise floor), and checks that both arms reached the same
validation perplexity (the thread count must not change the result beyond float rounding).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks.common import app_env

__all__ = ["main", "measure"]


def _run(run_dir: str, threads: int | None, limit: int, steps: int, held_out: int | None,
         extra=()) -> dict:
    env = app_env(threads)
    cmd = [sys.executable, "-m", "bucketrnn", f"dataset.limit={limit}",
           f"trainer.max_steps={steps}", "trainer.epochs=1", "plots=false",
           "trainer.progress=false", f"hydra.run.dir={run_dir}"]
    if held_out is not None:
        cmd += [f"dataset.valid_limit={held_out}", f"dataset.test_limit={held_out}"]
    cmd += list(extra)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def measure(rounds: int = 3, limit: int = 4000, steps: int = 160, held_out: int | None = None,
            extra=()) -> dict:
    """Per-round tokens/s of both arms and their ratios.

    Parameters
    ----------
    rounds, limit, steps : int
        As the command's options.
    held_out : int or None
        Validation and test sentences of each run (None: all of Penn Treebank's; the
        evaluation is not timed, but on a few training steps it is most of a run's time).
    extra : sequence of str
        More ``key=value`` overrides of the app, e.g. a smaller model.
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for arm, threads in (("1 thread", 1), ("all cores", None)):
                load = os.getloadavg()[0]
                s = _run(os.path.join(tmp, f"{r}-{threads}"), threads, limit, steps, held_out,
                         extra)
                rows.append({"round": r, "arm": arm, "load": load, "threads": s["threads"],
                             "tokens_per_s": s["tokens_per_s"],
                             "valid_perplexity": s["valid"]["perplexity"]})
    ratios = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(rows[::2], rows[1::2])]
    return {"rows": rows, "ratios": ratios, "median": statistics.median(ratios)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=160)
    args = ap.parse_args(argv)
    result = measure(args.rounds, args.limit, args.steps)
    for row in result["rows"]:
        print(f"round {row['round']}  {row['arm']:<9}  load {row['load']:.2f}  "
              f"{row['tokens_per_s']:,.0f} real tokens/s  valid perplexity "
              f"{row['valid_perplexity']:.2f}  threads: {row['threads']}")
    ratios = result["ratios"]
    print(f"all cores / 1 thread: median {result['median']:.2f}x (rounds "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; spread {min(ratios):.2f}-"
          f"{max(ratios):.2f})")
    ppl = {round(row["valid_perplexity"], 2) for row in result["rows"]}
    print("validation perplexity equal in both arms" if len(ppl) == 1 else
          f"validation perplexities differ: {sorted(ppl)}")
    return result


if __name__ == "__main__":
    main()
