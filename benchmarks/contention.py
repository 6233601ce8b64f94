"""Training beside a busy process: the app's real tokens/s alone and beside one pure-Python loop
holding a core, interleaved, as a ratio busy / alone per thread setting.

Usage::

    python -m benchmarks.contention [--rounds 3] [--settings default]
    python -m benchmarks.contention --settings default,spin=300000,passive --rounds 3

Each round runs the app (the first ``--limit`` Penn Treebank sentences, ``--steps`` steps, 200
validation and 200 test sentences: the command of issue 18) once per setting alone and once
beside a busy process (``python -c "while True: pass"``, started before the run and killed after
it), in fresh processes; the order of the runs is reversed every other round. A setting is the
OpenMP environment of the run, everything else removed from it (``OMP_NUM_THREADS``,
``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` and MXNet's thread variables), so the caller's shell
cannot change an arm:

``default``        nothing set: what bucketrnn chooses (:mod:`bucketrnn.cores`)
``passive``        ``OMP_WAIT_POLICY=PASSIVE``: idle OpenMP threads sleep at once
``active``         ``OMP_WAIT_POLICY=ACTIVE``: they spin for ever
``spin=N``         ``GOMP_SPINCOUNT=N``; libgomp's own default is ``spin=300000`` (about 3 ms)
``threads=N``      ``OMP_NUM_THREADS=N``
joined with ``+``  e.g. ``threads=1+passive``

Prints every run (load average before it, real tokens/s, CPU-seconds of the run and of the busy
loop), then per setting the median busy / alone ratio with its per-round spread and, against the
first setting, the median alone / alone ratio (what the setting costs on a quieter machine).
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
import time

from benchmarks.common import write_json
from bucketrnn.cores import USER_THREAD_VARIABLES, WAIT_VARIABLES

__all__ = ["busy_process", "markdown", "main", "measure", "setting_env"]

# A pure-Python loop that holds one core until it is killed.
BUSY_CODE = "while True:\n    pass\n"
_KEYS = {"threads": "OMP_NUM_THREADS", "spin": "GOMP_SPINCOUNT"}
_POLICIES = {"passive": "PASSIVE", "active": "ACTIVE"}


def setting_env(setting: str, base=None) -> dict:
    """The environment of an app run under ``setting`` (see the module docstring).

    Parameters
    ----------
    setting : str
        ``default``, ``passive``, ``active``, ``spin=N``, ``threads=N`` or several joined by
        ``+``.
    base : dict, optional
        The environment to start from (default ``os.environ``); its thread and wait variables
        are removed.

    Examples
    --------
    >>> setting_env("threads=1+passive", base={"OMP_WAIT_POLICY": "ACTIVE", "HOME": "/h"})
    {'HOME': '/h', 'OMP_NUM_THREADS': '1', 'OMP_WAIT_POLICY': 'PASSIVE'}
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if k not in USER_THREAD_VARIABLES + WAIT_VARIABLES}
    for part in setting.split("+"):
        name, _, value = part.partition("=")
        if part == "default":
            continue
        if part in _POLICIES:
            env["OMP_WAIT_POLICY"] = _POLICIES[part]
        elif name in _KEYS and value.isdigit():
            env[_KEYS[name]] = value
        else:
            raise ValueError(f"unknown setting {part!r} in --settings; use default, passive, "
                             "active, spin=N, threads=N, joined by +")
    return env


