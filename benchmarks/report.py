"""Turn the raw figures of one run into ``benchmarks.json`` and the ``benchmarks.md`` table.

Everything written here comes from measured figures: the verdict on each target and the reason
given for a miss are computed, not typed in.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time

ORDER = ["ceiling", "bucketrnn_default", "bucketrnn_1thread", "bucketrnn_k16", "bucketrnn_k32",
         "bucketrnn_shared", "bucketrnn_fused",
         "gluonnlp_k10", "gluonnlp_k32", "bucketing_module", "pad_longest"]


def machine() -> dict:
    """nproc, CPU model, memory, load average, versions, git commit and the date."""
    import gluonnlp
    import mxnet
    import numpy

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "memory_gb": round(mem_kb / 2**20, 1),
            "loadavg": os.getloadavg(), "python": platform.python_version(),
            "mxnet": mxnet.__version__, "numpy": numpy.__version__,
            "gluonnlp": gluonnlp.__version__, "platform": platform.platform(),
            "git_commit": commit, "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                            time.gmtime())}


def aggregate(rounds: list[dict]) -> dict:
    """Sum the rounds of one arm: tokens and seconds add up; compile is the first (cold) round."""
    ok = [r for r in rounds if "error" not in r]
    if not ok:
        return {"error": rounds[0].get("error"), "traceback": rounds[0].get("traceback")}
    first, last = ok[0], ok[-1]
    seconds = sum(r["seconds"] for r in ok)
    real = sum(r["real_tokens"] for r in ok)
    computed = sum(r["computed_slots"] for r in ok)
    return {
        "title": first["title"], "steps": sum(r["steps"] for r in ok), "seconds": seconds,
        "real_tokens": real, "tokens_per_s": real / seconds,
        "tokens_per_s_rounds": [r["real_tokens"] / r["seconds"] for r in ok],
        "cpu_seconds": sum(r["cpu_seconds"] for r in ok),
        "tokens_per_cpu_s": real / sum(r["cpu_seconds"] for r in ok),
        "tokens_per_cpu_s_rounds": [r["real_tokens"] / r["cpu_seconds"] for r in ok],
        "loader_share_cpu": sum(r["load_cpu_seconds"] for r in ok) /
            sum(r["cpu_seconds"] for r in ok),
        "waste_window": 1 - real / computed, "waste_epoch": first["waste_per_epoch"],
        "graphs_compiled": len(first["warmup_seconds"]), "shapes_per_epoch":
            first["shapes_per_epoch"], "compile_seconds": sum(first["warmup_seconds"].values()),
        "compile_seconds_per_round": [sum(r["warmup_seconds"].values()) for r in ok],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
        "rss_growth_mb": max(r["peak_rss_mb"] - r["rss_base_mb"] for r in ok),
        "sentences_used": first["sentences_used"], "sentences_total": first["sentences_total"],
        "loss": last["loss"], "loader_share": sum(r["load_seconds"] for r in ok) / seconds,
        "rounds": len(ok), "errors": [r["error"] for r in rounds if "error" in r],
        "threads": first.get("threads"),
    }


def flops_per_token(config: dict) -> int:
    """Matrix-product FLOPs per trained token of the arms' model (forward + backward)."""
    from bucketrnn.training.flops import lm_flops_per_token

    return lm_flops_per_token(config["vocab_size"], config["embed_size"],
                              config["hidden_size"], config["num_layers"])


def peak(extras: dict, which: str = "all_cores") -> float | None:
    """The fastest fp32 GEMM measured in this run (start or end) with ``which`` threads."""
    found = [m[which]["flops"] for m in extras.get("gemm_peak", {}).values()
             if "flops" in m.get(which, {})]
    return max(found) if found else None


def _ratio(arms, a, b, key="tokens_per_cpu_s"):
    """Throughput ratio a / b over the whole run, and round by round.

    The default compares real tokens per CPU-second, which other jobs on the machine do not
    change; ``key="tokens_per_s"`` compares wall-clock throughput.
    """
    if a in arms and b in arms and "error" not in arms[a] and "error" not in arms[b]:
        x, y = arms[a], arms[b]
        return (x[key] / y[key],
                [p / q for p, q in zip(x[key + "_rounds"], y[key + "_rounds"])])
    return None


def _slot_rate(a) -> float:
    """Computed slots (real tokens + padding + fill rows) per CPU-second: graph speed."""
    return a["tokens_per_cpu_s"] / (1 - a["waste_window"])


