"""``bucketrnn-compare DIR``: one table row per run under ``DIR`` (its ``summary.json``).

Made for sweeps::

    python -m bucketrnn -m bucketing.num_buckets=1,8,32 trainer.max_steps=200
    python -m bucketrnn.app.compare multirun/2026-11-28_17-00-00

The first columns are the overrides that differ between runs (from Hydra's
``.hydra/overrides.yaml``), then padding waste, graphs compiled, real tokens/s, training
seconds and the validation/test figures.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from bucketrnn.rundir import SUMMARY

__all__ = ["collect", "main", "table"]


def collect(directory: str) -> list:
    """``summary.json`` of every run under ``directory``, each with its ``overrides``."""
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "**", SUMMARY), recursive=True)):
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        overrides = []
        hydra_overrides = os.path.join(os.path.dirname(path), ".hydra", "overrides.yaml")
        if os.path.isfile(hydra_overrides):
            from omegaconf import OmegaConf

            overrides = list(OmegaConf.load(hydra_overrides))
        summary["overrides"] = overrides
        summary["name"] = os.path.relpath(os.path.dirname(path), directory)
        rows.append(summary)
    return rows


def _metric(s: dict, split: str) -> str:
    figs = s.get(split) or {}
    for key in ("perplexity", "accuracy"):
        if key in figs:
            return f"{figs[key]:.4g}"
    return "-"


def table(rows: list) -> str:
    """A plain-text table of the runs."""
    if not rows:
        return "no runs"
    common = set(rows[0]["overrides"]).intersection(*(set(r["overrides"]) for r in rows))
    head = ["run", "overrides", "waste%", "graphs", "tok/s", "train s", "valid", "test"]
    body = []
    for s in rows:
        body.append([s["name"], " ".join(o for o in s["overrides"] if o not in common) or "-",
                     f"{100 * s['plan']['waste']:.1f}", str(s["graphs_compiled"]),
                     f"{s['tokens_per_s']:,.0f}", f"{s['train_seconds']:.0f}",
                     _metric(s, "valid"), _metric(s, "test")])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if common:
        lines.append(f"(common to all runs: {' '.join(sorted(common))})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bucketrnn.app.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", help="a multirun directory (or any folder of runs)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        print(f"error: {args.directory!r} is not a directory", file=sys.stderr)
        return 2
    rows = collect(args.directory)
    if not rows:
        print(f"error: no summary.json under {args.directory!r}", file=sys.stderr)
        return 1
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
