"""What a step, a graph and its memory cost, fitted from a few measurements of the real graph.

:class:`CostModel` predicts, for a bucket of padded length ``L`` run with ``B`` rows:

- step time (forward, backward and optimizer update), ``t(B, L) = a + b L + c B L`` seconds: a
  per-step overhead, a per-time-step cost (the unrolled graph's operators launched once per
  step, whatever the rows) and a per-slot cost (the arithmetic);
- compile time of the bucket's graph (trace, bind or hybridize, and its first step beyond a
  plain step), ``c0 + c1 L`` seconds: it grows with the unrolled length;
- memory of the graph, ``m0 + m1 L + m2 B L`` bytes (from
  :meth:`~bucketrnn.graphs.cache.GraphCache.estimate_memory`), or None when not known.

Each is fitted by least squares with non-negative coefficients (a term whose coefficient would
come out negative is dropped and the rest refitted). A fit whose relative RMS error exceeds
:data:`MAX_FIT_ERROR` is refused with :class:`CostModelError`, naming the measurements: a probe
disturbed by other work on the machine must not plan a run.

:func:`probe` measures the graph a model factory builds, on a context, at a few lengths that
span the data (two row counts at all but the longest), and returns the fitted model;
:func:`bucketrnn.autoplan.auto_plan` plans with it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from bucketrnn import compat
from bucketrnn.data.loader import BucketLoader
from bucketrnn.graphs.cache import DEFAULT_INPUTS, GraphCache, batch_like
from bucketrnn.validation import check_choice, check_int

__all__ = ["CostModel", "CostModelError", "MAX_FIT_ERROR", "example_batch", "nonneg_lstsq",
           "probe", "probe_lengths", "probe_step"]

# Relative RMS error above which a step-time fit is refused: the model would mislead the plan.
MAX_FIT_ERROR = 0.25
MEMORY_POLICIES = ("shared", "static", "dynamic")
_clock = time.perf_counter  # the probe's clock (a test drives it with a synthetic one)


class CostModelError(ValueError):
    """Measurements that no sane cost model fits (negative or noisy timings)."""


def nonneg_lstsq(X, y) -> np.ndarray:
    """Least squares ``X w ~ y`` with ``w >= 0``: terms whose coefficient comes out negative are
    dropped one at a time (the most negative first) and the rest refitted."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    active = list(range(X.shape[1]))
    w = np.zeros(X.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(X[:, active], y, rcond=None)
        if (sol >= 0).all():
            w[:] = 0
            w[active] = sol
            return w
        active.pop(int(np.argmin(sol)))
    return w


def _rel_rms(pred, y) -> float:
    y = np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(((np.asarray(pred) - y) / np.maximum(y, 1e-12)) ** 2)))


