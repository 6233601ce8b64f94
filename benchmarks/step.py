"""One training step of the default language model: where its time goes, the step before and
after issue 18, the loss formulations MXNet offers, and the fraction of the fp32 GEMM peak.

Usage::

    python -m benchmarks.step [--rounds 3] [--steps 30] [--threads N] [--json OUT]

Whole step: the app's default model and data (2 x 200 LSTM, tied embedding, Penn Treebank's
first 21,000 sentences, vocabulary 10,000, 8 buckets, batch 32, ``memory="shared"``, Adam,
gradient clipping at 1.0, as ``TrainLoop`` steps), timed over the first ``--steps`` batches of
the shuffled epoch-0 schedule (the same batches in every arm) after a few untimed ones. Arms,
each in a fresh process, their order alternating by round:

``before``
    The step as it was before issue 18: each unrolled cell run by Gluon's ``cell.unroll`` (one
    input product and one state product per time step). The study installs that formulation
    itself (it is no longer in the library).
``after``
    The library as it is: the input products of all steps as one product before the loop
    (:mod:`bucketrnn.models.unroll`).
``fused`` (with ``--arms``)
    ``cell="fused"`` (oneDNN's fused LSTM layer), for reference: other parameter names, final
    hidden states only.

Each arm reports CPU and wall milliseconds per step, real tokens/s, the model's GFLOP/s
(``lm_flops_per_token`` x real tokens/s) and its fraction of the fp32 GEMM peak that process
measured at the end (``gemm_peak``, same threads). The ratios (``before`` over each arm) are
taken per round, their median and spread reported. On a shared machine CPU time is the steadier
figure; wall time is what a quiet machine's tokens/s follow.

Profile (``--profile N``, default 12): the first two arms once more each, MXNet's aggregate
operator profiler over the same steps with bulk execution off, the top ``N`` operators.

Output layer alone: the masked per-token cross-entropy after the vocabulary projection, forward
and backward, at the default shape (32 rows x 24 steps, 200 -> 10,000) in formulations MXNet
offers (``--loss-rounds`` interleaved rounds, CPU ms per step): ``log_softmax + pick`` (the
library's), ``softmax, log, pick``, ``SoftmaxOutput`` (``use_ignore``, the mask as ignored
labels; its gradient ignores the head gradient, so it fits a uniform ``loss.sum()`` only) and
``softmax_cross_entropy`` (one scalar, no mask: speed reference only), each with the projection
as ``FullyConnected(flatten=False)`` on ``(B, L, H)`` or flattened to ``(B * L, H)``.

:func:`measure` returns the raw figures as a dict and :func:`markdown` renders them, for
``make bench`` (:mod:`benchmarks.studies`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import profiler_file, write_json

__all__ = ["ARMS", "LOSSES", "main", "markdown", "measure", "output_layer", "worker"]

ARMS = ("before", "after", "fused")
LOSSES = ("log_softmax+pick", "log_softmax+pick flat", "softmax+log+pick", "SoftmaxOutput",
          "softmax_cross_entropy")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = dict(hidden_size=200, num_layers=2, tie_weights=True)


def _gluon_unroll():
    """Install the formulation before issue 18 in this process: Gluon's ``cell.unroll``."""
    from bucketrnn.models.encoder import RecurrentEncoder

    hoisted = RecurrentEncoder._direction

    def direction(self, F, block, x, valid_length):
        if self.cell != "unrolled":
            return hoisted(self, F, block, x, valid_length)
        out, states = block.unroll(self.length, x, layout="NTC", merge_outputs=True,
                                   valid_length=valid_length)
        return out, list(states)

    RecurrentEncoder._direction = direction


