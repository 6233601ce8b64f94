"""Batch schedule: which dataset indices form each batch, per epoch, from ``(seed, epoch)`` alone.

A schedule is a list of *steps*. A step belongs to one bucket and holds ``num_shards`` batches of
that bucket, one per rank, so every rank runs the same graph at the same step. Rank ``r`` yields
batch ``r`` of every step.

Each yielded batch is a ``list`` of *slots*: an int ``i`` is dataset example ``i``; a
:class:`FillSlot` is a fill row (``last_batch='fill'``, or ``'keep'`` on an idle rank) that copies
example ``slot.index`` with weight 0. Every slot thus names a real example of the batch's bucket,
which is how :class:`~bucketrnn.data.batchify.PadToBucket` knows the bucket and keeps fill rows'
lengths >= 1. A fill slot is not an int on purpose: a plain dataset indexed with it raises,
where a negative int would silently read another example. Read the batches through
:class:`~bucketrnn.data.batchify.SlotDataset` (or use :class:`~bucketrnn.BucketLoader`), which
passes a fill row on as the int ``fill_slot(index) < 0``.
"""

from __future__ import annotations

import functools
import hashlib
from numbers import Integral

import numpy as np

from bucketrnn.data.plan import OVERFLOW_POLICIES, BucketPlan
from bucketrnn.errors import StateMismatchError
from bucketrnn.validation import (
    EMPTY_DATASET,
    check_choice,
    check_int,
    check_lengths,
    differences,
    is_int,
)

__all__ = [
    "BucketBatchSampler",
    "FillSlot",
    "LAST_BATCH",
    "ON_OVERFLOW",
    "STATE_VERSION",
    "decode_slots",
    "fill_slot",
]

LAST_BATCH = ("fill", "keep", "discard", "rollover")
ON_OVERFLOW = OVERFLOW_POLICIES
STATE_VERSION = 1
_STATE_KEYS = ("version", "seed", "epoch", "step", "fingerprint")
_STATE_INT_MAX = np.iinfo(np.int64).max


def fill_slot(index):
    """Int code (``< 0``) of a fill row that copies dataset example ``index``; its own inverse
    (works on ints and arrays). The schedule and :class:`~bucketrnn.data.batchify.SlotDataset` use
    it; the batches the sampler hands out carry :class:`FillSlot` instead."""
    return -1 - index


_MISUSE = ("a fill row of a partial batch, not a dataset index: iterate with BucketLoader, or read "
           "the sampler's batches through SlotDataset, e.g. DataLoader(SlotDataset(dataset, "
           "sampler.bucket_ids), batch_sampler=sampler, batchify_fn=PadToBucket(plan.keys, "
           "task)); or choose last_batch='discard' or 'rollover', which have no fill rows")


@functools.total_ordering
class FillSlot:
    """A fill row in a sampler batch: a weight-0 copy of dataset example ``index``.

    It orders like its int code ``fill_slot(index) < 0`` (so ``slot >= 0`` still means "a real
    example"), but it is no index: ``dataset[slot]`` raises a ``TypeError`` that says how to
    read the batch (a gluon ``DataLoader(dataset, batch_sampler=sampler)`` would otherwise
    read example ``len(dataset) - 1 - index`` without a word).

    Examples
    --------
    >>> slot = FillSlot(3)
    >>> slot.index, slot.code, slot < 0
    (3, -4, True)
    >>> [10, 20, 30, 40][slot]  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: FillSlot(3) is a fill row of a partial batch, not a dataset index: ...
    """

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = check_int("index", index, 0)

    @property
    def code(self) -> int:
        """The int code ``fill_slot(index)``."""
        return fill_slot(self.index)

    def __index__(self):
        raise TypeError(f"{self!r} is {_MISUSE}")

    def __eq__(self, other):
        return isinstance(other, FillSlot) and other.index == self.index

    def __lt__(self, other):
        if isinstance(other, FillSlot):
            return self.code < other.code
        if isinstance(other, Integral):
            return self.code < other
        return NotImplemented

    def __hash__(self):
        return hash((FillSlot, self.index))

    def __reduce__(self):
        return FillSlot, (self.index,)

    def __repr__(self):
        return f"FillSlot({self.index})"


def _slot_code(slot) -> int:
    return slot.code if isinstance(slot, FillSlot) else slot