@dataclass(frozen=True)
class CostModel:
    """Fitted step time, compile time and graph memory of one model on one context.

    Build it with :meth:`fit` (from measurements) or :func:`probe` (measures the real graph).

    Attributes
    ----------
    step : tuple of float
        ``(a, b, c)``: a step of ``B`` rows and length ``L`` takes ``a + b L + c B L`` seconds.
    compile : tuple of float
        ``(c0, c1)``: compiling the graph of length ``L`` takes ``c0 + c1 L`` seconds.
    memory : tuple of float or None
        ``(m0, m1, m2)``: the graph needs ``m0 + m1 L + m2 B L`` bytes.
    memory_policy : {"shared", "static", "dynamic"}
        How the graphs hold memory: under ``"static"`` every graph keeps its own, so a plan
        needs the sum over its buckets; otherwise the largest graph's.
    fit_error : float
        Relative RMS error of the step-time fit on its measurements.
    probe_seconds : float
        Wall time the measurements took (0 for a model given by hand).
    samples : dict
        The measurements: ``steps`` as ``[L, B, seconds]`` rows, ``compiles`` as ``[L,
        seconds]``.

    Examples
    --------
    >>> cm = CostModel.fit(steps=[(10, 8, 0.011), (10, 16, 0.019), (40, 8, 0.041),
    ...                           (40, 16, 0.073)], compiles=[(10, 0.2), (40, 0.5)])
    >>> round(float(cm.step_time(16, 20)), 4), round(float(cm.compile_time(20)), 3)
    (0.037, 0.3)
    """

    step: tuple
    compile: tuple
    memory: tuple | None = None
    memory_policy: str = "shared"
    fit_error: float = 0.0
    probe_seconds: float = 0.0
    samples: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        check_choice("memory_policy", self.memory_policy, MEMORY_POLICIES)
        for name, value, n in (("step", self.step, 3), ("compile", self.compile, 2),
                               ("memory", self.memory, 3)):
            if value is None and name == "memory":
                continue
            arr = np.asarray(value, dtype=np.float64) if _numeric(value, n) else None
            if arr is None or not np.isfinite(arr).all() or (arr < 0).any():
                raise ValueError(f"{name} must be {n} finite numbers >= 0 (the coefficients of "
                                 f"the cost model), got {name}={value!r}")
        if sum(self.step) <= 0:
            raise ValueError(f"step must predict a positive step time, got step={self.step!r}")

    def step_time(self, rows, length):
        """Seconds of one training step of ``rows`` x ``length`` (arrays broadcast)."""
        a, b, c = self.step
        rows, length = np.asarray(rows, np.float64), np.asarray(length, np.float64)
        return a + b * length + c * rows * length

    def compile_time(self, length):
        """Seconds to compile the graph of ``length`` time steps."""
        c0, c1 = self.compile
        return c0 + c1 * np.asarray(length, np.float64)

    def graph_memory(self, rows, length):
        """Bytes of the graph of ``rows`` x ``length``, or None without a memory model."""
        if self.memory is None:
            return None
        m0, m1, m2 = self.memory
        rows, length = np.asarray(rows, np.float64), np.asarray(length, np.float64)
        return m0 + m1 * length + m2 * rows * length

    @classmethod
    def fit(cls, steps, compiles, memory=None, memory_policy: str = "shared",
            probe_seconds: float = 0.0, max_error: float | None = None) -> CostModel:
        """Fit a model to measurements.

        Parameters
        ----------
        steps : sequence of (L, B, seconds)
            Step times; at least two lengths and two row counts (3 distinct shapes).
        compiles : sequence of (L, seconds)
            Compile times; at least two lengths.
        memory : sequence of (L, B, bytes), optional
        memory_policy, probe_seconds
            Stored on the model.
        max_error : float, optional
            Refuse a step-time fit whose relative RMS error is larger (default
            :data:`MAX_FIT_ERROR`).

        Raises
        ------
        CostModelError
            Too few or non-finite measurements, or a fit that does not describe them.
        """
        s = _table(steps, 3, "steps")
        if len({(L, B) for L, B, _ in s.tolist()}) < 3 or len(set(s[:, 0])) < 2:
            raise CostModelError(f"steps needs at least 3 distinct (length, rows) shapes over 2 "
                                 f"lengths to fit a + b*L + c*B*L, got steps={s.tolist()}")
        max_error = MAX_FIT_ERROR if max_error is None else max_error
        X = np.stack([np.ones(len(s)), s[:, 0], s[:, 0] * s[:, 1]], axis=1)
        # Weighted by 1/t: the relative error is minimised, so short steps count as much as
        # long ones (a plan's time is a sum over many short and few long buckets).
        w = nonneg_lstsq(X / np.maximum(s[:, 2:3], 1e-12), np.ones(len(s)))
        err = _rel_rms(X @ w, s[:, 2])
        if err > max_error or (X @ w <= 0).any():
            raise CostModelError(
                f"the step times do not fit t = a + b*L + c*B*L (relative RMS error "
                f"{100 * err:.0f}% > {100 * max_error:.0f}%): measurements [L, B, seconds] = "
                f"{np.round(s, 5).tolist()}. Other work on the machine disturbs the probe: "
                "probe again on a quiet machine, or give num_buckets as an integer")
        c = _table(compiles, 2, "compiles")
        if len(set(c[:, 0])) < 2:
            raise CostModelError(f"compiles needs at least 2 lengths to fit c0 + c1*L, got "
                                 f"compiles={c.tolist()}")
        cw = nonneg_lstsq(np.stack([np.ones(len(c)), c[:, 0]], axis=1), c[:, 1])
        mw = None
        if memory is not None and len(memory):
            m = _table(memory, 3, "memory")
            mw = tuple(float(v) for v in nonneg_lstsq(
                np.stack([np.ones(len(m)), m[:, 0], m[:, 0] * m[:, 1]], axis=1), m[:, 2]))
        return cls(step=tuple(float(v) for v in w), compile=tuple(float(v) for v in cw),
                   memory=mw, memory_policy=memory_policy, fit_error=err,
                   probe_seconds=float(probe_seconds),
                   samples={"steps": s.tolist(), "compiles": c.tolist()})

    def to_dict(self) -> dict:
        """JSON-able coefficients and fit figures (for a run's summary)."""
        return {"step": list(self.step), "compile": list(self.compile),
                "memory": None if self.memory is None else list(self.memory),
                "memory_policy": self.memory_policy, "fit_error": self.fit_error,
                "probe_seconds": self.probe_seconds}

    def __repr__(self) -> str:
        a, b, c = self.step
        c0, c1 = self.compile
        return (f"CostModel(step={a * 1e3:.3g} ms + {b * 1e3:.3g} ms*L + {c * 1e6:.3g} us*B*L "
                f"(fit error {100 * self.fit_error:.1f}%), compile={c0:.3g} s + "
                f"{c1 * 1e3:.3g} ms*L, memory_policy={self.memory_policy!r}, "
                f"probe {self.probe_seconds:.1f} s)")