def worker(spec: dict) -> dict:
    """One arm in this process: the default experiment's first batches, timed (or profiled,
    with ``spec["profile"]``: MXNet's aggregate operator statistics over the same steps)."""
    if spec.get("profile"):
        # Every operator on its own (no bulk segments), so the statistics name each one; read
        # when the executors are bound, so before MXNet loads.
        os.environ["MXNET_EXEC_BULK_EXEC_TRAIN"] = "0"
    if spec["arm"] == "before":
        _gluon_unroll()
    import mxnet as mx
    from mxnet import autograd, gluon

    from bucketrnn.data.datasets import penn_treebank
    from bucketrnn.data.loader import BucketLoader
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.models import LanguageModel
    from bucketrnn.training.flops import gemm_peak, lm_flops_per_token

    data, vocab = penn_treebank("train", limit=spec["limit"])
    loader = BucketLoader(data, batch_size=spec["batch_size"], num_buckets=spec["buckets"],
                          shuffle=True, seed=0, task="lm", num_workers=0,
                          vocab_size=len(vocab))
    cell = "fused" if spec["arm"] == "fused" else "unrolled"
    graphs = GraphCache(LanguageModel.factory(vocab_size=len(vocab), cell=cell, **MODEL),
                        memory="shared", keys=loader.plan.keys)
    mx.random.seed(0)
    graphs.initialize(mx.init.Xavier())
    params = [p for p in graphs.collect_params().values() if p.grad_req != "null"]
    trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 0.01})
    warm = 3
    batches = [b for _, b in zip(range(spec["steps"] + warm), iter(loader))]
    graphs.warmup(loader.plan, example=batches[0])

    def step(batch):
        real = float((batch.valid_length.asnumpy() * batch.weight.asnumpy()).sum())
        with autograd.record():
            total = graphs(batch).sum()
            objective = total / real
        objective.backward()
        loss = float(total.asscalar()) / real
        gluon.utils.clip_global_norm([p.grad() for p in params], 1.0, check_isfinite=False)
        trainer.update(1)
        return real, loss

    for batch in batches[:warm]:
        step(batch)
    mx.nd.waitall()
    profiling = contextlib.ExitStack()
    if spec.get("profile"):
        mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                               filename=profiling.enter_context(profiler_file()))
        mx.profiler.set_state("run")
    tokens, losses = 0.0, []
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches[warm:]:
        real, loss = step(batch)
        tokens += real
        losses.append(loss)
    mx.nd.waitall()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if spec.get("profile"):
        mx.profiler.set_state("stop")
        with profiling:
            stats = json.loads(mx.profiler.dumps(format="json"))["Time"]["operator"]
        total = sum(v["Total"] for v in stats.values())
        top = sorted(stats.items(), key=lambda kv: -kv[1]["Total"])[:spec["profile"]]
        return {"arm": spec["arm"], "steps": len(batches) - warm, "operators": [
            {"name": k, "calls": v["Count"], "ms_per_step": v["Total"] / (len(batches) - warm),
             "share": v["Total"] / total} for k, v in top]}
    peak = gemm_peak()
    flops = lm_flops_per_token(vocab_size=len(vocab), embed_size=None,
                               hidden_size=MODEL["hidden_size"], num_layers=MODEL["num_layers"])
    steps = len(batches) - warm
    return {"arm": spec["arm"], "steps": steps, "tokens": tokens,
            "wall_ms": 1000 * wall / steps, "cpu_ms": 1000 * cpu / steps,
            "tokens_per_s": tokens / wall, "tokens_per_cpu_s": tokens / cpu,
            "gflops": flops * tokens / wall / 1e9, "peak_gflops": peak / 1e9,
            "peak_fraction": flops * tokens / wall / peak,
            "threads": os.environ.get("OMP_NUM_THREADS", "bucketrnn default"),
            "losses": losses}