class busy_process:
    """Context manager: one pure-Python loop holding a core, killed (by its pid) on exit; its
    ``cpu_seconds`` are read just before."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE],
                                     stdin=subprocess.DEVNULL)
        self.cpu_seconds = None
        time.sleep(0.2)  # running before the run starts
        return self

    def __exit__(self, *exc):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            self.cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
        self.proc.kill()
        self.proc.wait()
        return False


def _run(run_dir: str, env: dict, limit: int, steps: int, held_out: int, extra=()) -> dict:
    cmd = [sys.executable, "-m", "bucketrnn", f"dataset.limit={limit}",
           f"dataset.valid_limit={held_out}", f"dataset.test_limit={held_out}",
           f"trainer.max_steps={steps}", "trainer.epochs=1", "trainer.progress=false",
           "plots=false", f"hydra.run.dir={run_dir}", *extra]
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


def measure(settings=("default",), rounds: int = 3, limit: int = 2000, steps: int = 30,
            held_out: int = 200, extra=(), alone_only=()) -> dict:
    """Every setting alone and beside a busy process, ``rounds`` times, interleaved (``extra``:
    more ``key=value`` overrides of the app, e.g. ``bucketing.num_buckets=auto``; the settings
    in ``alone_only`` run alone only, without busy / alone ratios).

    Returns
    -------
    dict
        ``rows`` (one per run), and per setting (``settings``) the per-round busy / alone
        ratios, their median, and the per-round alone ratio against the first setting.
    """
    for s in settings:
        setting_env(s, {})  # refuse a bad setting before anything runs
    runs = [(s, busy) for s in settings for busy in (False, True)
            if not (busy and s in alone_only)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for n, (setting, busy) in enumerate(runs if r % 2 == 0 else runs[::-1]):
                env = setting_env(setting)
                load = os.getloadavg()[0]
                run_dir = os.path.join(tmp, f"{r}-{n}")
                if busy:
                    with busy_process() as loop:
                        s = _run(run_dir, env, limit, steps, held_out, extra)
                    busy_cpu = loop.cpu_seconds
                else:
                    s, busy_cpu = _run(run_dir, env, limit, steps, held_out, extra), None
                print(f"round {r}  {setting}  {'busy' if busy else 'alone'}  load {load:.2f}  "
                      f"{s['tokens_per_s']:,.0f} real tokens/s", file=sys.stderr, flush=True)
                rows.append({"round": r, "setting": setting, "busy": busy, "load": load,
                             "threads": s["threads"], "steps": s["steps"],
                             "tokens_per_s": s["tokens_per_s"],
                             "train_seconds": s["train_seconds"],
                             "wall_seconds": s["wall_seconds"], "cpu_seconds": s["cpu_seconds"],
                             "busy_cpu_seconds": busy_cpu,
                             # num_buckets=auto: the probe's step-time fit and the plan's K.
                             "fit_error": ((s.get("auto_plan") or {}).get("cost_model")
                                           or {}).get("fit_error"),
                             "auto_chosen": (s.get("auto_plan") or {}).get("chosen"),
                             "num_buckets": len(s["plan"]["keys"])})
    out = {"rows": rows, "settings": {}, "limit": limit, "steps": steps, "held_out": held_out,
           "extra": list(extra)}
    first = settings[0]

    def speed(setting, busy, r):
        return next(x["tokens_per_s"] for x in rows
                    if x["setting"] == setting and x["busy"] == busy and x["round"] == r)

    for s in settings:
        versus = [speed(s, False, r) / speed(first, False, r) for r in range(rounds)]
        f = out["settings"][s] = {
            "alone": statistics.median(speed(s, False, r) for r in range(rounds)),
            "alone_vs_first": versus, "alone_vs_first_median": statistics.median(versus)}
        if s in alone_only:
            continue
        ratios = [speed(s, True, r) / speed(s, False, r) for r in range(rounds)]
        f.update(busy=statistics.median(speed(s, True, r) for r in range(rounds)),
                 ratios=ratios, median=statistics.median(ratios))
        if first not in alone_only:
            versus_busy = [speed(s, True, r) / speed(first, True, r) for r in range(rounds)]
            f.update(busy_vs_first=versus_busy,
                     busy_vs_first_median=statistics.median(versus_busy))
    out["first"] = first
    return out


def _fit(row) -> str:
    if row.get("auto_chosen") is False:
        return " (auto: the probe's timings did not fit, fallback plan)"
    return "" if row["fit_error"] is None else f" (probe fit error {100 * row['fit_error']:.1f}%)"


def _spread(xs) -> str:
    return f"{', '.join(f'{x:.2f}' for x in xs)}; spread {min(xs):.2f}-{max(xs):.2f}"


def summary_lines(result: dict) -> list:
    """One line per setting: busy / alone and alone against the first setting."""
    first, lines = result["first"], []
    for s, f in result["settings"].items():
        line = f"{s}: alone {f['alone']:,.0f}"
        if "busy" in f:
            line += (f", busy {f['busy']:,.0f} real tokens/s (medians); busy / alone median "
                     f"{f['median']:.2f} (rounds {_spread(f['ratios'])})")
        else:
            line += " real tokens/s (median; alone only)"
        if s != first:
            line += (f"; alone vs {first} median {f['alone_vs_first_median']:.3f} (rounds "
                     f"{_spread(f['alone_vs_first'])})")
            if "busy_vs_first_median" in f:
                line += f"; busy vs {first} median {f['busy_vs_first_median']:.2f}"
        lines.append(line)
    return lines


def markdown(result: dict) -> str:
    """Every run of :func:`measure` and the ratios as markdown."""
    lines = ["| round | setting | beside a busy loop | load | real tokens/s | train s | run CPU-s "
             "| busy loop CPU-s | buckets |", "|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for x in result["rows"]:
        busy_cpu = "-" if x["busy_cpu_seconds"] is None else f"{x['busy_cpu_seconds']:.1f}"
        lines.append(f"| {x['round']} | {x['setting']} | {'yes' if x['busy'] else 'no'} | "
                     f"{x['load']:.2f} | {x['tokens_per_s']:,.0f} | {x['train_seconds']:.1f} | "
                     f"{x['cpu_seconds']:.1f} | {busy_cpu} | {x['num_buckets']}{_fit(x)} |")
    seen = {}
    for x in result["rows"]:
        seen.setdefault(x["setting"], x["threads"])
    lines += [""] + [f"- `{s}`: threads line of the summary: {t}" for s, t in seen.items()]
    lines += [""] + [f"- {line}" for line in summary_lines(result)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="default",
                    help="comma-separated settings (default: default); the first is the "
                         "reference of the alone / alone ratios")
    ap.add_argument("--alone-only", default="",
                    help="comma-separated settings run alone only (no busy loop: e.g. one that "
                         "collapses beside it and would take many minutes)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=2000, help="training sentences")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--held-out", type=int, default=200,
                    help="validation and test sentences each")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="another app override for every run (repeatable), e.g. "
                         "bucketing.num_buckets=auto (the rows then carry the probe's fit error)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    for name in ("rounds", "limit", "steps", "held_out"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    settings = [s for s in args.settings.split(",") if s]
    try:
        for s in settings:
            setting_env(s, {})
    except ValueError as e:
        ap.error(str(e))
    if not settings:
        ap.error("--settings is empty")
    alone_only = [s for s in args.alone_only.split(",") if s]
    if any(s not in settings for s in alone_only):
        ap.error(f"--alone-only names settings not in --settings: {alone_only}")
    result = measure(settings, args.rounds, args.limit, args.steps, args.held_out,
                     args.override, alone_only)
    for x in result["rows"]:
        busy_cpu = "" if x["busy_cpu_seconds"] is None else \
            f", busy loop {x['busy_cpu_seconds']:.1f} CPU-s"
        print(f"round {x['round']}  {x['setting']:<12} {'busy ' if x['busy'] else 'alone'}  "
              f"load {x['load']:.2f}  {x['tokens_per_s']:,.0f} real tokens/s  "
              f"train {x['train_seconds']:.1f}s  run {x['cpu_seconds']:.1f} CPU-s{busy_cpu}  "
              f"K={x['num_buckets']}{_fit(x)}  threads: {x['threads']}", flush=True)
    for line in summary_lines(result):
        print(line)
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