def _numeric(value, n) -> bool:
    try:
        return len(value) == n and all(isinstance(v, (int, float, np.number))
                                       and not isinstance(v, bool) for v in value)
    except TypeError:
        return False


def _table(rows, width: int, name: str) -> np.ndarray:
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != width or not np.isfinite(arr).all() \
            or (arr < 0).any():
        raise CostModelError(f"{name} must be rows of {width} finite numbers >= 0, got "
                             f"{name}={rows!r}")
    return arr


# ------------------------------------------------------------------ probing the real graph
def probe_lengths(lengths, count: int = 4, top: float = 0.99) -> list:
    """Lengths to probe: distinct quantiles (10%, 50%, 90% and ``top``) of ``lengths``; at least
    two (twice the length is added when the data has one length).

    The top is the 99th percentile, not the longest: an unrolled graph's step and compile
    times are linear in its length, so the few longer buckets are extrapolated, and the probe
    does not pay for the rarest and dearest shapes (on a heavy tail the longest steps would be
    most of the probe's time)."""
    arr = np.asarray(lengths, dtype=np.int64).ravel()
    qs = np.linspace(0.1, 0.9, max(count - 1, 1)) if count > 2 else [0.5]
    picks = sorted({int(np.quantile(arr, q, method="nearest")) for q in qs}
                   | {int(np.quantile(arr, top, method="nearest"))})
    if len(picks) < 2:
        picks.append(2 * picks[0])
    return picks


def example_batch(dataset, rows: int = 2, ctx=None, task=None):
    """One batch of the first examples of ``dataset`` (a template of the input dtypes and
    trailing shapes for :func:`probe`)."""
    head = _Head(dataset, min(len(dataset), max(rows, 2)))
    loader = BucketLoader(head, batch_size=rows, num_buckets=1, shuffle=False, task=task,
                          ctx=ctx, outliers="allow")
    return next(iter(loader))


class _Head:
    """The first ``n`` examples of a dataset, indexable."""

    def __init__(self, dataset, n):
        self.dataset, self.n = dataset, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.dataset[i]


def probe_step(graphs, trainer):
    """``step(batch)``: one forward, backward and update of ``graphs`` with ``trainer``, waited
    for (the loss read back), as the probe times it."""
    def step(batch):
        with autograd.record():
            out = graphs(batch)
            loss = (out[0] if isinstance(out, (list, tuple)) else out).sum()
        loss.backward()
        trainer.step(batch.batch_size)
        loss.asscalar()

    return step


