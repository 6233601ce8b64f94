"""PNG plots of a run (matplotlib, Agg backend: no display needed).

``buckets.png``: the length histogram with the bucket boundaries and each bucket's padding.
``curves.png``: training loss and perplexity (or accuracy) per logged step, validation per epoch,
read from ``metrics.jsonl``.

Examples
--------
>>> import os, tempfile
>>> from bucketrnn.data.plan import plan_buckets
>>> lengths = [3, 4, 4, 5, 9, 12, 12, 20]
>>> path = os.path.join(tempfile.mkdtemp(), "buckets.png")
>>> plot_buckets(lengths, plan_buckets(lengths, num_buckets=3, batch_size=2), path) == path
True
"""

from __future__ import annotations

import io
import json
import logging
import math
import os

import numpy as np

from bucketrnn.data.plan import pad_to_max_waste
from bucketrnn.files import atomic_write
from bucketrnn.training.rundir import METRICS

__all__ = ["plot_buckets", "plot_curves", "read_metrics", "save_all"]


def _pyplot():
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str) -> None:
    """Render ``fig`` as PNG bytes and write them with ``atomic_write``: a link planted at
    ``path`` is replaced, what it points to is never written (savefig(path) would follow it)."""
    try:
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    atomic_write(path, buffer.getvalue())


def plot_buckets(lengths, plan, path: str) -> str:
    """Histogram of ``lengths`` with ``plan``'s boundaries and per-bucket padding; returns path."""
    plt = _pyplot()
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.bincount(lengths)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(np.arange(counts.size), counts, width=1.0, color="#4c72b0", label="sequences")
    top = counts.max() if counts.size else 1
    lower = 0
    for k, bound in enumerate(plan.boundaries):
        ax.axvline(bound + 0.5, color="#c44e52", lw=1)
        slots = plan.bucket_slots[k]
        pad = 1.0 - plan.bucket_real_tokens[k] / slots if slots else 0.0
        ax.text((lower + bound) / 2 + 0.5, top * 1.02, f"{100 * pad:.0f}%", ha="center",
                va="bottom", fontsize=8, color="#c44e52")
        lower = bound
    longest = int(lengths.max())
    ax.set_xlim(0, longest + 1.5)
    ax.set_ylim(0, top * 1.15)
    ax.set_xlabel("sequence length (time steps)")
    ax.set_ylabel("sequences")
    ax.set_title(f"{plan.num_buckets} buckets ({plan.strategy}): padding {100 * plan.waste:.1f}% "
                 f"of computed slots; padding to {longest}: "
                 f"{100 * pad_to_max_waste(lengths):.1f}%  "
                 "(red: boundaries, per-bucket padding on top)", fontsize=9)
    _save(plt, fig, path)
    return path


def read_metrics(path: str) -> list:
    """The records of a ``metrics.jsonl`` file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(records, path: str) -> str:
    """Loss and perplexity/accuracy curves from metrics records; returns ``path``."""
    plt = _pyplot()
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["global_step"] for r in steps]
    left.plot(x, [r["loss"] for r in steps], lw=1, label="train (per logged window)")
    second = "perplexity" if any("perplexity" in r for r in steps) else "accuracy"
    right.plot(x, [r.get(second, math.nan) for r in steps], lw=1, label="train")
    ex = [r["global_step"] for r in epochs]
    if any(f"valid_{second}" in r for r in epochs):
        left.plot(ex, [r.get("valid_loss", math.nan) for r in epochs], "o-", label="valid")
        right.plot(ex, [r.get(f"valid_{second}", math.nan) for r in epochs], "o-",
                   label="valid")
    if second == "perplexity":
        right.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    right.set_xlabel("step")
    right.set_ylabel(second)
    left.legend()
    right.legend()
    _save(plt, fig, path)
    return path


def save_all(run_dir: str, lengths, plan) -> list:
    """Write ``buckets.png`` and (if metrics exist) ``curves.png`` into ``run_dir``
    (``buckets.png`` for one length per example only: a pair plan's 2-D keys have no histogram
    with boundaries)."""
    one_d = np.asarray(lengths).ndim == 1
    out = [plot_buckets(lengths, plan, os.path.join(run_dir, "buckets.png"))] if one_d else []
    metrics = os.path.join(run_dir, METRICS)
    if os.path.isfile(metrics):
        out.append(plot_curves(read_metrics(metrics), os.path.join(run_dir, "curves.png")))
    return [os.path.basename(p) for p in out]
