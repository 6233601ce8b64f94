"""The user-facing iterable: bucketed, padded, static-shape batches from a gluon DataLoader.

Size: about 570 lines: the loader and its worker watch (a worker that dies is noticed within a
second, whatever the timeout), which needs the loader's pool.
"""

from __future__ import annotations

import inspect
import math
import multiprocessing
import signal
import threading
import time
from collections.abc import Sequence
from numbers import Real

import numpy as np

from bucketrnn import compat, cores
from bucketrnn.data.batchify import TASKS, PadToBucket, SlotDataset, check_pad_val, to_ndarray
from bucketrnn.data.lengths import is_sequence, sequence_lengths
from bucketrnn.data.plan import (
    AUTO_MOVED,
    BucketPlan,
    plan_buckets,
    refuse_auto_arguments,
    with_longest,
)
from bucketrnn.data.sampler import BucketBatchSampler, fill_slot
from bucketrnn.tasks import get_task
from bucketrnn.validation import EMPTY_DATASET, check_int, is_int

__all__ = ["BucketLoader", "detect_task", "evaluation_loader", "plan_lengths"]


def detect_task(example):
    """Task implied by one example: ``(seq, scalar)`` is ``'classify'``, ``(src, tgt)`` is
    ``'seq2seq'``, a token-id sequence is ``'lm'``, a float ``(T, F)`` sequence is None."""
    if isinstance(example, tuple) and len(example) == 2 and is_sequence(example[0]):
        return "seq2seq" if is_sequence(example[1]) else "classify"
    arr = np.asarray(example.asnumpy() if hasattr(example, "asnumpy") else example)
    return "lm" if arr.ndim == 1 and arr.dtype.kind in "iu" else None


# ------------------------------------------------------------------ worker watch
# The pool and its processes come through bucketrnn.compat (MXNet's private attributes).
_POLL_SECONDS = 0.5


class _WorkerDied(RuntimeError):
    def __init__(self, process):
        super().__init__(process.pid, process.exitcode)
        self.pid, self.exitcode = process.pid, process.exitcode


