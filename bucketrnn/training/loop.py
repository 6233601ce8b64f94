"""The training loop: bucketed batches, one graph per bucket, metrics, checkpoints, resume.

:class:`TrainLoop` takes plain Python arguments (no Hydra config): a model factory (or a
:class:`~bucketrnn.graphs.cache.GraphCache`), a :class:`~bucketrnn.data.loader.BucketLoader`, and
optimizer settings. It writes, into ``run_dir``:

``metrics.jsonl``
    One JSON object per line: ``{"kind": "step", ...}`` every ``log_every`` steps (loss and
    perplexity or accuracy over the window, real tokens/s, padded fraction, graphs compiled) and
    ``{"kind": "epoch", ...}`` at each epoch end (with validation figures).
``checkpoint.npz``
    Every ``checkpoint_every`` steps and at each epoch end (:mod:`bucketrnn.training.checkpoint`).

Resumption is exact from any checkpoint (mid-epoch, epoch end, the last one of a finished run
given more epochs): the checkpoint holds the parameters, the optimizer states
(:mod:`bucketrnn.training.optim_state`, no pickle), the loader's ``state_dict`` (its schedule is a
pure function of ``(seed, epoch)``), the next epoch to run, the step counter from which MXNet's
random seed is derived, the metrics file length (lines written after the checkpoint are dropped
on resume, so the file reads as one run) and the open log window (the sums since the last step
record: a resumed run continues it, so its step records are the uninterrupted run's). Every
line of ``metrics.jsonl`` is strict JSON (a non-finite number is ``null``).

A non-finite loss (or gradient norm, when ``clip_norm`` computes it) stops training with
:class:`~bucketrnn.errors.NonFiniteError` naming the step, or with ``on_nonfinite="skip"`` drops
that step's update; no checkpoint with a non-finite value is ever written.

``accumulate=N`` updates once per N consecutive batches, on their summed gradients divided by
their total loss denominator (:mod:`bucketrnn.training.accumulation` holds the sum); steps still
count batches, and checkpoints and stops fall on the groups' ends.

Size: about 800 lines: the step, the epoch, checkpoints and exact resume, the log window, update
groups and the non-finite and divergence policies all act on one loop's state.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from numbers import Real

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from bucketrnn import compat, distributed
from bucketrnn._aliases import moved_names
from bucketrnn.errors import CheckpointError, NonFiniteError, StateMismatchError
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.progress import Progress
from bucketrnn.tasks import get_task
from bucketrnn.training import checkpoint as ckpt
from bucketrnn.training import evaluation, metrics, optim_state
from bucketrnn.training.accumulation import GradientSum
from bucketrnn.training.metrics import MetricsLog
from bucketrnn.training.rundir import METRICS, RunLock
from bucketrnn.validation import check_choice, check_int

__all__ = ["LEARNING_RATE", "LR_DECAY", "LR_SCHEDULES", "MIN_LEARNING_RATE", "ON_NONFINITE",
           "TrainLoop", "WARMDOWN"]
__getattr__ = moved_names(__name__, {"TASKS": "bucketrnn.tasks:TASK_NAMES"})

log = logging.getLogger(__name__)
ON_NONFINITE = ("error", "skip")
MIN_LEARNING_RATE = 1e-30  # the floor of the decayed learning rate (TrainLoop.learning_rate_at)
# How the learning rate moves over a run (TrainLoop.learning_rate_at): "warmdown" and "cosine"
# follow the run's planned steps down to zero; "epoch" multiplies it by lr_decay every epoch.
LR_SCHEDULES = ("warmdown", "cosine", "epoch")
LR_DECAY = 0.5  # lr_decay of the "epoch" schedule when none is given
# The share of the planned steps over which "warmdown" brings the rate down to zero: with 2
# epochs, the first at the full rate and the second falling (the old halving's mean rate).
WARMDOWN = 0.5
# The defaults of TrainLoop are the app's (conf/trainer/default.yaml); tests/app/test_config.py
# holds the two together.
LEARNING_RATE = 0.01
# What a checkpoint's meta must hold for load_checkpoint (ints are >= 0).
_META = {"epoch": int, "epoch_finished": bool, "global_step": int, "loader": dict,
         "metrics_offset": int, "history": dict, "history.epochs": list,
         "history.train_seconds": (int, float), "history.real_tokens": int, "history.slots": int,
         "history.skipped_steps": int, "history.epoch_acc": (dict, type(None))}
# Checked when present (checkpoints of a bucketrnn before them have none): the open metrics
# window, and the digests of the files the checkpoint's ids refer to.
_OPTIONAL_META = {"window": dict, "run_files": dict, "schedule": dict, "accumulate": int,
                  "history.updates": int}


def _epoch_line(record: dict, epochs: int) -> str:
    """One line of an epoch's figures for the log."""
    parts = [f"epoch {record['epoch'] + 1}/{epochs}"]
    for key, value in record.items():
        if key.startswith(("train_", "valid_")) and not key.endswith("seconds") \
                and value is not None:
            parts.append(f"{key.replace('_', ' ', 1)} {value:.4g}")
    parts.append(f"{record['tokens_per_s']:,.0f} real tokens/s")
    if record.get("skipped_steps"):
        parts.append(f"{record['skipped_steps']} steps skipped (non-finite)")
    return ", ".join(parts)


def _step_seed(seed: int, step: int) -> int:
    # MXNet operators draw from one process-wide generator and have no per-call seed; reseeding
    # it from (seed, step) before every step makes dropout a function of the step alone, so a
    # resumed run draws exactly the masks an uninterrupted one would.
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0] & 0x7FFFFFFF)