def probe(build, example, lengths, rows, ctx=None, memory: str = "shared", repeats: int = 3,
          inputs=None, optimizer: str = "sgd") -> CostModel:
    """Measure the real graph at a few shapes and fit a :class:`CostModel`.

    For each probe length (longest first, as a run compiles) the graph is built and run once
    (its compile time: that first call less a plain step), then ``repeats`` timed training
    steps (forward, backward, optimizer update, the loss read back) run at the run's rows and,
    except at the longest length, at half of them; the fastest of the repeats is kept, the
    figure least disturbed by other work. The probe uses its own parameters and a throwaway
    ``GraphCache``: the training's are untouched. It costs about ``len(lengths)`` compiles and
    ``(2 * len(lengths) - 1) * (repeats + 1)`` steps; when the times fit no sane model
    (:class:`CostModelError`) every shape is timed once more and the fastest of all kept before
    the error is raised.

    Parameters
    ----------
    build : callable
        The model factory (``build(length) -> HybridBlock``) of the run, NOT the one whose
        parameters train: parameters already initialized are refused (``ValueError``), since
        the probe would change them. Call e.g. ``LanguageModel.factory(...)`` once more.
    example : Batch
        A batch of the data (any bucket): the template of input dtypes (see
        :func:`example_batch`).
    lengths : sequence of int
        Lengths to probe (:func:`probe_lengths` of the data), at least two distinct ones.
    rows : int or callable
        Rows per batch, or ``rows(length)`` (a token budget); a half as many is probed too.
    ctx : mx.Context, optional
    memory : {"shared", "static", "dynamic"}
        The memory policy the run uses (compile times differ).
    repeats : int
        Timed steps per shape (>= 1).
    inputs : optional
        Passed to :class:`~bucketrnn.graphs.cache.GraphCache`.
    optimizer : str
        Optimizer of the timed updates (its cost per step is close among optimizers).
    """
    check_choice("memory", memory, MEMORY_POLICIES)
    repeats = check_int("repeats", repeats, low=1)
    probe_at = sorted({check_int("lengths", int(v), low=1) for v in lengths}, reverse=True)
    if len(probe_at) < 2:
        raise ValueError(f"lengths must hold at least two distinct lengths to fit the length "
                         f"terms, got lengths={list(lengths)!r}")
    rows_of = rows if callable(rows) else (lambda _n, r=rows: r)
    started = _clock()
    graphs = GraphCache(build, ctx=ctx, memory=memory, inputs=inputs or DEFAULT_INPUTS,
                        keys=[probe_at[0]], memory_limit=None)
    params = graphs.collect_params()
    used = [p.name for p in params.values() if compat.is_initialized(p)]
    if used:
        raise ValueError(f"build's parameters are already initialized ({used[0]}, ...): the "
                         "probe would train them. Pass a fresh factory (e.g. call "
                         "Model.factory(...) again) whose parameters nobody else uses")
    graphs.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(params, optimizer, {"learning_rate": 1e-6})

    step = probe_step(graphs, trainer)
    shapes = []
    for length in probe_at:
        full = max(1, int(rows_of(length)))
        # The rows term needs a second row count, not at the dearest (longest) shape.
        other = set() if length == probe_at[0] else {max(1, full // 2) if full > 1 else 2}
        shapes += [(length, r) for r in sorted({full} | other, reverse=True)]
    best, compiles, mems = {}, [], []
    for shape in shapes:
        length, rows_now = shape
        batch = batch_like(example, length, rows_now)
        t0 = _clock()
        step(batch)  # compiles (a new length) or rebinds (a second row count), then warms
        warm = _clock() - t0
        best[shape] = _fastest(step, batch, repeats)
        if not compiles or compiles[-1][0] != length:
            compiles.append((length, max(warm - best[shape], 0.0)))
        est = graphs.estimate_memory(length, rows_now, example=example)
        if est is not None:
            mems.append((length, rows_now, est))
    for attempt in range(2):
        try:
            return CostModel.fit([(L, B, t) for (L, B), t in best.items()], compiles,
                                 mems if len(mems) >= 3 else None, memory_policy=memory,
                                 probe_seconds=_clock() - started)
        except CostModelError:
            if attempt:
                raise
        # Disturbed by other work: time every shape once more, keep the fastest of all.
        for (length, rows_now) in shapes:
            batch = batch_like(example, length, rows_now)
            step(batch)  # a rebind under "shared", never timed
            best[(length, rows_now)] = min(best[(length, rows_now)],
                                           _fastest(step, batch, repeats))


def _fastest(step, batch, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = _clock()
        step(batch)
        times.append(_clock() - t0)
    return min(times)
