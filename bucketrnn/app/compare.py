"""``bucketrnn-compare DIR``: one table row per run under ``DIR`` (its ``summary.json``).

Made for sweeps::

    python -m bucketrnn -m bucketing.num_buckets=1,8,32 trainer.max_steps=200
    python -m bucketrnn.app.compare multirun/2026-11-28_17-00-00

The first columns are the settings that differ between the runs (the config each run saved in
its ``summary.json``: ``bucketing.num_buckets=8``), then the plan's waste (``plan waste%``: the
share of its computed slots, fill rows included and for sequence pairs source plus target
steps, that are not real tokens, the summary's figure), graphs compiled, real tokens/s (source
plus target for pairs), training seconds and the validation/test figures (perplexity, or
accuracy); when a run is a sequence-pair run, also its greedy exact match and BLEU (sacrebleu's
0-100 scale) on each split.

A run whose ``summary.json`` cannot be read (not a regular file, over
:data:`MAX_SUMMARY_BYTES`, not JSON, not an object, a field missing or of the wrong type) is left
out with one ``warning:`` line on stderr naming the file and why; the other runs are still
tabled. The exit status is 2 only when no run is readable (1 when there is no ``summary.json``
at all). Directory links under ``DIR`` are not followed, and values are shown as text, control
characters escaped: never evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from numbers import Real

from bucketrnn.files import read_json
from bucketrnn.training.rundir import SUMMARY

__all__ = ["MAX_SUMMARY_BYTES", "collect", "main", "settings", "table"]

# A summary.json is a few KB; anything past this is not one (and /dev/zero never ends).
MAX_SUMMARY_BYTES = 16 * 2**20
# Nesting deeper than any config has; deeper would only exhaust the stack when flattened.
_MAX_DEPTH = 64


def _summary_paths(directory: str, skipped: list) -> list:
    """Every ``summary.json`` entry under ``directory``, sorted; directory links are not
    followed (``a/up -> ..`` would list the runs again and again)."""
    found = []

    def unlisted(e: OSError) -> None:
        skipped.append((e.filename, f"could not be listed ({e.strerror})"))

    for folder, dirs, files in os.walk(directory, onerror=unlisted, followlinks=False):
        dirs.sort()
        # A directory (or a link to one) named summary.json is in dirs: reported, not read.
        if SUMMARY in files or SUMMARY in dirs:
            found.append(os.path.join(folder, SUMMARY))
    return sorted(found)


def _too_deep(value) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > _MAX_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        float(value)
    except OverflowError:  # an int beyond any float: not a figure a run wrote
        return False
    return True


def _problem(summary) -> str | None:
    """Why ``summary`` cannot be a row of the table, or ``None``."""
    if not isinstance(summary, dict):
        return f"holds a JSON {type(summary).__name__}, not an object"
    if _too_deep(summary):
        return f"is nested more than {_MAX_DEPTH} levels deep"
    plan = summary.get("plan")
    if not isinstance(plan, dict) or not _is_number(plan.get("waste")):
        return "field 'plan.waste' is missing or not a number"
    if isinstance(summary.get("graphs_compiled"), bool) \
            or not isinstance(summary.get("graphs_compiled"), int):
        return "field 'graphs_compiled' is missing or not an integer"
    for key in ("tokens_per_s", "train_seconds"):
        if not _is_number(summary.get(key)):
            return f"field {key!r} is missing or not a number"
    if summary.get("config") is not None and not isinstance(summary["config"], dict):
        return "field 'config' is not an object"
    for split in ("valid", "test"):
        figs = summary.get(split)
        if figs is None:
            continue
        if not isinstance(figs, dict):
            return f"field {split!r} is not an object"
        for key in ("perplexity", "accuracy"):
            if key in figs and not _is_number(figs[key]):
                return f"field '{split}.{key}' is not a number"
    return None


def _read_summary(path: str):
    """``(summary, None)``, or ``(None, why)`` when the file cannot be a row."""
    try:
        summary = read_json(path, limit=MAX_SUMMARY_BYTES)
    except ValueError as e:  # what is wrong with the file; the warning names it
        return None, str(e)
    except OSError as e:  # a dangling link, an unreadable file
        return None, (e.strerror or str(e)).replace(f"{path!r} ", "", 1)
    why = _problem(summary)
    return (None, why) if why else (summary, None)


def collect(directory: str, skipped: list | None = None) -> list:
    """``summary.json`` of every run under ``directory``, each with its ``name`` (its folder
    relative to ``directory``).

    A file that cannot be a row (not a regular file, over :data:`MAX_SUMMARY_BYTES`, not JSON,
    not an object, missing or ill-typed fields) is left out and ``(path, why)`` appended to
    ``skipped`` when given; the other runs are returned. Directory links are not followed.
    """
    skipped = [] if skipped is None else skipped
    rows = []
    for path in _summary_paths(directory, skipped):
        summary, why = _read_summary(path)
        if why:
            skipped.append((path, why))
            continue
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


def _printable(text: str) -> str:
    """``text`` with control characters escaped: a run's folder name or a setting is shown,
    never interpreted by the terminal (an escape sequence, a newline splitting a row)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _metric(s: dict, split: str) -> str:
    figs = s.get(split) or {}
    for key in ("perplexity", "accuracy"):
        if key in figs:
            return f"{figs[key]:.4g}"
    return "-"


def _translation(s: dict, split: str, key: str, fmt: str) -> str:
    value = (s.get(split) or {}).get(key)
    return fmt.format(value) if _is_number(value) else "-"


def table(rows: list) -> str:
    """A plain-text table of the runs."""
    if not rows:
        return "no runs"
    head = ["run", "settings", "plan waste%", "graphs", "tok/s", "train s", "valid", "test"]
    # Sequence-pair runs: the figures of translating the held-out sources.
    pairs = any(_is_number((s.get(split) or {}).get("bleu")) for s in rows
                for split in ("valid", "test"))
    if pairs:
        head += ["valid exact", "valid BLEU", "test exact", "test BLEU"]
    body = []
    for s, differ in zip(rows, settings(rows)):
        row = [s["name"], " ".join(differ) or "-",
               f"{100 * s['plan']['waste']:.1f}", str(s["graphs_compiled"]),
               f"{s['tokens_per_s']:,.0f}", f"{s['train_seconds']:.0f}",
               _metric(s, "valid"), _metric(s, "test")]
        if pairs:
            row += [_translation(s, split, key, fmt) for split in ("valid", "test")
                    for key, fmt in (("exact_match", "{:.3f}"), ("bleu", "{:.2f}"))]
        body.append(row)
    body = [[_printable(c) for c in r] for r in body]
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
    skipped = []
    rows = collect(args.directory, skipped)
    for path, why in skipped:
        print(f"warning: skipped {path!r}: {_printable(why)}", file=sys.stderr)
    if not rows:
        if skipped:
            print(f"error: no readable summary.json under {args.directory!r}", file=sys.stderr)
            return 2
        print(f"error: no summary.json under {args.directory!r}", file=sys.stderr)
        return 1
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
