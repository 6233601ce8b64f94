"""``num_buckets="auto"``: the number of buckets and their boundaries that a cost model says
make the planned run fastest, compile time included.

The predicted time of a plan is what its run spends: every epoch, each bucket's batches at the
bucket's step time, plus compiling each bucket's graph once::

    T(plan) = sum_k  epochs * ceil(n_k / B_k) * t(B_k, L_k)  +  compile(L_k)

with ``t`` and ``compile`` from a :class:`~bucketrnn.autoplan.costmodel.CostModel`. More buckets
pad less but compile more graphs; the best ``K`` balances the two for the run's length.

:func:`auto_boundaries` minimises ``T`` exactly over boundaries drawn from the distinct lengths,
for every ``K`` from 1 to ``max_buckets`` at once: a dynamic program over the sorted histogram
whose ``k``-th pass gives the best plan of exactly ``k`` buckets ending at each length. The
per-``K`` optima are kept, so the plan can say what each ``K`` nearby would have cost
(:class:`AutoChoice`). Batch sizes are the user's (``batch_size`` / ``max_tokens``): they set
the optimisation (rows per gradient step), which a speed plan must not change.

Memory cap (``memory_limit`` bytes, with a memory model in the cost model): under the
``"shared"`` and ``"dynamic"`` policies the largest graph bounds the need, so buckets whose graph
would exceed the cap cannot end a bucket (and a longest bucket over the cap is an error); under
``"static"`` every graph holds its own memory, so a plan's need is the sum over its buckets, and
plans over the cap are ruled out (by a Lagrangian penalty on memory when the fastest ones all
exceed it: exact among the plans it finds, not a guaranteed optimum under the cap).

More than :data:`MAX_CANDIDATES` distinct lengths: boundaries are drawn from that many lengths
at count quantiles (each length rounds up to the next candidate), so the program stays
``O(K * MAX_CANDIDATES**2)``; with fewer it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AutoChoice", "MAX_CANDIDATES", "auto_boundaries"]

MAX_CANDIDATES = 1024


@dataclass(frozen=True)
class AutoChoice:
    """Why ``num_buckets="auto"`` chose its plan.

    Attributes
    ----------
    num_buckets : int
        The chosen number of buckets.
    epochs : float
        Epochs of the planned run (compile is paid once, steps every epoch).
    real_tokens : int
        Real tokens of one epoch.
    table : tuple of dict
        One row per ``K`` (1 to the largest tried): ``seconds`` (predicted run time of the best
        plan with exactly ``K`` buckets), ``compile_seconds``, ``memory`` (bytes, or None),
        ``feasible`` (within ``memory_limit``).
    memory_limit : int or None
    memory_policy : str
    """

    num_buckets: int
    epochs: float
    real_tokens: int
    table: tuple
    memory_limit: int | None = None
    memory_policy: str = "shared"

    def _row(self, k: int) -> dict:
        return self.table[k - 1]

    @property
    def predicted_seconds(self) -> float:
        return self._row(self.num_buckets)["seconds"]

    @property
    def compile_seconds(self) -> float:
        return self._row(self.num_buckets)["compile_seconds"]

    @property
    def compile_share(self) -> float:
        """Predicted share of the run spent compiling graphs."""
        return self.compile_seconds / self.predicted_seconds

    @property
    def tokens_per_s(self) -> float:
        """Predicted real tokens per second over the planned run, compile included."""
        return self.epochs * self.real_tokens / self.predicted_seconds

    @property
    def runner_up(self) -> int | None:
        """The feasible ``K`` with the next least predicted time (None with one candidate)."""
        rows = [r for r in self.table if r["feasible"] and r["k"] != self.num_buckets]
        return min(rows, key=lambda r: r["seconds"])["k"] if rows else None

    def explain(self, nearby: int = 3) -> str:
        """A few lines: the choice, its predicted speed and compile share, and ``K`` nearby."""
        best = self.predicted_seconds
        up = self.runner_up
        lines = [f"auto plan: {self.num_buckets} buckets, predicted {self.tokens_per_s:,.0f} real "
                 f"tokens/s over {self.epochs:g} epoch(s) ({best:.1f} s, compile "
                 f"{100 * self.compile_share:.1f}%)"
                 + ("" if up is None else
                    f"; runner-up K={up} ({self._row(up)['seconds'] / best - 1:+.2%})")]
        ks = sorted({r["k"] for r in self.table if abs(r["k"] - self.num_buckets) <= nearby}
                    | ({up} if up else set()) | {1, len(self.table)})
        for k in ks:
            r = self._row(k)
            mem = "" if r["memory"] is None else f", memory {r['memory'] / 2**20:,.0f} MiB"
            flag = "" if r["feasible"] else " (over memory_limit)"
            mark = " <- chosen" if k == self.num_buckets else ""
            lines.append(f"  K={k:>3}: {r['seconds']:9.1f} s ({r['seconds'] / best - 1:+7.2%}),"
                         f" compile {r['compile_seconds']:6.1f} s{mem}{flag}{mark}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"num_buckets": self.num_buckets, "epochs": self.epochs,
                "predicted_seconds": self.predicted_seconds,
                "predicted_tokens_per_s": self.tokens_per_s,
                "compile_seconds": self.compile_seconds, "compile_share": self.compile_share,
                "runner_up": self.runner_up, "memory_limit": self.memory_limit,
                "memory_policy": self.memory_policy, "table": [dict(r) for r in self.table]}

    def __repr__(self) -> str:
        return self.explain()


def _candidates(values, counts):
    """At most MAX_CANDIDATES boundary candidates and the histogram rounded up onto them."""
    if values.size <= MAX_CANDIDATES:
        return values, counts
    cum = np.cumsum(counts)
    targets = cum[-1] * np.arange(1, MAX_CANDIDATES + 1) / MAX_CANDIDATES
    idx = np.unique(np.minimum(np.searchsorted(cum, targets, side="left"), values.size - 1))
    cand = values[idx]
    slot = np.searchsorted(cand, values, side="left")
    return cand, np.bincount(slot, weights=counts, minlength=cand.size).astype(np.int64)


def auto_boundaries(values, counts, sizes, cost, epochs: float = 1.0, max_buckets: int = 64,
                    memory_limit: int | None = None):
    """Boundaries of the plan with the least predicted run time; see the module docstring.

    Parameters
    ----------
    values, counts : numpy.ndarray
        Sorted distinct lengths and their counts.
    sizes : numpy.ndarray
        Batch size (rows) of a bucket whose key would be ``values[j]``.
    cost : CostModel
    epochs : float
        Epochs of the planned run (> 0).
    max_buckets : int
        Largest ``K`` tried.
    memory_limit : int, optional
        Bytes the graphs may hold together (needs ``cost.memory``).

    Returns
    -------
    (numpy.ndarray, AutoChoice)
    """
    values = np.asarray(values, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    real = int((values * counts).sum())
    if values.size > MAX_CANDIDATES:
        cand, ccounts = _candidates(values, counts)
        sizes = sizes[np.searchsorted(values, cand)]
        values, counts = cand, ccounts
    d = values.size
    P = np.concatenate([[0], np.cumsum(counts)]).astype(np.float64)
    per_batch = epochs * cost.step_time(sizes, values)
    comp = cost.compile_time(values) * np.ones(d)
    mem = cost.graph_memory(sizes, values)
    if memory_limit is not None and mem is None:
        raise ValueError(f"memory_limit={memory_limit} needs a cost model with a memory model "
                         "(CostModel.memory); probe() fits one from GraphCache.estimate_memory")
    mem = np.zeros(d) if mem is None else mem * np.ones(d)
    allowed = np.ones(d, dtype=bool)
    static = cost.memory_policy == "static"
    if memory_limit is not None and not static:
        allowed = mem <= memory_limit
        if not allowed[-1]:
            raise ValueError(
                f"memory_limit={memory_limit} bytes is less than the longest bucket's graph needs "
                f"(about {int(mem[-1])} bytes for {int(sizes[-1])} rows x {int(values[-1])} "
                "steps): raise memory_limit, lower the rows per batch, or cap the lengths "
                "(max_length)")
    kmax = int(min(d, max_buckets))
    i_idx = np.arange(d)[:, None]
    j_idx = np.arange(d)[None, :]
    n = P[j_idx + 1] - P[i_idx]
    batches = np.where(j_idx >= i_idx, np.ceil(np.maximum(n, 0) / sizes[None, :]), np.inf)
    base = batches * per_batch[None, :] + comp[None, :]
    base[:, ~allowed] = np.inf
    scale = float(np.nanmax(np.where(np.isfinite(base), base, np.nan))) / max(mem.max(), 1.0)
    for penalty in [0.0] + ([scale * 10.0 ** e for e in range(-4, 5)] if static else []):
        cost_ij = base + penalty * mem[None, :] if penalty else base
        table, plans = _dp(cost_ij, values, per_batch, comp, mem, P, sizes, kmax, static)
        for row in table:
            row["feasible"] = memory_limit is None or row["memory_need"] <= memory_limit
        if any(r["feasible"] for r in table):
            break
    else:
        raise ValueError(f"no plan fits memory_limit={memory_limit} bytes under the static memory"
                         f" policy (one bucket needs about {int(table[0]['memory_need'])} bytes)"
                         ": raise memory_limit or use memory policy 'shared'")
    feasible = [r for r in table if r["feasible"]]
    best = min(feasible, key=lambda r: (r["seconds"], r["k"]))
    rows = tuple({"k": r["k"], "seconds": r["seconds"], "compile_seconds": r["compile_seconds"],
                  "memory": r["memory"], "feasible": r["feasible"]} for r in table)
    choice = AutoChoice(num_buckets=best["k"], epochs=float(epochs), real_tokens=real,
                        table=rows, memory_limit=memory_limit,
                        memory_policy=cost.memory_policy)
    return plans[best["k"] - 1], choice


def _dp(cost_ij, values, per_batch, comp, mem, P, sizes, kmax, static):
    """Best plan of exactly k buckets for k = 1..kmax; rows of figures and boundaries."""
    d = values.size
    prev = cost_ij[0].copy()
    args = []
    for _ in range(2, kmax + 1):
        shifted = np.concatenate([[np.inf], prev[:-1]])  # best of k-1 buckets ending at i-1
        total = shifted[:, None] + cost_ij
        arg = total.argmin(axis=0)
        prev = total[arg, np.arange(d)]
        args.append(arg)
        if not np.isfinite(prev[-1]):
            args.pop()
            break
    table, plans = [], []
    for k in range(1, len(args) + 2):
        bounds, j = [], d - 1
        for arg in reversed(args[:k - 1]):
            i = int(arg[j])
            bounds.append(j)
            j = i - 1
        bounds.append(j)
        ends = np.array(sorted(bounds))
        starts = np.concatenate([[0], ends[:-1] + 1])
        n = P[ends + 1] - P[starts]
        steps = np.ceil(n / sizes[ends]) * per_batch[ends]
        # Under "static" every graph keeps its own memory; otherwise the largest bounds it.
        need = float(mem[ends].sum() if static else mem[ends].max())
        table.append({"k": k, "seconds": float(steps.sum() + comp[ends].sum()),
                      "compile_seconds": float(comp[ends].sum()),
                      "memory": need if mem.any() else None, "memory_need": need})
        plans.append(values[ends])
    return table, plans