def _compare(a, o) -> str:
    """Why ``a`` is not faster than ``o``, in measured figures: waste, graph speed, loader."""
    return (f"slot waste {100 * a['waste_window']:.1f}% here vs {100 * o['waste_window']:.1f}%; "
            f"computed slots per CPU-s {_slot_rate(a):,.0f} here vs {_slot_rate(o):,.0f}; loader "
            f"{100 * a['loader_share_cpu']:.1f}% of the CPU time here vs "
            f"{100 * o['loader_share_cpu']:.1f}%")


def targets(arms: dict, extras: dict) -> list[dict]:
    """Each target of the issue with the measured value, met or not, and the measured reason."""
    out = []
    prof = extras.get("profile", {})
    unrolled = [k for k in ("bucketrnn_default", "bucketrnn_k16", "bucketrnn_k32",
                            "bucketrnn_shared") if k in arms and "error" not in arms[k]]

    def add(name, value, goal, why="", also=True):
        if value is None:
            return
        ratio, per_round = value
        met = ratio >= goal and also
        out.append({"target": name, "measured": round(ratio, 3),
                    "per_round": [round(r, 3) for r in per_round], "goal": goal, "met": met,
                    "why_if_missed": "" if met else why})

    for k in unrolled:
        a = arms[k]
        if "ceiling" in arms and "error" not in arms["ceiling"]:
            add(f"{a['title']} / ceiling", _ratio(arms, k, "ceiling"), 0.92,
                _compare(a, arms["ceiling"]) + " (the ceiling's batches are prebuilt)")
        if "pad_longest" in arms and "error" not in arms["pad_longest"]:
            p = arms["pad_longest"]
            add(f"{a['title']} / pad to the longest", _ratio(arms, k, "pad_longest"), 3.3,
                _compare(a, p) + f"; from the waste alone the ratio would be "
                f"{(1 - a['waste_window']) / (1 - p['waste_window']):.2f}")
        for other in ("gluonnlp_k10", "gluonnlp_k32", "bucketing_module"):
            if other in arms and "error" not in arms[other]:
                o = arms[other]
                full = a["sentences_used"] == a["sentences_total"]
                few = a["shapes_per_epoch"] <= 32
                why = _compare(a, o)
                if not (full and few):
                    why += (f"; used {a['sentences_used']} of {a['sentences_total']} sentences, "
                            f"{a['shapes_per_epoch']} graphs")
                add(f"{a['title']} / {o['title']} (all sentences, <= 32 graphs)",
                    _ratio(arms, k, other), 1.0, why, also=full and few)
    if "bucketrnn_fused" in arms and "bucketrnn_default" in arms:
        why = _compare(arms["bucketrnn_fused"], arms["bucketrnn_default"])
        if prof and "step_unrolled" in prof:
            step, enc = prof["step_unrolled"], prof["encoder_unrolled"]
            share = prof["output_layer"] / step
            expected = step / (step - enc + prof["encoder_fused"])
            why = (f"profiled at {prof['rows']}x{prof['length']}: the output layer (vocabulary "
                   f"projection + softmax) alone takes {100 * share:.0f}% of an unrolled step and "
                   "is the same in both, so even a recurrent part costing nothing would make "
                   f"the step at most {step / (step - enc):.2f}x faster (Amdahl); the fused "
                   f"layers ran {enc / prof['encoder_fused']:.1f}x faster than the unrolled "
                   f"cells, i.e. about {expected:.2f}x for the whole step")
        add("bucketrnn fused / bucketrnn unrolled (default plan)",
            _ratio(arms, "bucketrnn_fused", "bucketrnn_default"), 2.0, why)
    if "bucketrnn_1thread" in arms and "bucketrnn_default" in arms:
        one, every = arms["bucketrnn_1thread"], arms["bucketrnn_default"]
        if "error" not in one and "error" not in every:
            add(f"bucketrnn on every core ({_fmt(every.get('threads'))} threads) / 1 thread, "
                "wall-clock real tokens/s",
                _ratio(arms, "bucketrnn_default", "bucketrnn_1thread", key="tokens_per_s"),
                1.3, f"the {_fmt(every.get('threads'))}-thread arm ran "
                f"{every['cpu_seconds'] / every['seconds']:.2f} cores busy on average (other "
                "jobs' load takes the rest); per CPU-second it computed "
                f"{_slot_rate(every):,.0f} slots vs {_slot_rate(one):,.0f} on one thread")
    out += _study_targets(extras.get("studies", {}))
    if "bucketrnn_default" in arms and "error" not in arms["bucketrnn_default"]:
        share = arms["bucketrnn_default"]["loader_share_cpu"]
        out.append({"target": "loader share of a bucketrnn training step (default plan, "
                              "CPU time)",
                    "measured": round(share, 4), "per_round": [], "goal": "<= 0.03",
                    "met": share <= 0.03,
                    "why_if_missed": "" if share <= 0.03 else
                    "CPU time in next(loader) (batch assembly in the training thread, "
                    "num_workers=0) against the process's CPU time"})
    return out


