"""``bucketing.num_buckets=auto`` in the app: probe the run's model, plan with the cost model,
and fix the plan for the rest of the run.

The first run of an experiment probes the model it trains
(:func:`bucketrnn.autoplan.costmodel.probe`:
the same model config, context and memory policy, its own throwaway parameters), plans the
buckets for the run's length (``trainer.epochs``, or ``trainer.max_steps``) under the memory
available on the context, and records the chosen boundaries in the config as
``bucketing.auto_boundaries``: ``config.json`` and the checkpoint's fingerprint hold them, so a
resumed run reuses that plan instead of probing again (a new probe could pick another ``K`` and
the checkpoint's schedule would no longer fit).

When no cost model can be had the app falls back to :data:`FALLBACK_BUCKETS` optimal buckets
(no more than the data's distinct lengths: :func:`fallback_buckets`) and says why: the probe's
timings did not fit (another job disturbed them), or several workers of a distributed job would
each probe and could disagree on the plan.
"""

from __future__ import annotations

import logging

import numpy as np

from bucketrnn.app.config import to_dict
from bucketrnn.autoplan import costmodel
from bucketrnn.data.loader import plan_lengths
from bucketrnn.data.plan import bucket_batch_sizes
from bucketrnn.models.build import build_model

__all__ = ["FALLBACK_BUCKETS", "fallback", "fallback_buckets", "is_auto", "pending", "plan_note",
           "planned_epochs", "probe_run", "reuse_saved_plan", "summary_entry"]

FALLBACK_BUCKETS = 8
log = logging.getLogger("bucketrnn.app")


def fallback_buckets(lengths, wanted: int = FALLBACK_BUCKETS, strategy: str = "optimal") -> int:
    """The buckets of the fallback plan (or of ``wanted``) for examples of these planned
    ``lengths``: :data:`FALLBACK_BUCKETS`, but no more than the distinct lengths, which the
    planner would refuse (a bucket per distinct length is the finest split there is; for
    ``(src, tgt)`` pairs the distinct pairs under the two-sided ``optimal`` plan, the distinct
    sources under a one-sided strategy). The one place the fallback's size is decided."""
    lengths = np.asarray(lengths)
    if lengths.ndim == 2:
        distinct = np.unique(lengths if strategy == "optimal" else lengths[:, 0], axis=0)
    else:
        distinct = np.unique(lengths)
    return max(1, min(int(wanted), len(distinct)))


def fallback(bucketing, data) -> dict:
    """``bucketing`` (a config) as a dict planning the fallback's buckets for ``data`` (the
    app's :class:`~bucketrnn.app.experiment.Data`: its training split is planned)."""
    return {**to_dict(bucketing), "num_buckets": fallback_buckets(plan_lengths(data.train)[1])}


def is_auto(bucketing) -> bool:
    """Whether a ``bucketing`` config asks for the automatic plan."""
    b = to_dict(bucketing)
    return b["num_buckets"] == "auto" and b["strategy"] != "fixed"


def pending(bucketing) -> bool:
    """Whether the automatic plan still has to be made (not fixed by an earlier run)."""
    return is_auto(bucketing) and not to_dict(bucketing).get("auto_boundaries")


def reuse_saved_plan(cfg, saved: dict | None):
    """``cfg`` with the boundaries an earlier auto run fixed (from its ``config.json`` as a
    dict), when ``cfg`` asks for an auto plan not yet made; else ``cfg`` unchanged."""
    if saved is None or not pending(cfg.bucketing):
        return cfg
    bounds = (saved.get("bucketing") or {}).get("auto_boundaries")
    if bounds:
        cfg.bucketing.auto_boundaries = list(bounds)
    return cfg


def _rows(b: dict):
    def rows(length):
        return int(bucket_batch_sizes([length], b["batch_size"], b["max_tokens"],
                                      b["batch_size_multiple"])[0])
    return rows


def planned_epochs(trainer, b: dict, num_examples: int, num_shards: int = 1) -> float:
    """Epochs the run will train: ``trainer.epochs``, or fewer when ``trainer.max_steps`` stops
    it first (batches per epoch estimated at the plan's rows of the typical length)."""
    t = to_dict(trainer)
    epochs = float(t["epochs"])
    if t["max_steps"]:
        rows = b["batch_size"] or 1
        if b["max_tokens"]:
            rows = max(1, b["max_tokens"] // 32)
        per_epoch = max(1.0, num_examples / rows / num_shards)
        epochs = min(epochs, t["max_steps"] / per_epoch)
    return epochs


def probe_run(cfg, data, ctx, num_shards: int = 1):
    """The cost model of the run's model on ``ctx``, or None (with a logged reason) when the
    app must fall back to :func:`fallback_buckets` buckets (:func:`fallback`)."""
    b = to_dict(cfg.bucketing)
    task, lengths = plan_lengths(data.train)
    k = fallback_buckets(lengths)
    if num_shards > 1:
        log.warning("note: bucketing.num_buckets=auto with %d distributed workers: each would "
                    "probe on its own and could choose another plan, so %d buckets are used; "
                    "give bucketing.num_buckets=N to choose", num_shards, k)
        return None
    if lengths.ndim == 2:
        log.warning("note: bucketing.num_buckets=auto plans one length per example; for (src, "
                    "tgt) pairs %d buckets are used; give bucketing.num_buckets=N to choose", k)
        return None
    if np.unique(lengths).size < 2:
        return None  # one distinct length: one bucket, nothing to measure
    build = build_model(to_dict(cfg.model), len(data.vocab), data.num_classes)  # its own parameters
    try:
        # Through the module: tests stand in a probe of their own (costmodel.probe).
        example = costmodel.example_batch(data.train, rows=2, ctx=ctx, task=task)
        return costmodel.probe(build, example, costmodel.probe_lengths(lengths), _rows(b),
                               ctx=ctx, memory=to_dict(cfg.memory)["policy"])
    except costmodel.CostModelError as e:
        log.warning("warning: bucketing.num_buckets=auto: the probe's timings gave no usable "
                    "cost model, so %d buckets are used instead. %s", k, e)
        return None


def plan_note(cost, plan) -> str:
    """What the log says about the automatic plan (the plan's own repr explains its K)."""
    auto = plan.auto
    if auto is None:
        return f"auto plan: {plan.num_buckets} buckets (fallback, see above)"
    share = cost.probe_seconds / (auto.predicted_seconds + cost.probe_seconds)
    return (f"auto plan: {auto.num_buckets} buckets, predicted {auto.tokens_per_s:,.0f} real "
            f"tokens/s including compile ({100 * auto.compile_share:.1f}% of the run), runner-up"
            f" K={auto.runner_up}; probe took {cost.probe_seconds:.1f} s ({100 * share:.1f}% of "
            f"the predicted run); {cost!r}")


def summary_entry(cost, plan, resumed: bool) -> dict:
    """``summary.json``'s ``auto_plan``: the choice, the cost model and the probe's share."""
    if plan.auto is None:
        return {"chosen": False, "num_buckets": plan.num_buckets,
                "boundaries": list(plan.boundaries),
                "why": "fixed by the run's first session" if resumed else "fallback"}
    out = {"chosen": True, **plan.auto.to_dict(), "cost_model": cost.to_dict(),
           "boundaries": list(plan.boundaries)}
    out["probe_share"] = cost.probe_seconds / (plan.auto.predicted_seconds + cost.probe_seconds)
    return out
