"""Studies beside the training arms, each a standalone module run by ``make bench`` too.

A study is ``python -m benchmarks.<name> [args] --json OUT``: it measures in its own processes
(interleaved arms, ratios and spreads) and its ``markdown(result)`` renders the figures. The
driver (:mod:`benchmarks.__main__`) runs each in a fresh process, one after another (never two
timed jobs at once), keeps the raw figures in ``benchmarks.json`` and puts each table in
``benchmarks.md``; ``--from-json`` re-renders them without measuring.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

__all__ = ["STUDIES", "markdown", "run"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (what it answers, the command's arguments, those of a smoke run: --tiny). The
# module's own defaults are the documented run.
STUDIES = {
    "autoplan": ("The automatic plan (`num_buckets=\"auto\"`) against the best fixed K "
                 "(4..48) on PTB and two other length distributions, real tokens/s over the "
                 "planned run including compile (issue 12)", [],
                 ["--tiny", "--check-limit", "0"]),
    "foreach": ("`unroll=False`: one length-agnostic graph (`cell=\"foreach\"`) against one "
                "unrolled graph per bucket and the fused layer, on PTB and a heavy-tailed "
                "length distribution (issue 14)", [],
                ["--tiny", "--rounds", "1", "--steps", "2", "--limit", "120", "--cells",
                 "foreach,unrolled", "--buckets", "4", "--data", "heavy"]),
    "precision": ("bf16 mixed precision (`trainer.precision=bf16`) against fp32: the app's "
                  "default experiment on the first 4,000 PTB sentences, interleaved arms "
                  "(issue 12)", ["--rounds", "2"],
                  ["--rounds", "1", "--limit", "60", "--steps", "2", "--threads", "1"]),
    "step": ("One training step of the default experiment before and after issue 18 (the "
             "unrolled cells' input products hoisted out of the time loop), the masked "
             "cross-entropy formulations MXNet offers, and the fraction of the fp32 GEMM peak",
             [], ["--rounds", "1", "--steps", "2", "--limit", "200", "--loss-rounds", "1",
              "--profile", "3"]),
    "contention": ("Training beside a busy process: the app (issue 18's short run) alone and "
                   "beside a pure-Python loop holding one core, interleaved, with bucketrnn's "
                   "default threads (issue 18)", [],
                   ["--rounds", "1", "--limit", "60", "--steps", "2", "--held-out", "20"]),
    "pairs": ("Sequence pairs: bucketed training against padding both sides to the longest, "
              "and beam search against greedy (issue 13)", [], ["--tiny"]),
    "quality": ("Time to a good model: validation quality per epoch over 3 seeds and the time "
                "to the padded arm's final quality, padded against bucketed and the candidate "
                "remedies, on a PTB language model, toy sequence pairs and a generated tagging "
                "task (issue 20)", [],
                ["--tiny", "--tasks", "pairs,tag", "--arms", "padded,bucketed"]),
}


def run(name: str, folder: str, timeout: float = 3600, tiny: bool = False) -> dict:
    """Run study ``name`` in a fresh process (its smoke size with ``tiny``); its raw figures,
    or ``{"error": ...}``."""
    out = os.path.join(folder, f"study-{name}.json")
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *STUDIES[name][2 if tiny else 1],
           "--json", out]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s", "command": " ".join(cmd[1:])}
    if done.returncode != 0 or not os.path.exists(out):
        return {"error": f"exit {done.returncode}: {done.stderr[-2000:]}",
                "command": " ".join(cmd[1:])}
    with open(out) as f:
        result = json.load(f)
    return {"command": "python " + " ".join(cmd[1:-2]), "result": result}


def markdown(name: str, study: dict) -> str:
    """The section of ``benchmarks.md`` for one study's figures (or its failure)."""
    title = STUDIES.get(name, (name,))[0]
    head = f"## Study: {name}\n\n{title}. Command: `{study.get('command', '?')}`.\n\n"
    if "error" in study:
        return head + f"Failed: {study['error']}\n"
    module = importlib.import_module(f"benchmarks.{name}")
    return head + module.markdown(study["result"])