def _study_targets(studies: dict) -> list:
    """Issue 12's targets measured by the studies: the automatic plan within 3% of the best
    fixed K with compile under 5% of the run (each distribution), bf16 >= 1.4x fp32."""
    out = []
    auto = studies.get("autoplan", {}).get("result")
    for d in (auto or {}).get("distributions", []):
        share = d["arms"]["auto"]["compile_share"]
        ratio = d["auto_vs_best"]
        met = ratio >= 0.97 and share < 0.05
        out.append({"target": f"auto plan / best fixed K ({d['best_fixed']}) on {d['name']}, "
                              "predicted run incl. compile from per-bucket measurements",
                    "measured": round(ratio, 3), "per_round": [], "goal": ">= 0.97, compile "
                    "< 5%", "met": met, "why_if_missed": "" if met else
                    f"compile {100 * share:.1f}% of the run"})
    busy = studies.get("contention", {}).get("result")
    if busy and "median" in busy.get("settings", {}).get(busy.get("first"), {}):
        name = busy["first"]
        f = busy["settings"][name]
        met = f["median"] >= 0.45
        used = [x["cpu_seconds"] / x["wall_seconds"] for x in busy["rows"]
                if x["setting"] == name and x["busy"]]
        out.append({"target": "the app beside one busy process / alone, wall-clock real "
                              f"tokens/s (threads: {name})",
                    "measured": round(f["median"], 3),
                    "per_round": [round(r, 3) for r in f["ratios"]], "goal": 0.45,
                    "met": met, "why_if_missed": "" if met else
                    f"alone {f['alone']:,.0f}, beside the busy loop {f['busy']:,.0f} real "
                    f"tokens/s (medians); the run kept {statistics.median(used):.2f} cores busy "
                    "on average beside it"})
    prec = studies.get("precision", {}).get("result")
    if prec and "median" in prec:
        met = prec["median"] >= 1.4
        out.append({"target": "bf16 / fp32 (app, first 4,000 PTB sentences), wall-clock real "
                              "tokens/s, same threads",
                    "measured": round(prec["median"], 3),
                    "per_round": [round(r, 3) for r in prec["ratios"]], "goal": 1.4,
                    "met": met, "why_if_missed": "" if met else
                    f"per CPU-second {prec['cpu_median']:.2f}x: only the matrix products run "
                    "in bfloat16 (the output layer alone measured 1.6x); embedding, gate "
                    "arithmetic, softmax, the optimizer and the loader stay fp32 and, on 2 "
                    "threads, the many small per-step products gain less"})
    return out


def _digests(result) -> str:
    """A warning when the workers imported different bucketrnn sources (edits during the run)."""
    seen = {r.get("bucketrnn_digest") for rounds in result.get("raw", {}).values()
            for r in rounds}
    seen.discard(None)
    if len(seen) > 1:
        return (f" **The bucketrnn sources changed during the run**: workers imported "
                f"{len(seen)} different versions (digests {', '.join(sorted(seen))}).")
    return ""


def _gflops(a: dict, per_token: int, top: float | None) -> str:
    achieved = per_token * a["tokens_per_s"]
    share = f" ({100 * achieved / top:.0f}%)" if top else ""
    return f"{achieved / 1e9:.1f}{share}"


def _fmt(x, nd=0):
    return "-" if x is None else f"{x:,.{nd}f}"