def decode_slots(slots) -> tuple[np.ndarray, np.ndarray]:
    """Split slots (ints, int codes ``< 0`` or :class:`FillSlot`) into ``(example index to read,
    is_real mask)``."""
    if not isinstance(slots, np.ndarray):
        slots = [_slot_code(s) for s in slots]
    slots = np.asarray(slots, dtype=np.int64)
    real = slots >= 0
    return np.where(real, slots, fill_slot(slots)), real


def _state_int(state, name, high=None):
    value = state[name]
    if not is_int(value):
        raise StateMismatchError(f"sampler state {name} must be an int, got {name}={value!r} "
                                 f"({type(value).__name__}): the state is damaged")
    high = _STATE_INT_MAX if high is None else high
    if not 0 <= value <= high:
        raise StateMismatchError(f"sampler state {name} must be in [0, {high}], got "
                                 f"{name}={value!r}: the state is damaged")
    return int(value)


def _bucket_batch_size(k: int, value) -> int:
    """A plan's batch size of bucket ``k``, checked by the library's one integer rule."""
    try:
        return check_int("batch_size", value, low=1)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{e} for bucket {k}") from None


def _digest(array: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(str(array.shape).encode())
    # In blocks (the same bytes, the same digest): two int64 copies of 10^7 lengths would cost
    # 160 MB at a loader's start.
    flat = np.asarray(array).reshape(-1)
    for start in range(0, flat.size, 1 << 20):
        h.update(np.ascontiguousarray(flat[start:start + (1 << 20)], dtype=np.int64).tobytes())
    return h.hexdigest()


def _rng(seed, epoch, *stream):
    # One independent stream per (seed, epoch, purpose): any epoch is computable on its own,
    # which is what makes resumption O(1).
    return np.random.default_rng([seed, epoch, *stream])


class BucketBatchSampler:
    """Deterministic, shardable, resumable schedule of bucketed batches.

    Parameters
    ----------
    lengths : array_like of int or None
        ``(N,)`` lengths, or ``(N, 2)`` ``(src, tgt)`` lengths; assigned to buckets with
        ``plan.assign(lengths, on_overflow)``. May be None when ``bucket_ids`` is given.
    plan : BucketPlan
        Bucket keys and batch sizes (``plan.batch_sizes[k]`` rows per batch of bucket k).
    shuffle : bool
        Shuffle examples within each bucket and interleave the buckets' steps at random, anew
        every epoch. Otherwise buckets are played in order, examples in index order.
    seed : int
        The schedule of epoch ``e`` is a pure function of ``(lengths, config, seed, e)``.
    last_batch : {'fill', 'keep', 'discard', 'rollover'}
        A bucket's last, partial step: ``'fill'`` pads it to full batches with fill rows (weight
        0, static shapes); ``'keep'`` yields smaller batches (a rank with no example left gets one
        fill row); ``'discard'`` drops it (``num_dropped`` counts the examples); ``'rollover'``
        carries it into the next epoch, where it comes first: bucket k's examples form the
        stream ``perm_k(0) ++ perm_k(1) ++ ...`` cut into full steps, and epoch ``e`` plays steps
        ``floor(e*n_k/U)`` to ``floor((e+1)*n_k/U)`` with ``U = batch_size_k * num_shards``,
        so every example is played exactly once per pass (a batch may span passes).
    num_shards, shard_index : int
        Data-parallel ranks. All ranks get the same number of steps and the same bucket at each
        step; examples are split so each is seen on exactly one rank per epoch. The state does
        not depend on ``shard_index``, so one checkpoint restores every rank.
    on_overflow : {'error', 'truncate', 'drop'}
        Policy for sequences longer than the largest bucket (see ``BucketPlan.assign``).
    bucket_ids : array_like of int, optional
        Precomputed bucket of each example (-1 = dropped), e.g. ``plan.example_buckets``: the
        sampler then does not assign the lengths again (``lengths``, when also given, still
        fingerprint the data).
    fingerprint_extra : dict, optional
        More JSON-able fields a saved state must match (e.g. the loader's ``task``).

    Examples
    --------
    >>> import numpy as np
    >>> from bucketrnn.data.plan import plan_buckets
    >>> lengths = np.array([3, 5, 4, 9, 8, 2, 7])
    >>> plan = plan_buckets(lengths, num_buckets=2, strategy="fixed", batch_size=2,
    ...                     boundaries=(5, 9))
    >>> sampler = BucketBatchSampler(lengths, plan, seed=1)
    >>> len(sampler)
    4
    >>> sorted(i for batch in sampler for i in batch if i >= 0)
    [0, 1, 2, 3, 4, 5, 6]
    """

    def __init__(self, lengths, plan: BucketPlan, shuffle: bool = True, seed: int = 0,
                 last_batch: str = "fill", num_shards: int = 1, shard_index: int = 0,
                 on_overflow: str = "error", bucket_ids=None,
                 fingerprint_extra: dict | None = None):
        for attr in ("keys", "batch_sizes", "assign"):
            if not hasattr(plan, attr):
                raise TypeError(f"plan must be a BucketPlan, got plan={type(plan).__name__}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got shuffle={shuffle!r}")
        self._seed = check_int("seed", seed, 0)
        self.shuffle = bool(shuffle)
        self.last_batch = check_choice("last_batch", last_batch, LAST_BATCH)
        self.on_overflow = check_choice("on_overflow", on_overflow, ON_OVERFLOW)
        self.num_shards = check_int("num_shards", num_shards, 1)
        self.shard_index = check_int("shard_index", shard_index, 0, self.num_shards)
        self.plan = plan
        self.batch_sizes = tuple(_bucket_batch_size(k, b) for k, b in enumerate(plan.batch_sizes))
        num_buckets = len(self.batch_sizes)

        if bucket_ids is None and lengths is None:
            raise TypeError("pass lengths or bucket_ids, got lengths=None and bucket_ids=None")
        if lengths is not None:
            lengths = check_lengths(lengths)
        if bucket_ids is None:
            ids = np.asarray(plan.assign(lengths, on_overflow=self.on_overflow), dtype=np.int64)
        else:
            ids = np.asarray(bucket_ids)
            if ids.dtype.kind not in "iu" or ids.ndim != 1:
                raise TypeError(f"bucket_ids must be a 1-d int array, got dtype={ids.dtype} "
                                f"shape={ids.shape}")
            ids = ids.astype(np.int64)
            if lengths is not None and ids.size != lengths.shape[0]:
                raise ValueError(f"bucket_ids has {ids.size} entries for {lengths.shape[0]} "
                                 "lengths: one bucket per example")
        data_digest = _digest(lengths if lengths is not None else ids)
        if ids.size == 0:
            raise ValueError(EMPTY_DATASET)
        bad = np.flatnonzero((ids < -1) | (ids >= num_buckets))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"bucket_ids[{i}]={int(ids[i])} is not a bucket of a plan with "
                             f"{num_buckets} buckets (-1 means dropped)")
        self.bucket_ids = ids
        order = np.argsort(ids, kind="stable")
        counts = np.bincount(ids[ids >= 0], minlength=num_buckets)
        start = int((ids < 0).sum())
        self.num_overflow_dropped = start
        self._members = np.split(order[start:], np.cumsum(counts)[:-1])
        self._fingerprint = {
            "data": data_digest,
            "plan": plan.fingerprint() if hasattr(plan, "fingerprint") else repr(plan.keys),
            "shuffle": self.shuffle,
            "last_batch": self.last_batch,
            "num_shards": self.num_shards,
            "on_overflow": self.on_overflow,
            **dict(fingerprint_extra or {}),
        }
        self._epoch = 0
        self._step = 0
        self._cache = {}

    # ----------------------------------------------------------------- schedule
    def _perm(self, epoch, k):
        members = self._members[k]
        if not self.shuffle:
            return members
        return _rng(self._seed, epoch, 0, k).permutation(members)

    def _bucket_steps(self, epoch, k, rank=None):
        """Batches of bucket ``k`` for ``rank`` (default: this one) in ``epoch``, and examples
        dropped. The one place the tail policy and the split over ranks are decided."""
        n, batch, shards = len(self._members[k]), self.batch_sizes[k], self.num_shards
        rank = self.shard_index if rank is None else rank
        unit = batch * shards
        if n == 0:
            return [], 0
        if self.last_batch == "rollover":
            lo, hi = (epoch * n) // unit, ((epoch + 1) * n) // unit
            if hi == lo:
                return [], 0
            first, last = lo * unit // n, (hi * unit - 1) // n
            stream = np.concatenate([self._perm(e, k) for e in range(first, last + 1)])
            offset = lo * unit - first * n
            full = stream[offset:offset + (hi - lo) * unit].reshape(hi - lo, shards, batch)
            return list(full[:, rank]), 0
        perm = self._perm(epoch, k)
        q, rem = divmod(n, unit)
        batches = list(perm[:q * unit].reshape(q, shards, batch)[:, rank])
        if rem == 0:
            return batches, 0
        if self.last_batch == "discard":
            return batches, rem
        tail = perm[q * unit:]
        part = np.array_split(tail, shards)[rank]
        source = part[0] if part.size else tail[0]
        size = batch if self.last_batch == "fill" else max(part.size, 1)
        filler = np.full(size - part.size, fill_slot(source), dtype=np.int64)
        batches.append(np.concatenate([part, filler]))
        return batches, 0

    def _schedule(self, epoch):
        """``(batches, bucket of each batch, examples dropped)`` for this rank in ``epoch``."""
        cached = self._cache.get((self._seed, epoch))
        if cached is not None:
            return cached
        batches, buckets, dropped = [], [], self.num_overflow_dropped
        for k in range(len(self._members)):
            steps, lost = self._bucket_steps(epoch, k)
            batches.extend(steps)
            buckets.extend([k] * len(steps))
            dropped += lost
        buckets = np.asarray(buckets, dtype=np.int64)
        if self.shuffle:
            # A random interleaving of the buckets that keeps each bucket's own steps in stream
            # order (its examples are shuffled already), so a rolled-over tail leads its bucket
            # in the next epoch. It depends on (seed, epoch) only: the same on every rank.
            labels = buckets[_rng(self._seed, epoch, 1).permutation(len(batches))]
            order = np.empty(len(batches), dtype=np.int64)
            order[np.argsort(labels, kind="stable")] = np.arange(len(batches))
            batches = [batches[i] for i in order]
            buckets = labels
        result = (batches, buckets, dropped)
        # Two entries: the epoch being played and the one a finished position points to.
        self._cache = {**dict(list(self._cache.items())[-1:]), (self._seed, epoch): result}
        return result

    def batches(self, epoch=None, start=0):
        """Iterate the batches of ``epoch`` (default: the current one) from step ``start``.

        Does not move the sampler's position. Fill rows are :class:`FillSlot` objects.
        """
        epoch = self._epoch if epoch is None else check_int("epoch", epoch, 0)
        for batch in self._schedule(epoch)[0][start:]:
            slots = batch.tolist()
            if slots and min(slots) < 0:
                slots = [s if s >= 0 else FillSlot(fill_slot(s)) for s in slots]
            yield slots

    def buckets(self, epoch=None) -> np.ndarray:
        """Bucket index of every step of ``epoch`` (default: the current one)."""
        epoch = self._epoch if epoch is None else check_int("epoch", epoch, 0)
        return self._schedule(epoch)[1].copy()

    def num_batches(self, epoch=None) -> int:
        """Number of batches this rank yields in ``epoch`` (default: the current one)."""
        epoch = self._epoch if epoch is None else check_int("epoch", epoch, 0)
        return len(self._schedule(epoch)[0])

    @property
    def bucket_sizes(self) -> tuple:
        """Examples in each bucket (overflow ``'drop'`` left out), before sharding."""
        return tuple(len(m) for m in self._members)

    def real_rows_per_rank(self, epoch=None) -> np.ndarray:
        """Real (non-fill) examples each rank trains on in ``epoch`` (default: the current
        one), ``(num_shards,)``: what every rank computes the same way, from the plan alone."""
        epoch = self._epoch if epoch is None else check_int("epoch", epoch, 0)
        real = np.zeros(self.num_shards, dtype=np.int64)
        for rank in range(self.num_shards):
            for k in range(len(self._members)):
                steps, _ = self._bucket_steps(epoch, k, rank)
                real[rank] += sum(int((np.asarray(s) >= 0).sum()) for s in steps)
        return real

    # ----------------------------------------------------------------- position
    def seek(self, epoch, step) -> None:
        """Move to ``step`` of ``epoch``: the next batch played is that one.

        A position at or past the end of an epoch's batches is the start of the next epoch, so
        a state saved after the last batch resumes into the next epoch, as an uninterrupted run
        would.
        """
        epoch = check_int("epoch", epoch, 0)
        step = check_int("step", step, 0)
        if step > 0 and step >= len(self._schedule(epoch)[0]):
            epoch, step = epoch + 1, 0
        self._epoch, self._step = epoch, step

    def end_epoch(self, epoch) -> None:
        """An iteration over ``epoch`` ended: an epoch with no batches for this rank is over
        at once (the position moves to the next one); otherwise nothing changes."""
        if (self._epoch, self._step) == (epoch, 0) and self.num_batches(epoch) == 0:
            self.seek(epoch + 1, 0)

    @property
    def epoch(self) -> int:
        """Epoch of the next batch."""
        return self._epoch

    @property
    def step(self) -> int:
        """Step (within the epoch) of the next batch."""
        return self._step

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def num_dropped(self) -> int:
        """Examples not played in the current epoch on any rank: overflow ``'drop'`` and
        ``last_batch='discard'`` (a rolled-over tail is played later, not dropped)."""
        return self._schedule(self.epoch)[2]

    def set_epoch(self, epoch):
        """Move to the start of ``epoch``.

        Setting the epoch the sampler is already in keeps its position, so a training loop that
        calls ``set_epoch`` at the top of every epoch does not rewind a resumed sampler.
        """
        epoch = check_int("epoch", epoch, 0)
        if epoch != self.epoch:
            self.seek(epoch, 0)

    def __len__(self):
        return self.num_batches()

    def __iter__(self):
        epoch, step = self._epoch, self._step
        for batch in self.batches(epoch, step):
            step += 1
            # Move before handing the batch out: a state saved while it is being used resumes
            # after it.
            self.seek(epoch, step)
            yield batch
        self.end_epoch(epoch)

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Tiny resumable state: ``version, seed, epoch, step`` and a fingerprint of the data
        and config."""
        epoch, step = self._epoch, self._step
        return {"version": STATE_VERSION, "seed": self._seed, "epoch": epoch, "step": step,
                "fingerprint": dict(self._fingerprint)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a position in O(1); refuse state made for other data, another config or
        another seed, and state with damaged fields.

        Raises
        ------
        StateMismatchError
            Unknown version, a fingerprint or seed that differs (the message names the fields,
            saved and here), or an epoch or step that is not a position of this schedule.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        keys = sorted(state)
        if keys != sorted(_STATE_KEYS):
            raise StateMismatchError(f"sampler state must have keys {sorted(_STATE_KEYS)}, "
                                     f"got {keys}")
        version = state["version"]
        if isinstance(version, bool) or version != STATE_VERSION:
            raise StateMismatchError(f"sampler state version {version!r} is not supported "
                                     f"(this bucketrnn reads version {STATE_VERSION})")
        theirs, ours = state["fingerprint"], self._fingerprint
        if not isinstance(theirs, dict):
            raise StateMismatchError(f"sampler state fingerprint must be a dict, got "
                                     f"{type(theirs).__name__}: the state is damaged")
        diff = differences(theirs, ours, "state", "here")
        if diff:
            raise StateMismatchError("sampler state was made for another dataset or "
                                     "configuration; differs in " + "; ".join(diff))
        seed = _state_int(state, "seed", high=max(self._seed, _STATE_INT_MAX))
        epoch, step = _state_int(state, "epoch"), _state_int(state, "step")
        if seed != self._seed:
            # Adopting the saved seed would play another schedule than the one asked for.
            raise StateMismatchError(
                f"sampler state was made with another seed; differs in seed: state {seed}, here "
                f"{self._seed}. Build the sampler (or loader) with seed={seed} to resume that "
                "run, or start afresh without the state")
        total = self.num_batches(epoch)
        if step > total:
            raise StateMismatchError(f"sampler state step={step} is past the end of epoch "
                                     f"{epoch}, which has {total} batches")
        self.seek(epoch, step)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def __repr__(self):
        epoch, step = self._epoch, self._step
        return (f"{type(self).__name__}(examples={self.bucket_ids.size}, "
                f"buckets={len(self.batch_sizes)}, batch_sizes={self.batch_sizes}, "
                f"shuffle={self.shuffle}, seed={self._seed}, last_batch={self.last_batch!r}, "
                f"shard={self.shard_index}/{self.num_shards}, epoch={epoch}, step={step}/"
                f"{self.num_batches(epoch)})")