def output_layer(rounds: int = 3, rows: int = 32, length: int = 24, hidden: int = 200,
                 vocab: int = 10_000, repeats: int = 5) -> dict:
    """CPU ms per forward + backward of each formulation in :data:`LOSSES`, in this process
    (hybridized blocks, one warm-up each, ``rounds`` interleaved rounds of ``repeats`` steps)."""
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    def logits(F, h, w, b, flat):
        if flat:
            return F.FullyConnected(F.reshape(h, shape=(-3, 0)), w, b, num_hidden=vocab)
        return F.FullyConnected(h, w, b, num_hidden=vocab, flatten=False)

    def masked(F, nll, label, vl, weight):
        nll = F.SequenceMask(F.reshape_like(nll, label), vl, use_sequence_length=True, axis=1)
        return F.sum(nll, axis=1) * weight

    def log_softmax_pick(F, h, vl, label, weight, w, b, flat=False):
        z = logits(F, h, w, b, flat)
        lab = F.reshape(label, shape=(-1,)) if flat else label
        return masked(F, -F.pick(F.log_softmax(z, axis=-1), lab, axis=-1), label, vl, weight)

    def softmax_log_pick(F, h, vl, label, weight, w, b):
        z = logits(F, h, w, b, False)
        return masked(F, -F.log(F.pick(F.softmax(z, axis=-1), label, axis=-1)), label, vl,
                      weight)

    def softmax_output(F, h, vl, label, weight, w, b):
        z = logits(F, h, w, b, True)
        label = F.cast(label, "float32")
        keep = F.broadcast_mul(F.SequenceMask(F.ones_like(label), vl, use_sequence_length=True,
                                              axis=1), F.reshape(weight, shape=(-1, 1)))
        ignored = F.where(keep > 0, label, F.ones_like(label) * -1)
        p = F.SoftmaxOutput(z, F.reshape(ignored, shape=(-1,)), use_ignore=True,
                            ignore_label=-1, normalization="null")
        nll = -F.log(F.pick(F.BlockGrad(p), F.reshape(label, shape=(-1,)), axis=-1))
        value = F.sum(F.reshape_like(nll, label) * keep, axis=1)
        # The value from the blocked branch, the gradient from SoftmaxOutput's own backward.
        anchor = F.reshape(F.sum(F.slice_axis(p, axis=1, begin=0, end=1)), shape=(1,)) * 0
        return F.broadcast_add(F.BlockGrad(value), anchor)

    def cross_entropy(F, h, vl, label, weight, w, b):
        z = logits(F, h, w, b, True)
        return F.softmax_cross_entropy(z, F.cast(F.reshape(label, shape=(-1,)), "float32"))

    forms = {"log_softmax+pick": log_softmax_pick,
             "log_softmax+pick flat": lambda *a: log_softmax_pick(*a, flat=True),
             "softmax+log+pick": softmax_log_pick, "SoftmaxOutput": softmax_output,
             "softmax_cross_entropy": cross_entropy}

    class Head(gluon.HybridBlock):
        def __init__(self, form):
            super().__init__()
            self.form = form
            with self.name_scope():
                self.w = self.params.get("w", shape=(vocab, hidden))
                self.b = self.params.get("b", shape=(vocab,), init="zeros")

        def hybrid_forward(self, F, h, vl, label, weight, w, b):
            return self.form(F, h, vl, label, weight, w, b)

    rng = np.random.default_rng(0)
    vl = rng.integers(1, length + 1, rows)
    vl[0] = length
    label = rng.integers(0, vocab, (rows, length))
    h = mx.nd.array(rng.normal(size=(rows, length, hidden)) * 0.1)
    h.attach_grad()
    args = (mx.nd.array(vl, dtype="int32"), mx.nd.array(label, dtype="int32"),
            mx.nd.array(np.r_[np.ones(rows - 1), 0.0]))
    heads = {}
    for name in LOSSES:
        heads[name] = Head(forms[name])
        heads[name].initialize(mx.init.Xavier())
        heads[name].hybridize(static_alloc=True, static_shape=True)

    def run(head):
        with autograd.record():
            out = head(h, *args)
        out.backward()
        mx.nd.waitall()

    for head in heads.values():
        run(head)
    cpu = {name: [] for name in LOSSES}
    for r in range(rounds):
        for name in (LOSSES if r % 2 == 0 else LOSSES[::-1]):
            started = time.process_time()
            for _ in range(repeats):
                run(heads[name])
            cpu[name].append(1000 * (time.process_time() - started) / repeats)
    return {"rows": rows, "length": length, "hidden": hidden, "vocab": vocab,
            "rounds": rounds, "cpu_ms": cpu}