def markdown(result: dict) -> str:
    m, arms, extras = result["machine"], result["arms"], result["extras"]
    lines = ["# Benchmarks: bucketrnn against the alternatives, one run", "",
             "Written by `python -m benchmarks`; do not edit by hand.", "",
             f"Command: `{result['command']}`", "",
             f"Machine: `nproc` = {m['nproc']}, CPU model {m['cpu_model']} (/proc/cpuinfo), "
             f"{m['memory_gb']} GB RAM, {m['platform']}; "
             f"load average at start {m['loadavg'][0]:.2f}, at end "
             f"{result['machine_end']['loadavg'][0]:.2f}. {result.get('note', '')}", "",
             f"Versions: Python {m['python']}, MXNet {m['mxnet']}, numpy {m['numpy']}, GluonNLP "
             f"{m['gluonnlp']}; git {m['git_commit']} at the start; {m['date_utc']}; total run "
             f"{result['wall_seconds'] / 60:.1f} min.{_digests(result)}", "",
             "## Setup", ""]
    c = result["config"]
    lines += [
        f"Model: {c['num_layers']}-layer LSTM language model, embedding {c['embed_size']}, hidden "
        f"{c['hidden_size']}, vocabulary {c['vocab_size']}, batch {c['batch_size']} rows, Adam "
        f"lr {c['learning_rate']}; data: {result['sentences']} Penn Treebank train sentences "
        "(`<eos> words <eos>`, language-model targets). Every arm runs "
        f"{result['steps']} timed steps of its own shuffled epoch-0 schedule (seed "
        f"{c['seed']}), in {result['rounds']} round(s); each round of each arm is a fresh process "
        "that reloads the parameters and optimizer state of the previous round, so arms are "
        "interleaved in time (round order alternates) against machine noise. Before timing, "
        "each round compiles every shape its window meets (bucketrnn: every bucket of the plan) "
        "with one forward/backward; that warm-up is the compile column (first round). "
        "Throughput counts real (non-padding) target tokens; the loader runs inside the timed "
        "loop, except for the ceiling whose batches are built beforehand.",
        "",
        "**Ratios and targets use real tokens per CPU-second** (CPU time of the arm's whole "
        "process, all MXNet threads, OpenMP threads set to sleep when idle), because on a shared "
        "machine wall-clock throughput measures the other jobs' load as much as the arm (the "
        "noise floor below is this run's spread in that unit). Wall-clock tokens/s are given "
        "alongside. Caveat: per CPU-second, an arm is not credited for "
        "keeping both cores busy; the cores column (CPU-s / wall-s) shows how parallel each "
        "arm ran, which the other jobs' load also lowers.",
        f"GraphCache memory policy for bucketrnn arms and the ceiling: `{c['memory']}`.", "",
        "## Training arms", "",
        "| arm | real tokens per CPU-s | x ceiling | real tokens/s, wall (x ceiling) | cores "
        "| threads | model GFLOP/s, wall (% of peak) "
        "| slot waste (window / epoch) | graphs compiled (window / per epoch) | compile s | peak "
        "RSS MB (growth) | sentences used | loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fpt, top = flops_per_token(c), peak(extras)
    ceiling = arms.get("ceiling", {}).get("tokens_per_cpu_s")
    ceiling_wall = arms.get("ceiling", {}).get("tokens_per_s")
    for name in ORDER:
        a = arms.get(name)
        if a is None:
            continue
        if "error" in a:
            lines.append(f"| {name} | failed: {a['error']} |||||||||| ")
            continue
        rel = a["tokens_per_cpu_s"] / ceiling if ceiling else None
        rel_wall = a["tokens_per_s"] / ceiling_wall if ceiling_wall else None
        lines.append(
            f"| {a['title']} | {_fmt(a['tokens_per_cpu_s'])} | {_fmt(rel, 3)} | "
            f"{_fmt(a['tokens_per_s'])} ({_fmt(rel_wall, 2)}) | "
            f"{a['cpu_seconds'] / a['seconds']:.2f} | {_fmt(a.get('threads'))} | "
            f"{_gflops(a, fpt, top)} | "
            f"{100 * a['waste_window']:.1f}% / {100 * a['waste_epoch']:.1f}% | "
            f"{a['graphs_compiled']} / {a['shapes_per_epoch']} | {a['compile_seconds']:.1f} | "
            f"{a['peak_rss_mb']:,.0f} ({a['rss_growth_mb']:+,.0f}) | "
            f"{a['sentences_used']:,} / {a['sentences_total']:,} | {a['loss']:.3f} |")
    lines += ["", "Peak RSS is each arm's own process high-water mark (VmHWM, max over rounds); "
              "growth is that peak minus the RSS after imports and data loading.",
              "Loss: mean per-token cross-entropy over the last 10 timed steps.",
              "Threads: the OpenMP threads of the arm's process (bucketrnn's default, all "
              "physical cores, except the 1-thread arm). Model GFLOP/s: the model's "
              f"matrix-product FLOPs per trained token ({fpt / 1e6:.2f} MFLOP, forward and "
              "backward, `bucketrnn.training.flops.lm_flops_per_token`) x real tokens per "
              "wall-second, "
              "against the fp32 GEMM peak measured in this run (see Utilisation).", "",
              "## Targets (ratios from this run)", "",
              "Measured = ratio of whole-run real tokens per CPU-second; per round = the same "
              "ratio within each round (arms of one round ran minutes apart, not in parallel).",
              ""]
    same = [arms[k] for k in ("ceiling", "bucketrnn_default", "bucketrnn_k16", "bucketrnn_k32",
                              "gluonnlp_k10", "gluonnlp_k32") if k in arms
            and "error" not in arms[k]]
    if len(same) > 1:
        rates = [_slot_rate(a) for a in same]
        mid = (max(rates) + min(rates)) / 2
        lines += [f"Noise floor of this run: the arms that run the same unrolled gluon graphs "
                  f"(ceiling, bucketrnn unrolled, GluonNLP) computed {min(rates):,.0f} to "
                  f"{max(rates):,.0f} slots per CPU-second (+-"
                  f"{100 * (max(rates) - mid) / mid:.0f}%), so a ratio within that much of its "
                  "goal is neither a clear pass nor a clear miss.", ""]
    # The table header goes after the noise-floor paragraph: text between a header and its
    # rows would end the Markdown table.
    lines += ["| target | measured | per round | goal | met | why, if missed |",
              "|---|---:|---|---:|---|---|"]
    for t in result["targets"]:
        per = ", ".join(f"{r:.2f}" for r in t["per_round"]) or "-"
        lines.append(f"| {t['target']} | {t['measured']} | {per} | {t['goal']} | "
                     f"{'yes' if t['met'] else '**no**'} | {t['why_if_missed']} |")
    lines += _extras_md(extras, arms, c["num_layers"])
    return "\n".join(lines) + "\n"


def _extras_md(extras, arms, layers):
    lines = _utilisation_md(extras)
    la = extras.get("loader_alone")
    if la and "rows" in la:
        lines += ["", "## Loader alone (one epoch, no model)", "",
                  "| loader | workers | batches/s | real tokens/s | build s |",
                  "|---|---:|---:|---:|---:|"]
        for r in la["rows"]:
            lines.append(f"| {r['loader']} | {r['workers']} | {r['batches_per_s']:,.0f} | "
                         f"{r['tokens_per_s']:,.0f} | {r['build_seconds']:.2f} |")
        d = arms.get("bucketrnn_default", {})
        if "tokens_per_s" in d:
            best = max(r["tokens_per_s"] for r in la["rows"] if r["loader"].startswith("bucket")
                       and r["workers"] == 0)
            lines += ["", f"Loader share of a training step (default plan): "
                      f"{100 * d['loader_share_cpu']:.2f}% of the process's CPU time and "
                      f"{100 * d['loader_share']:.2f}% of the wall time were spent in "
                      f"`next(loader)`; from the loader-alone rate, assembling the tokens "
                      f"trained per CPU-second takes {100 * d['tokens_per_cpu_s'] / best:.2f}% "
                      "of that time. Loader-alone rates are wall-clock (workers are separate "
                      "processes)."]
    elif la:
        lines += ["", f"Loader alone: failed: {la.get('error')}"]
    sc = extras.get("scaling")
    if sc:
        lines += ["", "## Scaling with data size (bucketrnn default plan)", "",
                  "Training time per epoch is extrapolated from the timed steps (seconds per "
                  "step x batches per epoch), in CPU-seconds (robust to the shared machine) and "
                  "wall seconds; planning, loader construction and one full loader epoch are "
                  "timed for real (wall).", "",
                  "| fraction | sentences | batches/epoch | timed steps | CPU-s/step | epoch "
                  "CPU-s (extrapolated) | epoch CPU-s per 1k sentences | epoch wall s "
                  "(extrapolated) | plan + loader build s | loader epoch s | compile s |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sc:
            if "error" in r:
                lines.append(f"| failed: {r['error']} |||||||||")
                continue
            lines.append(
                f"| {r['fraction']:.0%} | {r['sentences']:,} | {r['batches_per_epoch']} | "
                f"{r['timed_steps']} | {r['cpu_seconds_per_step']:.3f} | "
                f"{r['epoch_cpu_seconds_extrapolated']:.1f} | "
                f"{1000 * r['epoch_cpu_seconds_extrapolated'] / r['sentences']:.1f} | "
                f"{r['epoch_seconds_extrapolated']:.1f} | "
                f"{r['plan_and_loader_build_seconds']:.3f} | {r['loader_epoch_seconds']:.2f} | "
                f"{r['compile_seconds']:.1f} |")
    cs = extras.get("compile_sweep")
    if cs and "rows" in cs:
        lines += ["", "## Compile time against the number of buckets (unrolled, every bucket "
                  "warmed; wall seconds of one forward/backward per graph)", "",
                  "| buckets | graphs | sum of bucket lengths | compile s |",
                  "|---:|---:|---:|---:|"]
        rows = list(cs["rows"])
        for name, k in (("bucketrnn_default", 8), ("bucketrnn_k16", 16),
                        ("bucketrnn_k32", 32)):
            a = arms.get(name)
            if a and "error" not in a:
                rows.append({"num_buckets": k, "graphs": a["graphs_compiled"],
                             "compile_seconds": a["compile_seconds"], "sum_of_lengths": None})
        for r in sorted(rows, key=lambda r: r["num_buckets"]):
            lines.append(f"| {r['num_buckets']} | {r['graphs']} | "
                         f"{_fmt(r['sum_of_lengths'])} | {r['compile_seconds']:.1f} |")
    prof = extras.get("profile")
    if prof and "step_unrolled" in prof:
        lines += ["", f"## Profile of one step ({prof['rows']} rows x {prof['length']} steps, "
                  "by ablation, CPU time)", "", "| part | CPU-ms per training step |",
                  "|---|---:|"]
        for key, label in (("step_unrolled", "whole step, unrolled"),
                           ("step_fused", "whole step, fused"),
                           ("output_layer", "output layer alone (embedding + projection to the "
                            "vocabulary + log-softmax + masked pick)"),
                           ("encoder_unrolled", f"{layers}-layer LSTM alone, unrolled cells"),
                           ("encoder_fused", f"{layers}-layer LSTM alone, fused layers")):
            lines.append(f"| {label} | {1000 * prof[key]:.1f} |")
        if prof.get("top_operators"):
            lines += ["", "Top operators of the unrolled step (MXNet aggregate profiler, "
                      "all profiled steps):", "", "| operator | calls | total ms |",
                      "|---|---:|---:|"]
            for o in prof["top_operators"]:
                op = o["operator"] if len(o["operator"]) <= 70 else o["operator"][:67] + "..."
                lines.append(f"| `{op}` | {o['calls']} | {o['total_ms']} |")
    for name, value in extras.items():
        if isinstance(value, dict) and "error" in value:
            lines += ["", f"{name}: failed: {value['error']}"]
    if extras.get("studies"):
        from benchmarks import studies

        for name in sorted(extras["studies"]):
            lines += [""] + studies.markdown(name, extras["studies"][name]).rstrip("\n").split("\n")
    return lines


def _utilisation_md(extras) -> list:
    runs = extras.get("gemm_peak")
    if not runs:
        return []
    lines = ["", "## Utilisation: the machine's fp32 GEMM peak, measured in this run", "",
             "The fastest of 10 fp32 1024x1024 `mx.nd.dot` products (after one warm-up), each "
             "in a fresh worker process like the arms, before the first arm and after the "
             "last; the arms' % of peak uses the higher all-cores figure.", "",
             "| when | all cores GFLOP/s (threads) | 1 thread GFLOP/s |", "|---|---:|---:|"]
    for when in sorted(runs, key=lambda w: w != "start"):  # JSON sorts keys: keep the order
        m, cells = runs[when], []
        for which in ("all_cores", "one_thread"):
            r = m.get(which, {})
            cells.append(f"failed: {r.get('error')}" if "flops" not in r else
                         f"{r['flops'] / 1e9:.0f}" + (f" ({r['threads']})"
                                                      if which == "all_cores" else ""))
        lines.append(f"| {when} | {cells[0]} | {cells[1]} |")
    return lines


def write(result: dict, out_dir: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    md, js = os.path.join(out_dir, "benchmarks.md"), os.path.join(out_dir, "benchmarks.json")
    with open(js, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    with open(md, "w") as f:
        f.write(markdown(result))
    return md, js