class TrainLoop:
    """Train a bucketed model: one compiled graph per bucket, shared parameters.

    Parameters
    ----------
    model : callable or GraphCache
        ``build(bucket_length) -> HybridBlock`` (e.g. ``LanguageModel.factory(...)``) whose
        forward takes ``(data, valid_length, label, weight)`` and returns the per-row loss
        (already times ``weight``), optionally followed by logits; or a ready ``GraphCache``.
    train_loader : BucketLoader
        Its ``task`` must be ``"lm"`` (loss per token, perplexity), ``"classify"`` (loss per
        row, accuracy when the model also returns logits), ``"tag"`` (loss per token, token
        accuracy over valid tokens when the model also returns logits) or ``"seq2seq"`` (loss
        per target token, perplexity; real tokens and padding are counted on the target side).
    ctx : mx.Context, optional
        Default ``mx.cpu()``, or the context of a given ``GraphCache`` (one context: the loop
        reads states and gradients there). The loaders must deliver batches on it
        (``BucketLoader(..., ctx=ctx)``).
    optimizer : str
        Any ``mx.optimizer`` name.
    optimizer_params : dict, optional
        E.g. ``{"learning_rate": 1e-3}``; the learning rate defaults to :data:`LEARNING_RATE`
        (0.01, the app's ``trainer.lr``).
    clip_norm : float, optional
        Rescale the gradients when their global L2 norm exceeds this (None: never); with
        ``accumulate``, the norm of the group's mean gradient.
    accumulate : int
        Batches per optimizer update (default 1: every batch). Each update sums the gradients of
        ``accumulate`` consecutive batches of the loader's order and divides them by their total
        loss denominator (real tokens, or rows for ``classify``): what one batch of all their rows
        would be divided by (and by the workers under ``dist_sync``, as always). Consecutive batches
        come from random buckets, so an update mixes length ranges as a padded batch does, where one
        bucketed batch holds one range. Groups are aligned within an epoch: one ends after in-epoch
        batch ``i`` with ``(i + 1) % accumulate == 0``, or at the epoch's last batch (a shorter last
        group). Steps (``global_step``, ``max_steps``, ``checkpoint_every``, ``log_every``, the
        schedule's planned steps, the dropout seeds) still count batches; the update uses the rate
        of the group's first batch (where one batch of all its rows stands on the curve);
        ``history["updates"]`` counts the updates. Checkpoints, stop requests and ``max_steps`` wait
        for the group's update (at most ``accumulate - 1`` more batches), so a resume is exact; a
        checkpoint records the value and resuming it with another raises ``StateMismatchError``. The
        cost is per-call overhead: more, smaller batches for the same rows per update, each a graph
        call of its own, plus a copy of the gradients (measured in docs/configuration.md, "Gradient
        accumulation"). The gradients are summed in buffers of their own, never with
        ``grad_req="add"`` (:mod:`bucketrnn.training.accumulation`). Under ``dist_sync`` the workers
        exchange gradients once per update (``allreduce_grads`` or ``step`` at the group's end),
        verified with two local workers in tests/app/test_run_distributed.py (their parameters stay
        equal); ``dist_async`` takes the same ``step`` at the group's end, with its warning about
        the learning rate as before, but no test runs it with ``accumulate``.
    lr_schedule : {"warmdown", "cosine", "epoch"}
        How the learning rate moves (:meth:`learning_rate_at`). ``"warmdown"`` (default) and
        ``"cosine"`` follow the run's planned length, the steps of ``epochs`` epochs of the
        loader, and reach zero after its last step, so a longer run keeps a useful rate for
        longer: ``"warmdown"`` holds ``learning_rate`` and then falls in a straight line over
        the last ``warmdown`` share of the steps; ``"cosine"`` falls along a half cosine from
        the first step. ``max_steps`` does not shorten the curve: it stops the run early, and
        a resume goes on as if it had not stopped. ``"epoch"`` is the only schedule of earlier
        versions: ``learning_rate * lr_decay ** e`` in epoch ``e``, which leaves epoch 8 at
        1/128 of the first rate with the halving. Measured in docs/configuration.md ("The
        learning-rate schedule").
    warmdown : float, optional
        The share of the planned steps ``"warmdown"`` falls over, in (0, 1] (default 0.5:
        with 2 epochs the first runs at the full rate; 1: a straight line from the first
        step); refused with the other schedules.
    schedule_steps : int, optional
        The steps the ``"warmdown"``/``"cosine"`` curve spans (default: the planned steps,
        counted when :meth:`fit` starts). Give it when calling ``fit`` one epoch at a time
        (raising :attr:`epochs` between calls), so the curve spans the whole run, not each
        call.
    lr_decay : float, optional
        The per-epoch factor of ``lr_schedule="epoch"`` (default 0.5), floored at
        :data:`MIN_LEARNING_RATE` (1e-30); refused with the other schedules, which ignore it.
    epochs : int
    max_steps : int, optional
        Stop after this many steps in total (a checkpoint is written there); when it falls on
        an epoch's last step, that epoch is finished (recorded, evaluated) first. With
        ``accumulate`` it rounds up to a whole update: the run stops at the end of the group
        holding step ``max_steps``.
    memory : {"shared", "static", "dynamic"}
        GraphCache memory policy (ignored when ``model`` is a GraphCache).
    precision : {"fp32", "bf16"}
        GraphCache precision (ignored when ``model`` is a GraphCache): ``"bf16"`` runs the
        matrix products in bfloat16 with float32 parameters, gradients, optimizer state, loss
        and checkpoints (:mod:`bucketrnn.graphs.precision`).
    seed : int
        Parameter initialisation and dropout seed. The loader has its own seed.
    run_dir : str, optional
        Where metrics and checkpoints go; None keeps nothing on disk.
    checkpoint_every : int
        Steps between checkpoints (0: only at epoch ends); with ``accumulate``, one that
        falls inside a group is written at the group's end.
    log_every : int
        Steps per ``metrics.jsonl`` step record (a window also ends at each epoch end, and
        where the run stops: ``max_steps``, Ctrl-C, SIGTERM).
    progress : bool
        Draw a progress bar on ``stream``.
    fingerprint : dict, optional
        Flat description of the configuration, stored in checkpoints; resuming with another
        one raises ``StateMismatchError`` naming what differs.
    run_files : dict, optional
        ``{file name: SHA-256 hex}`` of the files the parameters' ids refer to (a vocabulary,
        a class map: :func:`bucketrnn.training.runfiles.file_digests`), stored in every
        checkpoint (meta ``run_files``); resuming with other digests raises
        ``StateMismatchError`` naming the file (a checkpoint without them is resumed).
    init : mx.init.Initializer, optional
        Default ``mx.init.Xavier()``.
    on_nonfinite : {"error", "skip"}
        A non-finite loss, or gradient norm (checked when ``clip_norm`` computes it): raise
        ``NonFiniteError`` naming the step (the last checkpoint stays as it is), or skip that
        step's update (parameters and optimizer state unchanged; counted as ``skipped_steps``
        in the history and ``metrics.jsonl``). One process only: ranks would disagree. With
        ``accumulate``, ``"skip"`` leaves a batch of non-finite loss out of its group (one
        skipped step; the group's other batches still update), and a non-finite norm of the
        group's gradient drops that update (its batches count as skipped steps; their losses,
        finite, stay in the figures). Either policy stops, as with one batch per update, when
        an earlier update left the parameters non-finite.

    Examples
    --------
    >>> from bucketrnn.data.loader import BucketLoader
    >>> from bucketrnn.models import LanguageModel
    >>> seqs = [[1, 2, 3, 4], [2, 3, 1], [4, 1, 2, 3, 2], [3, 3, 1]] * 4
    >>> loader = BucketLoader(seqs, batch_size=4, num_buckets=2, seed=0)
    >>> loop = TrainLoop(LanguageModel.factory(vocab_size=5, hidden_size=8, num_layers=1),
    ...                  loader, epochs=2, progress=False, optimizer_params={"learning_rate": 0.01})
    >>> history = loop.fit()
    >>> len(history["epochs"]), loop.global_step
    (2, 8)
    """

    def __init__(self, model, train_loader, *, ctx=None, optimizer: str = "adam",
                 optimizer_params: dict | None = None, clip_norm: float | None = 1.0,
                 lr_schedule: str = "warmdown", warmdown: float | None = None,
                 schedule_steps: int | None = None,
                 lr_decay: float | None = None, epochs: int = 2, max_steps: int | None = None,
                 memory: str = "shared", kvstore="device", seed: int = 0,
                 run_dir: str | None = None, checkpoint_every: int = 200, log_every: int = 10,
                 progress: bool = True, fingerprint: dict | None = None, init=None, stream=None,
                 on_nonfinite: str = "error", precision: str = "fp32",
                 run_files: dict | None = None, accumulate: int = 1):
        epochs = check_int("epochs", epochs, low=1)
        self.accumulate = check_int("accumulate", accumulate, low=1)
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, low=0)
        log_every = check_int("log_every", log_every, low=1)
        seed = check_int("seed", seed, low=0)
        max_steps = check_int("max_steps", max_steps, low=1, allow_none=True)
        if clip_norm is not None and not (isinstance(clip_norm, Real) and 0 < clip_norm < math.inf):
            raise ValueError(f"clip_norm must be None or a finite number > 0, got "
                             f"clip_norm={clip_norm!r}")
        check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        self.schedule_steps = check_int("schedule_steps", schedule_steps, low=1,
                                        allow_none=True)
        if lr_decay is not None and lr_schedule != "epoch":
            raise ValueError(f"lr_decay={lr_decay!r} is the per-epoch factor of "
                             f"lr_schedule='epoch'; lr_schedule={lr_schedule!r} follows the "
                             "run's planned steps and would ignore it: pass "
                             "lr_schedule='epoch' with it, or leave lr_decay out")
        if warmdown is not None and lr_schedule != "warmdown":
            raise ValueError(f"warmdown={warmdown!r} is the falling share of "
                             f"lr_schedule='warmdown'; lr_schedule={lr_schedule!r} would "
                             "ignore it: pass lr_schedule='warmdown' with it, or leave warmdown "
                             "out")
        if warmdown is None:
            warmdown = WARMDOWN
        if not (isinstance(warmdown, Real) and not isinstance(warmdown, bool)
                and 0 < warmdown <= 1):
            raise ValueError(f"warmdown must be in (0, 1], got warmdown={warmdown!r}")
        if lr_decay is None:
            lr_decay = LR_DECAY
        if not (isinstance(lr_decay, Real) and not isinstance(lr_decay, bool)
                and 0 < lr_decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1], got lr_decay={lr_decay!r}")
        check_choice("on_nonfinite", on_nonfinite, ON_NONFINITE)
        task = getattr(train_loader, "task", None)
        self._task = get_task(task, name="train_loader.task")
        self.task = task
        self.loader = train_loader
        # A dist_* name becomes a store here; "local"/"device" stay names (one process, and
        # gluon then needs no kvstore for one context).
        self.kv = distributed.kvstore_for_training(kvstore)
        shard = distributed.shard_of(self.kv)
        mine = (train_loader.num_shards, train_loader.shard_index)
        if mine != tuple(shard):
            raise ValueError(f"train_loader is shard {mine[1]} of {mine[0]} but kvstore="
                             f"{kvstore!r} makes this process rank {shard.shard_index} of "
                             f"{shard.num_shards}: build it with num_shards={shard.num_shards}, "
                             f"shard_index={shard.shard_index}")
        self.num_workers = shard.num_shards
        if on_nonfinite == "skip" and self.num_workers > 1:
            raise ValueError("on_nonfinite='skip' needs one process (a rank skipping a step "
                             "alone would leave the ranks' parameters apart); use 'error'")
        self.on_nonfinite = on_nonfinite
        self.is_writer = distributed.is_checkpoint_writer(self.kv)
        if isinstance(model, GraphCache):
            if len(model.ctx) != 1 or ctx not in (None, model.ctx[0]):
                raise ValueError(f"TrainLoop runs on one context: got a GraphCache on "
                                 f"{model.ctx} and ctx={ctx!r}")
            ctx = model.ctx[0]
        self.ctx = ctx or mx.cpu()
        self.epochs, self.max_steps, self.clip_norm = epochs, max_steps, clip_norm
        self.seed, self.run_dir = seed, run_dir
        self.checkpoint_every, self.log_every = checkpoint_every, log_every
        self.fingerprint = dict(fingerprint or {})
        self.run_files = None if run_files is None else dict(run_files)
        self.stream = stream or sys.stderr
        self.progress = progress
        if isinstance(model, GraphCache):
            self.graphs = model
        else:
            self.graphs = GraphCache(model, ctx=self.ctx, memory=memory,
                                     keys=train_loader.plan.keys, precision=precision)
        # The reference models declare their id ranges: the loaders check every batch on the
        # host against them (a limit the user gave the loader stays).
        self._id_limits = {k: getattr(model, k, None) for k in ("vocab_size", "num_classes")}
        self._install_id_limits(train_loader)
        self.params = self.graphs.collect_params()
        mx.random.seed(seed)
        if not all(compat.is_initialized(p) for p in self.params.values()):
            self.graphs.initialize(init or mx.init.Xavier())
        self.trainer = gluon.Trainer(self.params, optimizer,
                                     {"learning_rate": LEARNING_RATE, **(optimizer_params or {})},
                                     kvstore=self.kv,
                                     update_on_kvstore=distributed.update_on_kvstore(self.kv))
        if run_dir is not None and not distributed.update_on_kvstore(self.kv):
            optim_state.check_supported(self.trainer)  # before training, not at the checkpoint
        self.base_lr, self.lr_decay = self.trainer.learning_rate, float(lr_decay)
        self.lr_schedule, self.warmdown = lr_schedule, float(warmdown)
        # Under dist_async the servers run the optimizer with the rate it had at the start:
        # MXNet's set_learning_rate changes only this worker's copy (docs/distributed.md).
        self._servers_keep_rate = distributed.update_on_kvstore(self.kv)
        if self._servers_keep_rate and not (lr_schedule == "epoch" and self.lr_decay == 1):
            log.warning("kvstore=%s runs the optimizer on the servers, which keep the first "
                        "learning rate: lr_schedule=%r does not act there (use dist_sync for "
                        "a schedule)", kvstore, lr_schedule)
        self.planned_steps = None  # set by fit() from the loader and epochs
        self.global_step = 0
        self.epoch = 0  # the epoch being run, or the next one to run between epochs
        self.history = {"epochs": [], "train_seconds": 0.0, "real_tokens": 0, "slots": 0,
                        "skipped_steps": 0, "updates": 0, "epoch_acc": None}
        self._window = metrics.tally()
        self._group = GradientSum()  # the open update group (accumulate > 1)
        self._checkpoint_due = False  # checkpoint_every fell inside the open group
        self.metrics_log = MetricsLog(os.path.join(run_dir or "", METRICS))
        self._stop = None
        self._bar = None

    def _install_id_limits(self, loader) -> None:
        set_limits = getattr(loader, "set_id_limits", None)
        if set_limits is None:
            return
        mine = {k: getattr(loader, k, None) for k in self._id_limits}
        wanted = {k: mine[k] if mine[k] is not None else v for k, v in self._id_limits.items()}
        if wanted != mine:
            set_limits(**wanted)

    # -------------------------------------------------------------------- checkpoints
    @property
    def checkpoint_path(self):
        return None if self.run_dir is None else os.path.join(self.run_dir, ckpt.FILENAME)

    def save_checkpoint(self, epoch_finished: bool) -> None:
        """Write ``checkpoint.npz`` atomically (no-op without ``run_dir``, and on ranks > 0).

        ``self.epoch`` is saved as it is: the epoch to continue (mid-epoch) or, at an epoch
        end, the next one. Raises ``NonFiniteError`` instead of writing non-finite values.
        """
        if self.run_dir is None or not self.is_writer:
            return
        # The open log window goes into the checkpoint, not into metrics.jsonl: a resume then
        # continues it, so its step records are the uninterrupted run's (a window flushed here
        # would split in two wherever a run happened to stop).
        offset = self.metrics_log.sync()
        params = {name: p.data(self.ctx).asnumpy() for name, p in self.params.items()}
        # Under dist_async the optimizer state is on the servers: MXNet cannot read it here.
        optim = (None if distributed.update_on_kvstore(self.kv)
                 else optim_state.capture(self.trainer))
        meta = {"epoch": self.epoch, "epoch_finished": epoch_finished,
                "global_step": self.global_step, "loader": self.loader.state_dict(),
                "rng": {"seed": self.seed, "scheme": "mx.random.seed(f(seed, global_step))"},
                "history": self.history, "metrics_offset": offset,
                "window": dict(self._window)}
        if self.run_files is not None:
            meta["run_files"] = self.run_files
        meta["schedule"] = self._schedule()
        meta["accumulate"] = self.accumulate
        try:
            ckpt.save(self.checkpoint_path, params, optim, meta, fingerprint=self.fingerprint)
        except NonFiniteError as e:
            raise NonFiniteError(f"after global step {self.global_step}: {e} (with clip_norm "
                                 "set, non-finite gradients are caught before the update)",
                                 step=self.global_step, what=e.what) from e
        if self._bar is not None:
            self._bar.break_line()
        log.info("checkpoint at global step %d: %s", self.global_step, self.checkpoint_path)

    def load_checkpoint(self, path: str | None = None) -> dict:
        """Restore everything :meth:`save_checkpoint` wrote; returns the checkpoint metadata.

        Raises ``StateMismatchError`` before changing anything if the checkpoint was made
        with another fingerprint, parameter set, optimizer or loader configuration, and
        ``CheckpointError`` for a damaged or incomplete one (a missing optimizer state is
        refused, never replaced by fresh moments).
        """
        path = path or self.checkpoint_path
        state = ckpt.load(path, fingerprint=self.fingerprint, required=_META,
                          optional=_OPTIONAL_META)
        recorded = state.meta.get("run_files")
        if recorded is not None and self.run_files is not None:
            name = next((n for n in sorted(recorded) if self.run_files.get(n) != recorded[n]),
                        None)
            if name is not None:
                raise StateMismatchError(
                    f"checkpoint {path!r}: {name} differs from the one the checkpoint was "
                    "trained with (another SHA-256): its ids would mean other tokens or "
                    f"classes; restore the run's own {name}, or start a new run")
        mine = set(self.params.keys())
        if set(state.params) != mine:
            raise StateMismatchError(
                f"checkpoint parameters differ from the model's: missing "
                f"{sorted(mine - set(state.params))[:5]}, unexpected "
                f"{sorted(set(state.params) - mine)[:5]}")
        for name, p in self.params.items():
            if tuple(state.params[name].shape) != tuple(p.shape):
                raise StateMismatchError(f"checkpoint parameter {name} has shape "
                                         f"{state.params[name].shape}, the model's {p.shape}")
            # The loop writes each parameter in its own dtype: another one (int8 values would
            # be cast silently on restore) was not written by this model.
            if state.params[name].dtype != np.dtype(p.dtype):
                raise CheckpointError(f"checkpoint {path!r}: parameter {name} is "
                                      f"{state.params[name].dtype.name}, the model's "
                                      f"{np.dtype(p.dtype).name}: not a checkpoint this model "
                                      "wrote")
        meta = state.meta
        schedule = self._schedule()
        # Written before the schedule was recorded: it halved by some lr_decay (not recorded).
        saved = meta.get("schedule",
                         {"lr_schedule": "epoch", "lr_decay": schedule.get("lr_decay")})
        if saved != schedule:
            # A resume on another schedule would train the rest of the run at other rates.
            # Cut: a crafted checkpoint's values are echoed, not its megabytes.
            shown = ", ".join(f"{str(k)[:40]}={v!r:.60}" for k, v in list(saved.items())[:6])
            raise StateMismatchError(
                f"checkpoint {path!r} was trained with {shown}; this loop has "
                + ", ".join(f"{k}={v!r}" for k, v in schedule.items())
                + ": give the checkpoint's schedule to resume it (a checkpoint without one was "
                "written before the schedule was recorded: lr_schedule='epoch')")
        # Written before accumulate existed: one batch per update.
        accumulate = meta.get("accumulate", 1)
        if accumulate != self.accumulate:
            # Its steps and groups would fall apart: the checkpoint sits at one of its own
            # group ends, and the rest of the run would update at other batches.
            raise StateMismatchError(
                f"checkpoint {path!r} was trained with accumulate={accumulate!r} (batches per "
                f"update); this loop has accumulate={self.accumulate}: give the checkpoint's "
                "value to resume it (a checkpoint without one was written before accumulate "
                "existed: 1)")
        if self.run_dir is not None and self.is_writer:
            self.metrics_log.check_offset(meta["metrics_offset"], path)
        local = not distributed.update_on_kvstore(self.kv)
        if local and state.optimizer is None:
            raise CheckpointError(f"checkpoint {path!r} holds no optimizer state (written where "
                                  "the kvstore servers ran the optimizer); resuming would "
                                  "restart it from zero: resume with the same kvstore")
        if local:
            optim_state.check(self.trainer, state.optimizer, path)
        try:
            self.loader.load_state_dict(meta["loader"])  # checks the data fingerprint
        except StateMismatchError as e:
            raise StateMismatchError(f"checkpoint {path!r}: {e}") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
            raise CheckpointError(f"checkpoint {path!r} has a broken loader state: {e}") from e
        # The loop's epoch and the loader's position must describe one moment: mid-epoch the
        # loader is in that epoch; at an epoch end the loop has moved on to the next one.
        loader, epoch = self.loader, meta["epoch"]
        if meta["epoch_finished"]:
            consistent = (loader.epoch, loader.step) in (
                (epoch, 0), (epoch - 1, loader.num_batches(epoch - 1) if epoch else -1))
        else:  # at a step of the epoch, or past its last batch (the loader then moved on)
            consistent = loader.epoch == epoch or (loader.epoch, loader.step) == (epoch + 1, 0)
        if not consistent:
            raise CheckpointError(
                f"checkpoint {path!r} is inconsistent: the loop is at epoch {meta['epoch']} "
                f"({'end of the previous one' if meta['epoch_finished'] else 'mid-epoch'}) but "
                f"the loader at epoch {loader.epoch}, step {loader.step}")
        for name, p in self.params.items():
            p.set_data(mx.nd.array(state.params[name], dtype=p.dtype))
        if local:
            optim_state.restore(self.trainer, state.optimizer, path)
        self.global_step, self.history = meta["global_step"], meta["history"]
        # Counted before the history held it: one update per step that was not skipped.
        self.history.setdefault(
            "updates", max(self.global_step - self.history["skipped_steps"], 0))
        self.epoch = meta["epoch"]
        # A checkpoint is written at a group's end: the next batch opens a new one.
        self._group.clear()
        self._checkpoint_due = False
        self._resumed_offset = meta["metrics_offset"]
        # A checkpoint written before the window was kept in it had flushed it: empty.
        self._window = metrics.tally(**(meta.get("window") or {}))
        return meta

    # -------------------------------------------------------------------- metrics
    def _write(self, record):
        self.metrics_log.write(record)

    def _figures(self, t: dict) -> dict:
        return self._task.figures(t)

    def _flush_window(self):
        w = self._window
        if not w["steps"]:
            return
        self._write({"kind": "step", "epoch": self.epoch, "global_step": self.global_step,
                     "steps": w["steps"], "skipped_steps": w["skipped"],
                     **self._figures(w),
                     "tokens_per_s": w["real"] / max(w["seconds"], 1e-9),
                     "padded_fraction": 1.0 - w["real"] / max(w["slots"], 1),
                     "lr": self.base_lr if self._servers_keep_rate else self.trainer.learning_rate,
                     "graphs_compiled": self.graphs.compiled, "time": time.time()})
        self._window = metrics.tally()

    # -------------------------------------------------------------------- steps
    def _grads(self):
        return [p.grad(self.ctx) for p in self.params.values() if p.grad_req != "null"]

    def _group_ends(self) -> bool:
        """Whether the batch just taken from the loader ends its update group: its in-epoch
        index ``i`` has ``(i + 1) % accumulate == 0``, or it was the epoch's last."""
        # The loader moves before handing a batch out: its step is i + 1, or 0 once the
        # epoch's last batch is out.
        return self.accumulate == 1 or self.loader.step % self.accumulate == 0

    def _rate_step(self) -> int:
        """The step whose rate the batch just taken from the loader trains with: that of the
        first batch of its update group (itself with ``accumulate=1``).

        The planned steps count batches, so group ``k`` of ``N`` batches starts at step
        ``k * N`` of ``N`` times the planned steps of batches ``N`` times larger: the same point
        of the curve as their update ``k``. The group's last batch would stand ``N - 1`` steps
        further down it.
        """
        if self.accumulate == 1:
            return self.global_step
        # The loader moves before handing a batch out (as in _group_ends).
        index = (self.loader.step or self.loader.num_batches(self.epoch)) - 1
        return self.global_step - index % self.accumulate

    def train_step(self, batch) -> dict:
        """One batch: forward, backward and, when it ends its update group (every batch with
        ``accumulate=1``), the optimizer update; returns its tally (summed loss, counts).

        With ``accumulate > 1`` the group's end is read from the loader's position: call it
        on the loader's batches in their order, as :meth:`fit` does.
        """
        mx.random.seed(_step_seed(self.seed, self.global_step))
        if self.lr_schedule != "epoch":
            # A function of the step alone (not decayed in place): a resumed run gets the
            # same rates.
            self.trainer.set_learning_rate(self.learning_rate_at(self._rate_step()))
        real, slots, count, real_rows = self._task.counts(batch)
        summed = self.accumulate > 1
        with autograd.record():
            out = self.graphs(batch)
            loss = out[0] if isinstance(out, (list, tuple)) else out
            total = loss.sum()
            # dist_sync sums the workers' gradients: this keeps the update their mean. A group
            # divides its summed gradients by its own count at its end (GradientSum).
            objective = total if summed else total / max(count, 1) / self.num_workers
        objective.backward()
        # Checked on the host before the update: the loss is pulled there anyway, and the
        # gradient norm only when clipping computes it (a finite loss with non-finite
        # gradients otherwise shows in the next step's loss, or in the parameters at the
        # next checkpoint, which is then refused).
        loss_value, norm = float(total.asscalar()), None
        finite = math.isfinite(loss_value)
        update, group = True, 1
        if summed:
            if finite:  # a batch of non-finite loss adds nothing to its group
                self._group.add(self._grads(), count)
            # An update when the group ends with something in it; once per update (not per
            # batch) the workers' gradients are summed, in allreduce_grads or step.
            update = self._group_ends()
            group = self._group.write_mean(self._grads(), self.num_workers) if update else 0
            update = update and group > 0
        if update and self.clip_norm is not None:
            distributed.allreduce_grads(self.trainer)
            norm = float(gluon.utils.clip_global_norm(self._grads(), self.clip_norm,
                                                      check_isfinite=False).asscalar())
        bad = next((what for what, v in (("loss", loss_value), ("gradient norm", norm))
                    if v is not None and not math.isfinite(v)), None)
        if bad is not None and self.on_nonfinite == "skip":
            # Skipping helps when this batch is at fault, not when an earlier update already
            # broke the parameters (every later step would be skipped): then stop.
            broken = next((name for name, p in self.params.items()
                           if not np.isfinite(p.data(self.ctx).asnumpy()).all()), None)
            if broken is not None:
                raise NonFiniteError(
                    f"parameter {broken} is non-finite at global step {self.global_step + 1} "
                    f"(epoch {self.epoch}): an earlier update broke it, so skipping steps cannot "
                    "recover; any earlier checkpoint is kept as it was. Lower the learning rate "
                    "or set clip_norm", step=self.global_step + 1, what=broken)
        if bad is not None and self.on_nonfinite == "error":
            of = (f" of the update of {group} batches ending there (accumulate="
                  f"{self.accumulate})" if summed and bad != "loss" else "")
            raise NonFiniteError(
                f"non-finite {bad}{of} ({loss_value if bad == 'loss' else norm}) at global "
                f"step {self.global_step + 1} (epoch {self.epoch}); any earlier checkpoint is "
                "kept as it was. Lower the learning rate, set clip_norm, or "
                "trainer.on_nonfinite=skip", step=self.global_step + 1, what=bad)
        norm_ok = norm is None or math.isfinite(norm)
        # One batch per update: a non-finite loss drops it. A group's update stands on its
        # other batches when only this one's loss is non-finite.
        applied = update and norm_ok and (finite or summed)
        if applied and self.clip_norm is None:
            distributed.step(self.trainer, 1)
        elif applied:
            self.trainer.update(1)
        tally = metrics.tally(loss=loss_value, count=count, real=real, slots=slots, steps=1)
        skipped = 0
        if not finite or not (summed or norm_ok):
            # skipped: no update from it; its loss stays out of the figures
            tally.update(loss=0.0, count=0)
            skipped = 1
        else:
            self._task.add_accuracy(out, batch, tally, real_rows)
        if summed and update and not norm_ok:
            # The group's update is dropped: its batches count as skipped (their losses,
            # finite and already in the figures, stay there).
            skipped += group
        if skipped:
            tally["skipped"] = skipped
            self.history["skipped_steps"] += skipped
        if applied:
            self.history["updates"] += 1
        self.global_step += 1
        self.history["real_tokens"] += real
        self.history["slots"] += slots
        return tally

    def evaluate(self, loader) -> dict:
        """Loss and perplexity (``lm``), accuracy (``classify``) or token accuracy (``tag``)
        over one pass of ``loader`` (:func:`bucketrnn.training.evaluation.evaluate`, with this
        loop's id checks and progress bar)."""
        self._install_id_limits(loader)
        return evaluation.evaluate(self.graphs, loader, task=self.task, progress=self.progress,
                                   stream=self.stream)

    # -------------------------------------------------------------------- the loop
    def fit(self, valid_loader=None, resume: bool = False) -> dict:
        """Train until ``epochs`` (or ``max_steps``); evaluate ``valid_loader`` after each epoch.

        With ``resume=True`` and a checkpoint in ``run_dir``, continue from it exactly.
        Returns the history: per-epoch records, train seconds, real tokens and slots seen.
        """
        if self.run_dir is None or not self.is_writer:
            return self._fit(valid_loader, resume)
        # One writer per run directory, for the whole run (re-entrant: the app holds it too).
        with RunLock(self.run_dir):
            ckpt.clean_temporaries(self.run_dir)  # of a checkpoint write that was killed
            return self._fit(valid_loader, resume)

    def _fit(self, valid_loader, resume):
        self._resumed_offset = None
        if resume and self.checkpoint_path and os.path.isfile(self.checkpoint_path):
            self.load_checkpoint()
        # Collective, before the first step: every rank must hold the same plan and position.
        # accumulate too: ranks grouping batches otherwise would sum their gradients at
        # different steps and wait for each other for good.
        distributed.check_same_plan(
            self.kv, distributed.plan_fingerprint(
                self.loader, **{**self.fingerprint, "loop.accumulate": self.accumulate}))
        distributed.check_shards(self.loader)
        batches = self.loader.num_batches(self.epoch)
        if self.accumulate > max(batches, 1):
            # Not refused: a run may mean full-batch updates. But a typo (1000 for 10) would
            # otherwise train silently on a handful of updates.
            log.warning("accumulate=%d is more than the %d batches of epoch %d: every epoch "
                        "makes one update, of all its batches (updates left in the run: %d)",
                        self.accumulate, batches, self.epoch, self.epochs - self.epoch)
        # Counted here, after a resume has read the epochs the run now goes to.
        self.planned_steps = self.schedule_steps or self.count_planned_steps()
        if self.run_dir is not None and self.is_writer:
            self.metrics_log.open(self._resumed_offset)
        loader = self.loader
        bar = self._bar = Progress(self.stream, enabled=self.progress)
        with self._stop_requests():
            try:
                while self.epoch < self.epochs:
                    if self.max_steps is not None and self.global_step >= self.max_steps:
                        break
                    if loader.epoch < self.epoch:
                        loader.set_epoch(self.epoch)
                    stopped = False
                    if loader.epoch == self.epoch:
                        stopped = self._run_epoch(bar)
                    else:
                        # Resumed from a checkpoint written after the epoch's last batch (a
                        # stop there, or one due there): its window ends here, as _run_epoch
                        # ends it, before the epoch's record, with the rate its last batch had.
                        self._set_last_rate()
                        self._flush_window()
                    if stopped:
                        break
                    record = {"kind": "epoch", "epoch": self.epoch,
                              "global_step": self.global_step, **self._epoch_train_figures()}
                    if valid_loader is not None:
                        bar.break_line()
                        valid = self.evaluate(valid_loader)
                        record.update({f"valid_{k}": v for k, v in valid.items()})
                    self.history["epochs"].append(record)
                    self._write(record)
                    bar.break_line()
                    log.info("%s", _epoch_line(record, self.epochs))
                    self.epoch += 1
                    self.save_checkpoint(epoch_finished=True)
            finally:
                bar.close()
                self._bar = None
                self.metrics_log.close()
        return self.history

    @contextlib.contextmanager
    def _stop_requests(self):
        """Ctrl-C / SIGTERM: finish the current step (with ``accumulate``, the current
        update's group), write a checkpoint, then stop.

        Stopping between updates keeps parameters, optimizer and loader position consistent;
        a second signal interrupts at once (the last checkpoint still holds).
        """
        self._stop = None
        if self.run_dir is None or threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask(signum, frame):
            if self._stop is not None:
                raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
            self._stop = signal.Signals(signum).name

        previous = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _epoch_train_figures(self):
        h = self.history
        seen = h.get("epoch_acc") or metrics.tally()
        figs = self._figures(seen)
        out = {f"train_{k}": v for k, v in figs.items()}
        out.update({"tokens_per_s": seen["real"] / max(seen["seconds"], 1e-9),
                    "padded_fraction": 1.0 - seen["real"] / max(seen["slots"], 1),
                    "graphs_compiled": self.graphs.compiled, "seconds": seen["seconds"],
                    "skipped_steps": seen["skipped"]})
        h["epoch_acc"] = None
        return out

    def _schedule(self) -> dict:
        """What the rates depend on besides the step (recorded in every checkpoint)."""
        if self.lr_schedule == "epoch":
            return {"lr_schedule": "epoch", "lr_decay": self.lr_decay}
        out = {"lr_schedule": self.lr_schedule, "schedule_steps": self.schedule_steps}
        if self.lr_schedule == "warmdown":
            out["warmdown"] = self.warmdown
        return out

    def count_planned_steps(self) -> int:
        """Steps of ``epochs`` epochs of the loader (each epoch's own count, which only
        ``last_batch="rollover"`` varies): the span of the ``"warmdown"``/``"cosine"`` curve.
        ``max_steps`` is left out: it stops a run, and a stopped run resumed goes on along the
        same curve as the uninterrupted one."""
        loader = self.loader
        if getattr(loader, "last_batch", None) == "rollover":
            total = sum(loader.num_batches(e) for e in range(self.epochs))
        else:
            total = loader.num_batches(0) * self.epochs
        return max(total, 1)

    def learning_rate_at(self, step: int, epoch: int | None = None) -> float:
        """The learning rate of global step ``step`` (0-based) in ``epoch`` (default: the
        current one), under :attr:`lr_schedule`.

        With ``T`` = :attr:`planned_steps` and ``t = min(step / T, 1)``: ``"warmdown"`` is
        ``learning_rate * min(1, (1 - t) / warmdown)``, ``"cosine"`` ``learning_rate * (1 +
        cos(pi t)) / 2``, ``"epoch"`` ``learning_rate * lr_decay ** epoch``. Floored at
        :data:`MIN_LEARNING_RATE`: MXNet refuses a rate below float32's range (about 1.2e-38,
        reached after ~120 epochs of the halving), and a smaller rate moves no float32 weight
        anyway. A run resumed with more epochs plans anew (counted when ``fit`` starts): its
        rate jumps to where the longer curve stands at that step; ``max_steps`` never changes
        the curve.
        """
        if self.base_lr <= 0:
            return self.base_lr
        if self.lr_schedule == "epoch":
            e = self.epoch if epoch is None else epoch
            return max(self.base_lr * self.lr_decay ** e, MIN_LEARNING_RATE)
        planned = self.planned_steps or self.schedule_steps or self.count_planned_steps()
        t = min(max(step, 0) / planned, 1.0)
        share = (0.5 * (1.0 + math.cos(math.pi * t)) if self.lr_schedule == "cosine"
                 else min(1.0, (1.0 - t) / self.warmdown))
        return max(self.base_lr * share, MIN_LEARNING_RATE)

    def _set_last_rate(self) -> None:
        """Set the rate the current epoch's last batch trained with (a resumed process has
        not set it yet), for a window record written before the next batch."""
        index = self.loader.num_batches(self.epoch) - 1
        if self.global_step and index >= 0:
            self.trainer.set_learning_rate(self.learning_rate_at(
                self.global_step - 1 - index % self.accumulate))

    def _run_epoch(self, bar) -> bool:
        """Train the rest of the current epoch; True if stopped by ``max_steps``."""
        loader = self.loader
        acc = self.history.get("epoch_acc") or metrics.tally()
        self.history["epoch_acc"] = acc
        if self.lr_schedule == "epoch":
            # Set from the epoch alone (not decayed in place): a resumed run gets the same rate.
            self.trainer.set_learning_rate(self.learning_rate_at(self.global_step))
        total = loader.num_batches(self.epoch)
        bar.start(f"epoch {self.epoch + 1}/{self.epochs}", total, done=loader.step)
        last = time.perf_counter()
        for batch in loader:
            tally = self.train_step(batch)
            now = time.perf_counter()
            tally["seconds"], last = now - last, now
            for key, value in tally.items():
                self._window[key] += value
                acc[key] += value
            self.history["train_seconds"] += tally["seconds"]
            figs = self._figures(acc)
            # Running means over the epoch: a single batch's loss is too noisy to read.
            bar.update(loader.step or total, tokens_per_s=acc["real"] / acc["seconds"],
                       **figs)
            if self._window["steps"] >= self.log_every:
                self._flush_window()
            if self.checkpoint_every and self.global_step % self.checkpoint_every == 0:
                self._checkpoint_due = True
            if not self._group_ends():
                # Checkpoints and stops wait for the group's update: a checkpoint holds no
                # half-summed gradients, and a resume opens its first group where the
                # uninterrupted run opened one.
                continue
            done = self.max_steps is not None and self.global_step >= self.max_steps
            if done and loader.epoch != self.epoch:  # it moves on after the last batch
                # max_steps falls on the epoch's last batch: the epoch ends as any other
                # (recorded, evaluated, checkpointed as finished); fit stops after it.
                done = False
            due, self._checkpoint_due = self._checkpoint_due, False
            if done or due or self._stop is not None:
                self.save_checkpoint(epoch_finished=False)
                last = time.perf_counter()
            if done or self._stop is not None:
                # The run stops here: its open window gets its record now, after the
                # checkpoint (which holds the window), so a resume cuts this record off and
                # continues the window.
                self._flush_window()
            if done:
                return True
            if self._stop is not None:
                raise KeyboardInterrupt(
                    f"{self._stop} after step {self.global_step}: checkpoint saved in "
                    f"{self.run_dir}; continue with fit(resume=True) (app: resume=true)")
        self._flush_window()
        return False