def _run(spec: dict, folder: str, tag: str, threads: int | None, timeout: float) -> dict:
    spec_path, out_path = (os.path.join(folder, f"{tag}.{e}.json") for e in ("spec", "out"))
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MXNET_SUBGRAPH_VERBOSE="0")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, "-m", "benchmarks.step", "--worker", spec_path,
                           out_path], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"arm {tag} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    with open(out_path) as f:
        return json.load(f)


def _spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": values}


def measure(rounds: int = 3, steps: int = 30, arms=("before", "after"), threads=None,
            limit: int = 21000, buckets: int = 8, batch_size: int = 32, loss_rounds: int = 3,
            profile: int = 12, timeout: float = 1800, log=print) -> dict:
    """Every arm ``rounds`` times in fresh processes, interleaved, then the ``profile`` top
    operators of the first two arms (0: skip) and the output-layer formulations
    (``loss_rounds`` rounds, 0: skip), each in one more process."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for r in range(rounds):
            for arm in (arms if r % 2 == 0 else arms[::-1]):
                spec = {"arm": arm, "steps": steps, "limit": limit, "buckets": buckets,
                        "batch_size": batch_size}
                load = os.getloadavg()[0]
                row = _run(spec, folder, f"{arm}-{r}", threads, timeout)
                row.update(round=r, load=load)
                rows.append(row)
                if log:
                    log(f"round {r} {arm:6} load {load:4.1f}  {row['cpu_ms']:6.1f} CPU-ms/step "
                        f"{row['wall_ms']:6.1f} wall-ms/step  {row['tokens_per_s']:6,.0f} real "
                        f"tokens/s  {100 * row['peak_fraction']:4.1f}% of the GEMM peak "
                        f"({row['peak_gflops']:.0f} GFLOP/s)")
        profiles = {}
        for arm in arms[:2] if profile else ():
            spec = {"arm": arm, "steps": steps, "limit": limit, "buckets": buckets,
                    "batch_size": batch_size, "profile": profile}
            profiles[arm] = _run(spec, folder, f"profile-{arm}", threads, timeout)
        loss = None
        if loss_rounds:
            spec = {"loss": {"rounds": loss_rounds}}
            loss = _run(spec, folder, "loss", threads, timeout)
    base = [x for x in rows if x["arm"] == arms[0]]
    summary = {}
    for arm in arms:
        mine = [x for x in rows if x["arm"] == arm]
        summary[arm] = {
            "cpu_ms": _spread([x["cpu_ms"] for x in mine]),
            "wall_ms": _spread([x["wall_ms"] for x in mine]),
            "tokens_per_s": _spread([x["tokens_per_s"] for x in mine]),
            "peak_fraction": _spread([x["peak_fraction"] for x in mine]),
            "cpu_speedup": _spread([b["cpu_ms"] / x["cpu_ms"] for b, x in zip(base, mine)]),
            "wall_speedup": _spread([b["wall_ms"] / x["wall_ms"] for b, x in zip(base, mine)]),
            # The same batches from the same initial parameters: the per-step losses of two
            # arms differ by float rounding only (one formulation of the same model).
            "max_loss_difference": max(abs(a - b) for x, y in zip(base, mine)
                                       for a, b in zip(x["losses"], y["losses"])),
        }
    loads = [x["load"] for x in rows]
    return {"config": {"rounds": rounds, "steps": steps, "limit": limit, "buckets": buckets,
                       "batch_size": batch_size, "threads": threads or "bucketrnn default",
                       "arms": list(arms), **MODEL},
            "rows": rows, "summary": summary, "loss": loss, "profiles": profiles,
            "load": [min(loads), max(loads)]}


def markdown(result: dict) -> str:
    """The figures of :func:`measure` as markdown tables."""
    c, s = result["config"], result["summary"]
    ref = c["arms"][0]
    lines = [
        f"Default experiment's step (2 x 200 LSTM, tied, PTB first {c['limit']:,} sentences, "
        f"{c['buckets']} buckets, batch {c['batch_size']}, `memory=\"shared\"`, Adam, clip 1.0), "
        f"threads: {c['threads']}, `OMP_WAIT_POLICY=PASSIVE`; {c['steps']} timed steps per arm "
        f"and round, {c['rounds']} interleaved rounds in fresh processes (median, spread = "
        f"min-max over rounds); 1-minute load {result['load'][0]:.1f}-{result['load'][1]:.1f}.",
        "",
        f"| arm | CPU ms/step | wall ms/step | real tokens/s | of the fp32 GEMM peak | "
        f"{ref} / arm, CPU | {ref} / arm, wall | max loss difference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in c["arms"]:
        a = s[arm]

        def both(key, fmt, a=a):
            return (f"{fmt.format(a[key]['median'])} ({fmt.format(a[key]['min'])}-"
                    f"{fmt.format(a[key]['max'])})")

        lines.append(
            f"| {arm} | {both('cpu_ms', '{:.1f}')} | {both('wall_ms', '{:.1f}')} | "
            f"{both('tokens_per_s', '{:,.0f}')} | "
            f"{100 * a['peak_fraction']['median']:.1f}% | {both('cpu_speedup', '{:.2f}')} | "
            f"{both('wall_speedup', '{:.2f}')} | {a['max_loss_difference']:.1e} |")
    for arm, prof in (result.get("profiles") or {}).items():
        lines += ["", f"Top operators of the `{arm}` step (MXNet's aggregate profiler over the "
                  f"{prof['steps']} steps, bulk execution off, wall ms per step; "
                  "`FullyConnected` counts the output projection and every gate product):", "",
                  "| operator | calls per step | ms per step | share of operator time |",
                  "|---|---:|---:|---:|"]
        for op in prof["operators"]:
            lines.append(f"| `{op['name']}` | {op['calls'] / prof['steps']:.0f} | "
                         f"{op['ms_per_step']:.1f} | {100 * op['share']:.1f}% |")
    loss = result.get("loss")
    if loss:
        lines += ["", f"Output layer alone (projection {loss['hidden']} -> {loss['vocab']:,} "
                  f"and masked per-token cross-entropy, forward + backward, {loss['rows']} rows "
                  f"x {loss['length']} steps, {loss['rounds']} interleaved rounds, CPU ms per "
                  "step, median (min-max)):", "",
                  "| formulation | CPU ms | x log_softmax+pick | exact under padding |",
                  "|---|---:|---:|---|"]
        exact = {"log_softmax+pick": "yes (the library's)", "log_softmax+pick flat": "yes",
                 "softmax+log+pick": "yes", "SoftmaxOutput": "uniform head gradient only",
                 "softmax_cross_entropy": "no (one scalar, no mask)"}
        ref_ms = statistics.median(loss["cpu_ms"]["log_softmax+pick"])
        for name in LOSSES:
            ms = loss["cpu_ms"][name]
            lines.append(f"| {name} | {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})"
                         f" | {ref_ms / statistics.median(ms):.2f} | {exact[name]} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.step",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per arm and round")
    ap.add_argument("--arms", default="before,after",
                    help=f"comma-separated, the first is the reference: {','.join(ARMS)}")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS of the arms (default: bucketrnn's)")
    ap.add_argument("--limit", type=int, default=21000, help="first N PTB train sentences")
    ap.add_argument("--loss-rounds", type=int, default=3,
                    help="rounds of the output-layer formulations (0: skip them)")
    ap.add_argument("--profile", type=int, default=12,
                    help="top operators to list from a profiled run of the first two arms "
                         "(0: no profile)")
    ap.add_argument("--json", default=None, help="also write the raw figures here")
    args = ap.parse_args(argv)
    if args.worker:
        with open(args.worker[0]) as f:
            spec = json.load(f)
        result = output_layer(**spec["loss"]) if "loss" in spec else worker(spec)
        with open(args.worker[1], "w") as f:
            json.dump(result, f)
        return None
    for name in ("rounds", "steps", "limit"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("loss_rounds", "profile"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    arms = [a for a in args.arms.split(",") if a]
    if not arms or any(a not in ARMS for a in arms) or len(set(arms)) != len(arms):
        ap.error(f"--arms must name distinct arms of {','.join(ARMS)}, got {args.arms!r}")
    result = measure(args.rounds, args.steps, arms, args.threads, args.limit,
                     loss_rounds=args.loss_rounds, profile=args.profile)
    print()
    print(markdown(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
