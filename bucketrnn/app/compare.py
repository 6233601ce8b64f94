"""``bucketrnn-compare DIR``: one table row per run under ``DIR`` (its ``summary.json``).

Made for sweeps::

    python -m bucketrnn -m bucketing.num_buckets=1,8,32 trainer.max_steps=200
    python -m bucketrnn.app.compare multirun/2026-11-28_17-00-00

The first columns are the settings that differ between the runs (the config each run saved in
its ``summary.json``: ``bucketing.num_buckets=8``), then padding waste, graphs compiled, real
tokens/s, training seconds and the validation/test figures.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

from bucketrnn.rundir import SUMMARY

__all__ = ["collect", "main", "settings", "table"]


def collect(directory: str) -> list:
    """``summary.json`` of every run under ``directory``, each with its ``name`` (its folder
    relative to ``directory``)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "**", SUMMARY), recursive=True)):
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        summary["name"] = os.path.relpath(os.path.dirname(path), directory)
        rows.append(summary)
    return rows


# Keys that say how a run was launched, not what it computed.
_NOT_SETTINGS = ("resume",)


def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _shown(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def settings(rows: list) -> list:
    """Per run, the ``key=value`` config settings whose values differ between the runs."""
    flats = [_flat(r.get("config") or {}) for r in rows]
    keys = sorted({k for f in flats for k in f if k not in _NOT_SETTINGS})
    differ = [k for k in keys if len({json.dumps(f.get(k, "<absent>"), sort_keys=True)
                                      for f in flats}) > 1]
    return [[f"{k}={_shown(f.get(k, '<absent>'))}" for k in differ] for f in flats]


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
    head = ["run", "settings", "waste%", "graphs", "tok/s", "train s", "valid", "test"]
    body = []
    for s, differ in zip(rows, settings(rows)):
        body.append([s["name"], " ".join(differ) or "-",
                     f"{100 * s['plan']['waste']:.1f}", str(s["graphs_compiled"]),
                     f"{s['tokens_per_s']:,.0f}", f"{s['train_seconds']:.0f}",
                     _metric(s, "valid"), _metric(s, "test")])
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
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