class _WatchedResult:
    """A pool task's result whose ``get(timeout)`` waits in short slices and raises
    ``_WorkerDied`` as soon as a worker of the pool has exited: a task whose worker died is
    never answered (the pool quietly starts a replacement), so a plain ``get`` would sit out
    the whole timeout."""

    __slots__ = ("_result", "_workers")

    def __init__(self, result, workers):
        self._result, self._workers = result, workers

    def ready(self):
        return self._result.ready()

    def get(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._result.ready():
            dead = [p for p in self._workers() if p.exitcode is not None]
            if dead:
                raise _WorkerDied(dead[0])
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise multiprocessing.TimeoutError
            self._result.wait(_POLL_SECONDS if left is None else min(_POLL_SECONDS, left))
        return self._result.get(0)


def _stop_pool(dataloader):
    """Terminate the DataLoader's worker pool and forget it."""
    pool = compat.dataloader_pool(dataloader)
    if pool is not None:
        pool.terminate()
        compat.forget_dataloader_pool(dataloader)


def _watch_workers(dataloader):
    """Make the DataLoader's pool notice a dead worker within ~0.5 s and stop without hanging.

    MXNet waits with ``pool.apply_async(...).get(timeout)``: the pool's ``apply_async`` is
    wrapped so the result is a :class:`_WatchedResult`. Every worker process ever seen is
    remembered, so one the pool has already replaced still reports its exit code.

    ``Pool.terminate`` (which MXNet calls on any error) blocks for ever on a queue lock that a
    killed worker held: it is wrapped to run in a daemon thread for at most 2 s, after which
    the workers are killed here (the pool has stopped replacing them by then).
    """
    pool = compat.dataloader_pool(dataloader)
    if pool is None or compat.pool_processes(pool) is None:
        return  # the plain timeout still applies
    seen = []

    def workers():
        seen.extend(p for p in list(compat.pool_processes(pool)) if p not in seen)
        return seen

    workers()
    submit, terminate = pool.apply_async, pool.terminate

    def apply_async(*args, **kwargs):
        return _WatchedResult(submit(*args, **kwargs), workers)

    def terminate_without_hanging():
        stopper = threading.Thread(target=terminate, daemon=True, name="bucketrnn-pool-stop")
        stopper.start()
        stopper.join(2.0)
        if stopper.is_alive():
            for p in workers():
                if p.exitcode is None:
                    p.kill()
                    p.join(1.0)

    pool.apply_async, pool.terminate = apply_async, terminate_without_hanging


def _died(pid, exitcode) -> str:
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "an unknown signal"
        return f"loader worker process {pid} was killed by signal {-exitcode} ({name})"
    return f"loader worker process {pid} exited with code {exitcode}"


# ------------------------------------------------------------------ the loader
class _Window:
    """The slice of the sampler's schedule the DataLoader plays next (read when iterated)."""

    def __init__(self, sampler):
        self.sampler, self.epoch, self.start = sampler, 0, 0

    def __iter__(self):
        return self.sampler.batches(self.epoch, self.start)

    def __len__(self):
        return self.sampler.num_batches(self.epoch) - self.start


class BucketLoader:
    """Iterate a dataset as padded, bucketed :class:`~bucketrnn.data.batchify.Batch` objects.

    Plans buckets from the example lengths, schedules batches with
    :class:`~bucketrnn.data.sampler.BucketBatchSampler` and pads them with
    :class:`~bucketrnn.data.batchify.PadToBucket` inside an ``mxnet.gluon.data.DataLoader`` (worker
    processes and prefetch included). Every batch of bucket ``k`` has shape
    ``(plan.batch_sizes[k], plan.keys[k], ...)`` under ``last_batch='fill'``;
    ``batch.meta`` holds its ``bucket`` index, ``epoch`` and ``step``, and its real ``rows``,
    ``tokens`` and padded ``slots`` (counted on the host).

    An iteration plays the rest of the current epoch and then moves to the next one; breaking
    out and iterating again continues where it stopped (``set_epoch`` with another epoch
    restarts there). A bad example (non-integer ids, NaN, ragged features) raises when its
    batch is assembled, naming its dataset index.

    Parameters
    ----------
    dataset : sequence or gluon Dataset
        Token-id lists or 1-d int arrays, :class:`~bucketrnn.data.datasets.FlatSequences`, float
        ``(T, F)`` feature arrays, ``(data, label)`` tuples, or ``(src, tgt)`` pairs.
    batch_size, num_buckets, strategy, max_tokens, batch_size_multiple, boundaries
        Passed to :func:`~bucketrnn.data.plan.plan_buckets`.
    max_length, outliers
        Passed to :func:`~bucketrnn.data.plan.plan_buckets`: an extreme outlier length (one
        line of 10^6 tokens among sentences) is refused before any graph exists unless
        ``max_length`` caps the lengths (with ``on_overflow='truncate'`` or ``'drop'``) or
        ``outliers='allow'``.
    plan : BucketPlan, optional
        A plan made elsewhere for this dataset's :func:`plan_lengths`, used instead of planning
        here (the arguments above are then not used); e.g. the plan that a measured cost model
        says is fastest, :func:`bucketrnn.autoplan.auto_plan`. Refused when its example
        assignment does not fit the dataset.
    shuffle, seed, last_batch, on_overflow, num_shards, shard_index
        Passed to :class:`~bucketrnn.data.sampler.BucketBatchSampler` (``on_overflow`` also to the
        plan).
    task : {'lm', 'classify', 'seq2seq', 'tag', None}, optional
        See :class:`~bucketrnn.data.batchify.PadToBucket`; detected from ``dataset[0]`` when None
        (unlabelled token ids mean ``'lm'``, whose buckets are planned on ``len(seq) - 1``; a
        :class:`~bucketrnn.data.datasets.FlatSequences` with ``tags`` means ``'tag'``). For
        ``'tag'`` (examples ``(tokens, tags)``, one tag per token) an example whose tags are not
        as long as its tokens is refused here, naming it.
    num_workers, prefetch, timeout
        gluon DataLoader worker processes, batches in flight, and seconds to wait for one
        batch before raising ``TimeoutError``. A worker that dies (a crash in native code,
        ``os._exit``, the out-of-memory killer) raises a ``RuntimeError`` naming its exit code
        or signal within about a second, whatever the timeout. Workers return numpy batches,
        made NDArrays in this process. They pay off when reading an
        example is costly; for in-memory token arrays ``num_workers=0`` is fastest.
    ctx : mxnet.Context, optional
        Move every batch there.
    pad_val : int or float
        Padding value of ``data``: a token id in ``[0, vocab_size)`` for token ids, a finite
        float for features (checked here against ``dataset[0]``).
    vocab_size, num_classes : int, optional
        Check every batch on the host, while it is numpy: a token id outside
        ``[0, vocab_size)`` (inputs and targets) or a label (or ``'tag'`` tag) outside
        ``[0, num_classes)`` or not a whole number raises a ``ValueError`` naming the
        dataset index and the value.
        See :meth:`set_id_limits`; costs a min and a max per array.

    Attributes
    ----------
    plan : BucketPlan
        Buckets of ``lengths``: keys, boundaries, counts, batch sizes, padding.
    lengths : numpy.ndarray
        The lengths the plan is built on (``len(seq) - 1`` for ``task='lm'``).
    sampler : BucketBatchSampler
        The schedule; its position is the number of batches *delivered*, not prefetched.
    batchify : PadToBucket
        The batchify function the DataLoader runs.

    Examples
    --------
    >>> loader = BucketLoader([[1, 2, 3], [4, 5], [6, 7, 8, 9], [1, 2]], batch_size=2,
    ...                       num_buckets=2, seed=0)
    >>> loader.task, len(loader)
    ('lm', 2)
    >>> sorted((b.bucket_key, b.data.shape) for b in loader)
    [(1, (2, 1)), (3, (2, 3))]
    """

    def __init__(self, dataset, batch_size: int | None = 32, num_buckets: int | str = 8,
                 strategy: str = "optimal", max_tokens: int | None = None,
                 batch_size_multiple: int = 1, boundaries: Sequence[int] | None = None,
                 shuffle: bool = True, seed: int = 0, last_batch: str = "fill",
                 on_overflow: str = "error", task: str | None = None, num_shards: int = 1,
                 shard_index: int = 0, num_workers: int = 0, prefetch: int | None = None,
                 timeout: float = 120, ctx=None, pad_val: int | float = 0,
                 vocab_size: int | tuple[int, int] | None = None, num_classes: int | None = None,
                 max_length: int | None = None, outliers: str = "error",
                 plan: BucketPlan | None = None, **unknown):
        refuse_auto_arguments("BucketLoader", unknown)
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"dataset must support len() and indexing, got "
                            f"{type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError(EMPTY_DATASET)
        check_int("batch_size", batch_size, low=1, allow_none=True)
        check_int("num_workers", num_workers, low=0)
        check_int("prefetch", prefetch, low=0, allow_none=True)
        if isinstance(timeout, bool) or not isinstance(timeout, Real) or not timeout > 0 \
                or not math.isfinite(timeout):
            raise ValueError(f"timeout must be a finite number of seconds > 0, got "
                             f"timeout={timeout!r}")
        if ctx is not None:
            import mxnet as mx

            if not isinstance(ctx, mx.Context):
                raise TypeError(f"ctx must be an mxnet Context such as mx.cpu(), got ctx={ctx!r}")
        self.dataset = dataset
        self.task, lengths = plan_lengths(dataset, task)
        self.num_workers, self.prefetch, self.timeout, self.ctx = \
            int(num_workers), prefetch, timeout, ctx
        self.lengths = lengths
        if plan is None:
            if isinstance(num_buckets, str) and num_buckets == "auto":
                raise ValueError(AUTO_MOVED.format(name="BucketLoader"))
            plan = plan_buckets(lengths, num_buckets=num_buckets, strategy=strategy,
                                batch_size=batch_size, max_tokens=max_tokens,
                                batch_size_multiple=batch_size_multiple, boundaries=boundaries,
                                on_overflow=on_overflow, max_length=max_length,
                                outliers=outliers)
        else:
            given = {"batch_size": batch_size, "num_buckets": num_buckets, "strategy": strategy,
                     "max_tokens": max_tokens, "batch_size_multiple": batch_size_multiple,
                     "boundaries": boundaries, "max_length": max_length, "outliers": outliers}
            defaults = inspect.signature(BucketLoader.__init__).parameters
            changed = [k for k, v in given.items() if v != defaults[k].default]
            if changed:
                raise ValueError(f"plan= is a finished plan, so {changed[0]}="
                                 f"{given[changed[0]]!r} would not be used; give the planning "
                                 "arguments to whatever made the plan, or leave plan= out")
            _check_given_plan(plan, lengths, on_overflow)
        self.plan = plan
        self.sampler = BucketBatchSampler(lengths, self.plan, shuffle=shuffle, seed=seed,
                                          last_batch=last_batch, num_shards=num_shards,
                                          shard_index=shard_index, on_overflow=on_overflow,
                                          bucket_ids=self.plan.example_buckets,
                                          # The task changes what a batch means, so a
                                          # checkpoint must not cross it.
                                          fingerprint_extra={"task": self.task})
        self._slots = SlotDataset(dataset, self.sampler.bucket_ids)
        first = dataset[0][0] if self.task in ("classify", "seq2seq", "tag") else dataset[0]
        check_pad_val(pad_val, features=np.ndim(first.asnumpy() if hasattr(first, "asnumpy")
                                                else first) == 2)
        self.batchify = PadToBucket(self.plan.keys, task=self.task, pad_val=pad_val,
                                    truncate=on_overflow == "truncate",
                                    output="numpy" if self.num_workers else "ndarray",
                                    vocab_size=vocab_size, num_classes=num_classes)
        self._window = _Window(self.sampler)
        self._loader = None

    def _dataloader(self):
        if self._loader is None:
            from mxnet.gluon.data import DataLoader

            if self.num_workers:
                # The workers are forked now: one OpenMP thread each, beside the training's.
                cores.one_thread_in_forked_children()
            self._loader = DataLoader(self._slots, batch_sampler=self._window,
                                      batchify_fn=self.batchify, num_workers=self.num_workers,
                                      prefetch=self.prefetch, timeout=self.timeout)
            _watch_workers(self._loader)
        return self._loader

    def close(self):
        """Stop the worker processes (a new iteration starts fresh ones)."""
        loader, self._loader = getattr(self, "_loader", None), None
        _stop_pool(loader)

    def __iter__(self):
        epoch, step = self.sampler.epoch, self.sampler.step
        self._window.epoch, self._window.start = epoch, step
        batches = iter(self._dataloader())
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except _WorkerDied as e:
                self.close()
                raise RuntimeError(
                    f"{_died(e.pid, e.exitcode)} while the loader was preparing batches (epoch "
                    f"{epoch}, step {step}); its batches are lost. A worker dies like this from "
                    "a crash in native code or os._exit in the dataset or batchify, or from the "
                    "out-of-memory killer (SIGKILL; see dmesg). Run with num_workers=0 to see "
                    "the failure in this process, or lower num_workers/prefetch if memory is "
                    "short") from None
            except multiprocessing.TimeoutError as e:
                self.close()
                raise TimeoutError(
                    f"no batch from the loader workers within timeout={self.timeout}s (epoch "
                    f"{epoch}, step {step}): a loader worker is stuck or too slow; check the "
                    "dataset and batchify in a single process with num_workers=0, or raise "
                    "timeout (bucketing.timeout in the app)") from e
            except (ConnectionError, EOFError) as e:
                # A worker that dies during the hand-over breaks the connection instead of
                # letting the batch time out.
                self.close()
                raise RuntimeError(
                    f"a loader worker died while handing over the batch of epoch {epoch}, step "
                    f"{step} ({type(e).__name__}: {e}); check the dataset and batchify in a "
                    "single process with num_workers=0") from e
            except BaseException:
                self.close()
                raise
            batch.meta.update(epoch=epoch, step=step)
            step += 1
            # The position counts batches delivered (not prefetched): move past this one.
            self.sampler.seek(epoch, step)
            yield self._deliver(batch)
        self.sampler.end_epoch(epoch)

    def example_batch(self, bucket: int | None = None):
        """A full padded batch of one bucket (default: the longest), without moving the
        loader's position: a template for :meth:`GraphCache.warmup`.

        It holds the bucket's first examples in dataset order, filled with masked rows when the
        bucket has fewer than a batch.
        """
        k = self.plan.num_buckets - 1 if bucket is None else bucket
        if not is_int(k) or not 0 <= k < self.plan.num_buckets:
            raise ValueError(f"bucket must be an int in [0, {self.plan.num_buckets}), got "
                             f"bucket={bucket!r}")
        members = np.flatnonzero(self.sampler.bucket_ids == k)
        if members.size == 0:
            raise ValueError(f"bucket {k} (key {self.plan.keys[k]!r}) has no examples")
        rows = self.plan.batch_sizes[k]
        slots = list(members[:rows])
        slots += [fill_slot(int(members[0]))] * (rows - len(slots))
        batch = self.batchify([self._slots[int(s)] for s in slots])
        return self._deliver(batch)

    def _deliver(self, batch):
        """The batch as NDArrays on ``ctx`` (workers hand over numpy arrays)."""
        if self.num_workers:
            return to_ndarray(batch, self.ctx)
        return batch if self.ctx is None else batch.as_in_context(self.ctx)

    def __len__(self):
        return len(self.sampler)

    def set_id_limits(self, vocab_size=None, num_classes=None):
        """Check every later batch's token ids against ``vocab_size`` and labels against
        ``num_classes`` (None removes a check), e.g. from a training loop that knows its
        model's vocabulary. Batches already prefetched by workers are not rechecked.

        >>> loader = BucketLoader([[1, 2, 3], [4, 5]], batch_size=2, num_buckets=1)
        >>> loader.set_id_limits(vocab_size=5)
        >>> list(loader)
        Traceback (most recent call last):
        ...
        ValueError: example 1 has token id 5, outside [0, 5) for vocab_size=5: ...
        """
        self.batchify.set_id_limits(vocab_size=vocab_size, num_classes=num_classes)

    @property
    def vocab_size(self):
        return self.batchify.vocab_size

    @property
    def num_classes(self):
        return self.batchify.num_classes

    def set_epoch(self, epoch):
        """See :meth:`BucketBatchSampler.set_epoch`."""
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self.sampler.epoch

    @property
    def step(self) -> int:
        """Step (within the epoch) of the next batch."""
        return self.sampler.step

    def num_batches(self, epoch=None) -> int:
        """Batches this rank plays in ``epoch`` (default: the current one)."""
        return self.sampler.num_batches(epoch)

    @property
    def num_shards(self) -> int:
        return self.sampler.num_shards

    @property
    def shard_index(self) -> int:
        return self.sampler.shard_index

    @property
    def last_batch(self) -> str:
        return self.sampler.last_batch

    @property
    def bucket_sizes(self) -> tuple:
        """See :attr:`BucketBatchSampler.bucket_sizes`."""
        return self.sampler.bucket_sizes

    def buckets(self, epoch=None):
        """Bucket index of every step of ``epoch`` (default: the current one)."""
        return self.sampler.buckets(epoch)

    def real_rows_per_rank(self, epoch=None):
        """See :meth:`BucketBatchSampler.real_rows_per_rank`."""
        return self.sampler.real_rows_per_rank(epoch)

    @property
    def num_dropped(self) -> int:
        """Examples not played this epoch (overflow ``'drop'``, ``last_batch='discard'``)."""
        return self.sampler.num_dropped

    def state_dict(self) -> dict:
        """Tiny resumable state (counts batches delivered, not batches prefetched)."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Resume in O(1); raises StateMismatchError for another dataset or config."""
        self.sampler.load_state_dict(state)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_loader"] = None
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:  # at interpreter exit the pool may be half torn down
            pass

    def __repr__(self):
        s = self.sampler
        epoch, step = s.epoch, s.step
        head = (f"BucketLoader(examples={len(self.dataset)}, task={self.task!r}, "
                f"buckets={self.plan.num_buckets}, last_batch={s.last_batch!r}, "
                f"on_overflow={s.on_overflow!r}, shuffle={s.shuffle}, seed={s.seed}, "
                f"shard={s.shard_index}/{s.num_shards}, workers={self.num_workers}, "
                f"epoch={epoch}, step={step}/{s.num_batches(epoch)}, "
                f"dropped={s.num_dropped})")
        return head + "\n" + "\n".join("  " + line for line in repr(self.plan).splitlines())


def plan_lengths(dataset, task: str | None = None) -> tuple[str, np.ndarray]:
    """``(task, lengths)``: the task (detected from ``dataset[0]`` when None) and the lengths a
    :class:`BucketLoader` plans ``dataset`` on: ``len(seq) - 1`` for ``'lm'`` (inputs and
    targets are the sequence shifted by one), the token count for ``'tag'``, ``(src, tgt)``
    for ``'seq2seq'``.

    >>> plan_lengths([[1, 2, 3], [4, 5]])
    ('lm', array([2, 1]))
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got task={task!r}")
    if task is None and getattr(dataset, "tags", None) is not None:
        task = "tag"
    task = detect_task(dataset[0]) if task is None else task
    lengths = sequence_lengths(dataset)
    if task is not None:
        return task, get_task(task).planned_lengths(lengths)
    if lengths.ndim == 2:
        raise ValueError("task=None does not fit the dataset: its examples are (src, tgt) pairs")
    return task, lengths


def _check_given_plan(plan, lengths, on_overflow: str) -> None:
    """A plan made elsewhere must be this dataset's: one bucket per example, as assigned."""
    if not isinstance(plan, BucketPlan):
        raise TypeError(f"plan must be a BucketPlan (plan_buckets or bucketrnn.autoplan."
                        f"auto_plan), got {type(plan).__name__}")
    given = plan.example_buckets
    if given is None or len(given) != len(lengths):
        made = "an unknown number of" if given is None else len(given)
        raise ValueError(f"plan was made for {made} examples, the dataset has {len(lengths)}; "
                         "plan this dataset's plan_lengths()")
    if not np.array_equal(plan.assign(lengths, on_overflow), given):
        raise ValueError(f"plan does not fit the dataset: its examples fall into other buckets "
                         f"than the plan assigned (with on_overflow={on_overflow!r}); plan this "
                         "dataset's plan_lengths() with the same on_overflow")


def _evaluation_keys(plan: BucketPlan, lengths) -> list:
    """A pairs training plan's keys, plus for each source bucket (and past the longest) a key
    as long as the targets there that no training key holds (the plan's interval convention)."""
    keys = set(plan.keys)
    bounds = list(plan.boundaries)
    src, tgt = lengths[:, 0], lengths[:, 1]
    if src.max() > bounds[-1]:
        bounds.append(int(src.max()))
    j = np.searchsorted(bounds, src, side="left")
    for b in np.unique(j):
        inside = tgt[j == b]
        held = [t for s, t in keys if s == bounds[b]]
        if not held or inside.max() > max(held):
            keys.add((int(bounds[b]), int(inside.max())))
    return sorted(keys)


def evaluation_loader(train: BucketLoader, dataset, **kwargs) -> BucketLoader:
    """A loader over ``dataset`` on ``train``'s bucket boundaries, so it reuses its graphs.

    The boundaries are the training plan's, plus one for the longest evaluation sequence when
    it is longer than every training bucket (pairs: the training keys, plus a key for the
    pairs of a source bucket whose target none of its keys holds); no shuffling, the training
    loader's task, ``ctx``, ``timeout``, ``vocab_size`` and ``num_classes``. ``kwargs`` go to
    :class:`BucketLoader` (batch sizes, ``pad_val``, ...).
    """
    _, lengths = plan_lengths(dataset, train.task)
    if lengths.ndim == 2 and isinstance(train.plan.keys[0], tuple):
        # Pairs: the training keys themselves, plus a key for what none of them holds.
        bounds = _evaluation_keys(train.plan, lengths)
    else:
        bounds = with_longest(train.plan.boundaries, lengths)
    kwargs = {"shuffle": False, "task": train.task, "ctx": train.ctx, "timeout": train.timeout,
              "vocab_size": train.vocab_size, "num_classes": train.num_classes, **kwargs}
    return BucketLoader(dataset, strategy="fixed", boundaries=bounds, **kwargs)
