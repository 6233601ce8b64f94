"""Batch assembly: pad each batch to its bucket length, never to the batch maximum.

The product of this stage is a :class:`Batch`: a few arrays with static shapes
``(batch_size_of_bucket, bucket_length, ...)`` plus the bookkeeping a training step needs
(which rows are real, how long each row is, which dataset examples they are).

Size: about 700 lines: :class:`Batch`, the slot dataset and :class:`PadToBucket` with its
assembly per task and the host-side id checks. The assembly per task is the one place left that
branches on task names (:mod:`bucketrnn.tasks` owns everything else a task means).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from numbers import Real
from typing import Any

import numpy as np

from bucketrnn.data.sampler import FillSlot, decode_slots, fill_slot
from bucketrnn.tasks import TASK_NAMES
from bucketrnn.validation import check_int, empty_sequence

__all__ = ["Batch", "PadToBucket", "SlotDataset", "TASKS", "check_batch_ids", "check_pad_val",
           "ids_checked_against", "to_ndarray"]


@dataclass
class Batch:
    """One padded batch of a bucket.

    Attributes
    ----------
    bucket_key : int or tuple of int
        The padded length of the bucket (``(src_len, tgt_len)`` for sequence pairs). All batches
        of a bucket share it, and :class:`~bucketrnn.GraphCache` keys its graphs on it.
    data : mxnet.nd.NDArray
        ``int32`` token ids shaped ``(B, L)`` or ``float32`` features shaped ``(B, L, F)``.
    valid_length : mxnet.nd.NDArray
        ``int32`` ``(B,)``: real length of each row (fill rows repeat a real row's length).
    label : mxnet.nd.NDArray or None
        Class labels ``(B,)``, next-token targets ``(B, L)`` for language modelling (padded
        positions hold 0 and are masked by ``valid_length``), padded targets ``(B, Lt)``
        for sequence pairs, or ``int32`` per-token tags ``(B, L)`` for tagging (padded
        positions hold 0, masked by ``valid_length``).
    weight : mxnet.nd.NDArray
        ``float32`` ``(B,)``: 1 for a real row, 0 for a fill row added to keep the shape static.
    indices : numpy.ndarray
        ``int64`` ``(B,)``: dataset index of each row, -1 for fill rows.
    label_length : mxnet.nd.NDArray or None
        ``int32`` ``(B,)`` target lengths, for sequence pairs only.
    meta : dict
        Host-side facts of a batch made by :class:`PadToBucket`: ``bucket`` (index in the
        plan), real ``rows``, real ``tokens`` and padded ``slots`` (``target_tokens`` and
        ``target_slots`` too for pairs); the loader adds ``epoch`` and ``step``.
    """

    bucket_key: Any
    data: Any
    valid_length: Any
    label: Any
    weight: Any
    indices: np.ndarray
    label_length: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.data.shape[0])

    @property
    def num_real(self) -> int:
        """Number of real (non-fill) rows."""
        return int((np.asarray(self.indices) >= 0).sum())

    def as_in_context(self, ctx) -> "Batch":
        """Copy of the batch with every array on ``ctx`` (an ``mx.Context``)."""

        return self._map_arrays(lambda x: None if x is None else x.as_in_context(ctx))

    def _map_arrays(self, fn) -> "Batch":
        return replace(self, meta=dict(self.meta),
                       **{name: fn(getattr(self, name)) for name in _ARRAY_FIELDS})


_ARRAY_FIELDS = ("data", "valid_length", "label", "weight", "label_length")


# None: float feature sequences with no target (the user's own loss decides the rest).
TASKS = TASK_NAMES + (None,)
_INT32_MAX = np.iinfo(np.int32).max
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _counts(fields: dict, real: np.ndarray) -> dict:
    """What a batch holds, counted on the host while its arrays are numpy, so that nobody has
    to copy them back from a device to count: real ``rows``, real ``tokens`` (valid steps of
    real rows) and padded ``slots`` (rows x steps), and for pairs the same of the targets."""
    out = {"rows": int(real.sum()), "tokens": int(fields["valid_length"][real].sum()),
           "slots": int(np.prod(fields["data"].shape[:2]))}
    if fields.get("label_length") is not None:
        out.update(target_tokens=int(fields["label_length"][real].sum()),
                   target_slots=int(np.prod(fields["label"].shape[:2])))
    return out


def check_pad_val(pad_val, features: bool | None):
    """Refuse a ``pad_val`` that does not fit the padded array's dtype.

    Token ids are ``int32`` and a pad is an id the embedding looks up (its positions are
    masked), so it must be a whole number in ``[0, 2**31 - 1]``; ``float32`` features take any
    finite float32. ``features=None`` (not known yet) checks what both need. Returns
    ``pad_val``.

    >>> check_pad_val(0, features=False)
    0
    >>> check_pad_val(1.5, features=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: pad_val=1.5 does not fit int32 token ids: ... e.g. pad_val=0
    """
    if isinstance(pad_val, (bool, np.bool_)) or not isinstance(pad_val, Real):
        raise TypeError(f"pad_val must be a number, got pad_val={pad_val!r}")
    value = float(pad_val)
    if features is not False:
        if not (math.isfinite(value) and abs(value) <= _FLOAT32_MAX):
            what = "float32 features" if features else "the data (int32 ids or float32 features)"
            raise ValueError(f"pad_val={pad_val!r} does not fit {what}: give a finite value, "
                             "e.g. pad_val=0")
    elif not (math.isfinite(value) and value.is_integer() and 0 <= pad_val <= _INT32_MAX):
        raise ValueError(f"pad_val={pad_val!r} does not fit int32 token ids: it must be a whole "
                         f"number in [0, {_INT32_MAX}] (an id the embedding can look up; padded "
                         "positions are masked), e.g. pad_val=0")
    return pad_val


def _limit(name, value):
    """``vocab_size`` or ``num_classes``: None or an integer >= 1 (the library's integer rule)."""
    return check_int(name, value, low=1, allow_none=True)


def _out_of_range(values, index, high, what, arg):
    """Raise naming the first row of ``values`` (rows = examples ``index``) outside
    ``[0, high)``; vectorised min/max first, the row search only on failure."""
    if values.size == 0 or (values.min() >= 0 and values.max() < high):
        return
    rows = values.reshape(len(values), -1)
    bad = (rows < 0) | (rows >= high)
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    value = rows[row][bad[row]][0]
    raise ValueError(f"example {int(index[row])} has {what} {value.item()!r}, outside [0, {high}) "
                     f"for {arg}={high}: {_FIXES[arg]}")


_FIXES = {
    "vocab_size": "encode the data with the model's vocabulary, or give the vocab_size the "
                  "model was built with",
    "target vocab_size": "encode the targets with the model's target vocabulary, or give the "
                         "vocab_size the model was built with",
    "num_classes": "labels must be class indices 0 .. num_classes - 1",
}


def check_batch_ids(batch: Batch, vocab_size=None, num_classes=None) -> None:
    """Refuse a batch whose token ids or labels a model of ``vocab_size`` / ``num_classes``
    would clip (MXNet's embedding and ``pick`` clip out-of-range ids silently on CPU).

    The rules of :class:`PadToBucket`'s check, from the model's side (no task needed): integer
    ``data`` holds token ids in ``[0, source vocab_size)`` (float features hold none); with
    ``num_classes`` the ``label`` holds whole-number class ids (or per-token tags) in
    ``[0, num_classes)``, else integer targets are token ids in ``[0, target vocab_size)``
    (``vocab_size`` is ``(source, target)`` for sequence pairs). Only real rows are read (fill
    rows repeat one); the ``ValueError`` names the dataset index and the value. Costs one copy
    of ``data`` and ``label`` to the host.

    >>> import numpy as np
    >>> b = Batch(3, np.array([[1, 2, 3], [4, 12, 1]]), np.array([3, 3]),
    ...           np.array([[2, 3, 0], [12, 1, 0]]), np.ones(2), np.array([7, 8]))
    >>> check_batch_ids(b, vocab_size=10)
    Traceback (most recent call last):
    ...
    ValueError: example 8 has token id 12, outside [0, 10) for vocab_size=10: ...
    """
    real = np.asarray(batch.indices) >= 0
    index = np.asarray(batch.indices)[real]
    pair = isinstance(vocab_size, (tuple, list))
    source, target = vocab_size if pair else (vocab_size, vocab_size)
    if source is not None and batch.data is not None:
        data = _numpy(batch.data)[real]
        if data.dtype.kind != "f":
            _out_of_range(data, index, source, "token id", "vocab_size")
    if batch.label is None:
        return
    if num_classes is not None:
        label = _numpy(batch.label)[real]
        if label.dtype.kind == "f":
            bad = ~np.isfinite(label) | (label != np.floor(label))
            if bad.any():
                row = int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])
                value = label[row][bad[row]].reshape(-1)[0]
                raise ValueError(f"example {int(index[row])} has label {value.item()!r}; "
                                 f"num_classes={num_classes} needs whole-number class labels")
        _out_of_range(label, index, num_classes, "label" if label.ndim == 1 else "tag",
                      "num_classes")
    elif target is not None:
        label = _numpy(batch.label)[real]
        if label.dtype.kind != "f":
            _out_of_range(label, index, target, "target token id" if pair else "token id",
                          "target vocab_size" if pair else "vocab_size")


def ids_checked_against(batch: Batch, vocab_size=None, num_classes=None) -> bool:
    """Whether the loader that made ``batch`` already checked its ids against these limits or
    tighter ones (``batch.meta["ids_checked"]``, set by :class:`PadToBucket`): then
    :func:`check_batch_ids` would find nothing, and the graphs skip it."""
    checked = batch.meta.get("ids_checked")
    if checked is None:
        return False
    for mine, theirs in zip((vocab_size, num_classes), checked):
        if mine is None:
            continue
        if theirs is None or isinstance(mine, tuple) != isinstance(theirs, tuple):
            return False
        pairs = zip(mine, theirs) if isinstance(mine, tuple) else ((mine, theirs),)
        if any(t > m for m, t in pairs):
            return False
    return True


def to_ndarray(batch: Batch, ctx=None) -> Batch:
    """The batch with its numpy fields as ``mx.nd.NDArray`` (on ``ctx`` if given).

    The arrays are fresh per batch, so MXNet takes them over without a copy
    (``from_numpy(zero_copy=True)``, a third of the cost of ``mx.nd.array``).
    """
    import mxnet as mx

    def convert(x):
        if not isinstance(x, np.ndarray):
            return x
        out = mx.nd.from_numpy(np.ascontiguousarray(x), zero_copy=True)
        return out if ctx is None or ctx == mx.cpu() else out.as_in_context(ctx)

    return batch._map_arrays(convert)


class _FlatSource:
    """Flat tokens, offsets (and labels) of a FlatSequences-like dataset, shared by reference."""

    __slots__ = ("tokens", "offsets", "labels", "tags")

    def __init__(self, tokens, offsets, labels=None, tags=None):
        self.tokens, self.offsets, self.labels, self.tags = tokens, offsets, labels, tags


class SlotDataset:
    """Dataset view that answers a sampler slot with ``(slot, bucket, example)``.

    :class:`~bucketrnn.data.sampler.BucketBatchSampler` yields slots: an int ``i >= 0`` is example
    ``i``; a :class:`~bucketrnn.data.sampler.FillSlot` (or its int code ``slot < 0``) a fill row
    copying example ``-1 - slot``, answered with the int code. Keeping ``bucket_ids`` here (the
    dataset goes to each worker once) rather than in the batchify function (pickled with every
    batch) keeps the per-batch traffic small. For a dataset with flat ``tokens`` and
    ``offsets`` arrays (:class:`~bucketrnn.data.datasets.FlatSequences`) the example is a reference
    to those arrays, so :class:`PadToBucket` can gather the whole batch in one fancy-indexing
    step.

    Parameters
    ----------
    dataset : sequence or gluon Dataset
        Supports ``len`` and ``dataset[i]``.
    bucket_ids : numpy.ndarray
        ``int64`` ``(N,)`` bucket of each example (``BucketBatchSampler.bucket_ids``).

    Examples
    --------
    >>> import numpy as np
    >>> ds = SlotDataset([[1, 2], [3, 4, 5]], np.array([0, 1]))
    >>> ds[1], ds[-1], ds[FillSlot(1)]
    ((1, 1, [3, 4, 5]), (-1, 0, [1, 2]), (-2, 1, [3, 4, 5]))
    """

    def __init__(self, dataset, bucket_ids):
        self.dataset = dataset
        self.bucket_ids = np.asarray(bucket_ids, dtype=np.int64)
        if len(dataset) != self.bucket_ids.size:
            raise ValueError(f"bucket_ids has {self.bucket_ids.size} entries for a dataset of "
                             f"{len(dataset)} examples")
        tokens, offsets = getattr(dataset, "tokens", None), getattr(dataset, "offsets", None)
        self._flat = None
        if isinstance(tokens, np.ndarray) and isinstance(offsets, np.ndarray):
            self._flat = _FlatSource(tokens, offsets, getattr(dataset, "labels", None),
                                     getattr(dataset, "tags", None))

    def __len__(self):
        return self.bucket_ids.size

    def __getitem__(self, slot):
        if isinstance(slot, FillSlot):
            slot = slot.code
        index = slot if slot >= 0 else fill_slot(slot)
        example = self._flat if self._flat is not None else self.dataset[index]
        return slot, int(self.bucket_ids[index]), example


def _numpy(x):
    """An example's array as numpy (gluon datasets may hold mx.nd.NDArray)."""
    return x.asnumpy() if hasattr(x, "asnumpy") else x


def _pad_rows(rows, lengths, width, index, pad_val, feature_dim=None, dtype=np.int32):
    """Stack variable-length rows into ``(B, width[, F])``; rows longer than width are cut."""
    if (lengths > width).any():
        rows = [r[:width] for r in rows]
        lengths = np.minimum(lengths, width)
    mask = np.arange(width) < lengths[:, None]
    try:
        flat = np.concatenate([np.asarray(r) for r in rows])
    except ValueError:
        if feature_dim is None:  # rows of different ranks: name the odd one
            _as_ids(np.empty(0, dtype=object), rows, index)
        raise
    shape = (len(rows), width) if feature_dim is None else (len(rows), width, feature_dim)
    out = np.full(shape, pad_val, dtype=dtype)
    if feature_dim is None:
        flat = _as_ids(flat, rows, index)
    out[mask] = flat[:int(lengths.sum())]
    return out, lengths


def _as_ids(flat, rows, index):
    """Token ids as integers: integer dtypes, or floats holding whole numbers (MXNet's usual
    float32 storage); anything else raises naming the example."""
    if flat.dtype.kind == "f" and flat.ndim == 1 and np.isfinite(flat).all() \
            and (flat == np.floor(flat)).all():
        flat = flat.astype(np.int64)
    if flat.dtype.kind in "iu" and flat.ndim == 1:
        if flat.size and (flat.min() < 0 or flat.max() > _INT32_MAX):
            for i, r in zip(index, rows):
                r = np.asarray(r)
                if r.size and (r.min() < 0 or r.max() > _INT32_MAX):
                    bad = r[(r < 0) | (r > _INT32_MAX)][0]
                    raise ValueError(f"example {i} has token id {bad}; token ids must be in "
                                     f"[0, {_INT32_MAX}]")
        return flat
    for i, r in zip(index, rows):
        r = np.asarray(r)
        if r.dtype.kind == "f" and r.ndim == 1:
            bad = r[~np.isfinite(r) | (r != np.floor(r))]
            if bad.size:
                raise TypeError(f"example {i} has non-integer token id {bad[0]!r}; token ids "
                                "must be whole numbers (give features as (T, F) arrays)")
        elif r.dtype.kind not in "iu" or r.ndim != 1:
            raise TypeError(f"example {i} has token ids of dtype {r.dtype} and shape "
                            f"{r.shape} (e.g. {r.ravel()[:3].tolist()!r}); token ids must be a "
                            "1-d sequence of integers")
    raise TypeError(f"token ids must be integers, got dtype {flat.dtype}")


def _same_lengths(inputs, targets, index):
    """One tag per token, or a ``ValueError`` naming the example."""
    for i, x, y in zip(index, inputs, targets):
        n, m = len(x), (len(y) if hasattr(y, "__len__") else -1)
        if n != m:
            tags = f"{m} tags" if m >= 0 else f"tags {y!r} (not a sequence)"
            raise ValueError(f"example {int(i)} has {n} tokens but {tags}; task='tag' needs "
                             "exactly one tag per token")


def _pad_tags(targets, lengths, width, index):
    """``int32`` ``(B, width)`` tags, 0 past each row's (possibly cut) length."""
    rows = []
    for i, y in zip(index, targets):
        y = np.asarray(_numpy(y))
        if y.dtype.kind == "f" and y.ndim == 1 and np.isfinite(y).all() \
                and (y == np.floor(y)).all():
            y = y.astype(np.int64)
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise TypeError(f"example {int(i)} has tags of dtype {y.dtype} and shape {y.shape} "
                            f"(e.g. {y.ravel()[:3].tolist()!r}); task='tag' needs one integer "
                            "class id per token (map tag names to ids with a class map)")
        if y.size and (y.min() < 0 or y.max() > _INT32_MAX):
            bad = y[(y < 0) | (y > _INT32_MAX)][0]
            raise ValueError(f"example {int(i)} has tag {bad.item()!r}; tags are class ids in "
                             f"[0, num_classes)")
        rows.append(y[:width])
    out = np.zeros((len(rows), width), dtype=np.int32)
    out[np.arange(width) < lengths[:, None]] = np.concatenate(rows)
    return out


def _gather_tags(flat, index, width, lengths):
    """The tags of a flat dataset's rows, gathered like their tokens (``lengths`` already cut
    to ``width``)."""
    starts = flat.offsets[index]
    steps = np.arange(width)
    mask = steps < lengths[:, None]
    pos = np.where(mask, starts[:, None] + steps, 0)
    return np.where(mask, flat.tags[pos], 0).astype(np.int32)


class PadToBucket:
    """Batchify function: pad a batch to its bucket's length and return a :class:`Batch`.

    Every row is padded to the bucket key, not the batch maximum, so all batches of a bucket
    share one shape; ``batch.meta["bucket"]`` is the bucket's index in ``keys``. Small and
    picklable: use it as gluon ``DataLoader(batchify_fn=...)`` over a :class:`SlotDataset`.

    Parameters
    ----------
    keys : tuple
        ``plan.keys``: padded length of each bucket, ``(src_len, tgt_len)`` for pairs.
    task : {'lm', 'classify', 'seq2seq', 'tag', None}
        ``'lm'``: an example ``seq`` gives ``data = seq[:-1]``, ``label = seq[1:]`` and
        ``valid_length = len(seq) - 1``, so ``keys`` are lengths of ``data``.
        ``'classify'``: examples are ``(sequence, label)``. ``'seq2seq'``: examples are
        ``(src, tgt)``; ``label`` is ``tgt`` padded to the target key, with ``label_length``.
        ``'tag'``: examples are ``(sequence, tags)`` with one integer tag (class id) per
        token; ``label`` is the tags padded like ``data`` (``int32`` ``(B, key)``), and a row
        whose tags are not as long as its tokens raises naming the example.
        None: examples are sequences, ``label`` is None.
    pad_val : int or float
        Value of padded positions in ``data`` (``label`` padding, the label pad, is always 0:
        it is masked by ``valid_length``).
    truncate : bool
        Cut rows longer than their bucket (``on_overflow='truncate'``); otherwise they raise.
    output : {'ndarray', 'numpy'}
        Array type of the Batch fields (``indices`` is always numpy). DataLoader workers should
        return ``'numpy'`` and let the main process call :func:`to_ndarray`: pickled numpy
        crosses the process boundary faster than MXNet's shared-memory NDArrays, which pay for
        a shared-memory segment per array.
    vocab_size : int or (int, int), optional
        Check every batch's token ids (``data``, and the targets of ``'lm'`` and
        ``'seq2seq'``; a ``(source, target)`` pair for ``'seq2seq'``) are in
        ``[0, vocab_size)``, on the numpy batch: a ``ValueError`` names the dataset index.
    num_classes : int, optional
        Check ``'classify'`` labels are whole numbers in ``[0, num_classes)``, and ``'tag'``
        tags are in ``[0, num_classes)``.

    Examples
    --------
    >>> pad = PadToBucket(keys=(4, 8), task=None)
    >>> batch = pad([(0, 0, [1, 2, 3]), (1, 0, [4, 5]), (-2, 0, [4, 5])])
    >>> batch.data.asnumpy().tolist()
    [[1, 2, 3, 0], [4, 5, 0, 0], [4, 5, 0, 0]]
    >>> batch.weight.asnumpy().tolist(), batch.indices.tolist()
    ([1.0, 1.0, 0.0], [0, 1, -1])
    """

    def __init__(self, keys: Sequence, task: str | None = None, pad_val: int | float = 0,
                 truncate: bool = False, output: str = "ndarray",
                 vocab_size: int | tuple[int, int] | None = None, num_classes: int | None = None):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got task={task!r}")
        if output not in ("ndarray", "numpy"):
            raise ValueError(f"output must be 'ndarray' or 'numpy', got output={output!r}")
        keys = tuple(keys)
        if not keys:
            raise ValueError("keys must name at least one bucket, got keys=()")
        pairs = isinstance(keys[0], tuple)
        if pairs != (task == "seq2seq"):
            raise ValueError(f"task={task!r} needs {'(src, tgt)' if task == 'seq2seq' else 'int'}"
                             f" bucket keys, got keys={keys!r}")
        # Token ids or features: known here for 'lm' only, otherwise at each batch.
        check_pad_val(pad_val, features=False if task == "lm" else None)
        self.keys, self.task, self.pad_val = keys, task, pad_val
        self.truncate, self.output = bool(truncate), output
        self.vocab_size = self.num_classes = None
        self.set_id_limits(vocab_size, num_classes)

    def set_id_limits(self, vocab_size=None, num_classes=None):
        """Install (or, with None, remove) the token-id and label range checks.

        See the ``vocab_size`` and ``num_classes`` parameters. ``pad_val`` must be a token id
        below ``vocab_size``.
        """
        pair = isinstance(vocab_size, (tuple, list))
        if pair and (self.task != "seq2seq" or len(vocab_size) != 2):
            raise ValueError(f"vocab_size must be an int (a (source, target) pair for task="
                             f"'seq2seq' only), got vocab_size={vocab_size!r}")
        vocab = tuple(_limit("vocab_size", v) for v in vocab_size) if pair \
            else _limit("vocab_size", vocab_size)
        classes = _limit("num_classes", num_classes)
        if classes is not None and self.task not in ("classify", "tag"):
            raise ValueError(f"num_classes is for task='classify' labels and task='tag' tags, "
                             f"got num_classes={num_classes!r} with task={self.task!r}")
        source = vocab[0] if pair else vocab
        if source is not None and isinstance(self.pad_val, Real) \
                and not 0 <= self.pad_val < source:
            raise ValueError(f"pad_val={self.pad_val!r} is not a token id of vocab_size={source}:"
                             f" give a pad_val in [0, {source}), e.g. pad_val=0")
        self.vocab_size, self.num_classes = vocab, classes

    def __call__(self, items) -> Batch:
        if not items:
            raise ValueError("cannot batchify an empty list of examples")
        slots, buckets, examples = zip(*items)
        slots, buckets = np.array(slots, dtype=np.int64), np.array(buckets, dtype=np.int64)
        if (buckets != buckets[0]).any():
            raise ValueError(f"a batch mixes buckets {sorted(set(buckets.tolist()))}; slots "
                             f"{slots.tolist()}: the sampler must yield one bucket per batch")
        bucket = int(buckets[0])
        if not 0 <= bucket < len(self.keys):
            raise ValueError(f"bucket {bucket} is not one of the {len(self.keys)} buckets (slots "
                             f"{slots.tolist()}); -1 marks examples dropped by on_overflow")
        key = self.keys[bucket]
        index, real = decode_slots(slots)
        try:
            fields = self._assemble(examples, index, key)
        except (ValueError, TypeError) as e:
            if "example" in str(e):
                raise
            raise type(e)(f"bucket {bucket} (key {key}), examples {index.tolist()}: {e}") from e
        self._check_ids(fields, index)
        fields["weight"] = real.astype(np.float32)
        counts = _counts(fields, real)
        batch = self._finish(key, fields, np.where(real, slots, -1))
        batch.meta.update(bucket=bucket, **counts)
        if (self.vocab_size, self.num_classes) != (None, None):
            # What the ids were checked against here, so that graphs of a model with these
            # limits need not check them again (ids_checked_against).
            batch.meta["ids_checked"] = (self.vocab_size, self.num_classes)
        return batch

    def _check_ids(self, fields, index):
        """Token ids and labels against ``vocab_size`` / ``num_classes``, on the numpy batch."""
        vocab, classes = self.vocab_size, self.num_classes
        if vocab is not None:
            source, target = vocab if isinstance(vocab, tuple) else (vocab, vocab)
            if fields["data"].dtype.kind == "f":
                raise ValueError(f"vocab_size={vocab!r} checks token ids, but examples "
                                 f"{index.tolist()} are float features; pass vocab_size=None")
            _out_of_range(fields["data"], index, source, "token id", "vocab_size")
            if self.task == "lm":
                _out_of_range(fields["label"], index, source, "token id", "vocab_size")
            elif self.task == "seq2seq":
                _out_of_range(fields["label"], index, target, "target token id",
                              "target vocab_size" if isinstance(vocab, tuple) else "vocab_size")
        if classes is not None and self.task == "tag":
            _out_of_range(fields["label"], index, classes, "tag", "num_classes")
        elif classes is not None:
            label = fields["label"]
            if label.dtype.kind == "f":
                bad = np.flatnonzero(~np.isfinite(label) | (label != np.floor(label)))
                if bad.size:
                    j = int(bad[0])
                    raise ValueError(f"example {int(index[j])} has label {label[j].item()!r}; "
                                     f"num_classes={classes} needs whole-number class labels")
                fields["label"] = label = label.astype(np.int32)
            _out_of_range(label, index, classes, "label", "num_classes")

    # ------------------------------------------------------------- assembly
    def _assemble(self, examples, index, key):
        task = self.task
        if isinstance(examples[0], _FlatSource):
            flat = examples[0]
            if task == "seq2seq" or (task == "classify" and flat.labels is None):
                raise TypeError(f"task={task!r} needs (data, label) examples; this flat dataset "
                                "has no labels")
            if task == "tag" and flat.tags is None:
                raise TypeError("task='tag' needs (sequence, tags) examples; this flat dataset "
                                "has no tags (FlatSequences(..., tags=))")
            targets = None if task != "classify" else flat.labels[index]
            inputs = examples
        elif task in ("seq2seq", "classify", "tag"):
            for i, ex in zip(index, examples):
                if not (isinstance(ex, (tuple, list)) and len(ex) == 2):
                    raise TypeError(f"task={task!r} expects (data, label) examples; example "
                                    f"{i} is {type(ex).__name__}")
            inputs = [_numpy(ex[0]) for ex in examples]
            targets = [_numpy(ex[1]) for ex in examples]
        else:
            inputs, targets = [_numpy(ex) for ex in examples], None
        width = key[0] if task == "seq2seq" else key + (task == "lm")
        if task == "tag" and targets is not None:
            _same_lengths(inputs, targets, index)
        data, lengths = self._inputs(inputs, index, width)
        fields = {}
        if task == "lm":
            if (lengths < 2).any():
                i = int(index[np.flatnonzero(lengths < 2)[0]])
                raise ValueError(f"example {i} has fewer than 2 tokens; task='lm' needs at "
                                 "least 2 (one input, one target)")
            lengths = lengths - 1
            mask = np.arange(key) < lengths[:, None]
            fields["label"] = np.where(mask, data[:, 1:], 0).astype(np.int32)
            data = np.where(mask, data[:, :-1], self.pad_val).astype(data.dtype)
        elif task == "classify":
            shaped = [j for j, y in enumerate(targets) if np.size(y) != 1]
            if shaped:
                j = shaped[0]
                raise TypeError(f"example {int(index[j])} has a label of shape "
                                f"{np.shape(targets[j])}; task='classify' expects scalar labels")
            label = np.asarray(targets).reshape(len(targets))
            if label.dtype.kind not in "iufb":
                raise TypeError(f"task='classify' expects numeric labels, got dtype "
                                f"{label.dtype} for examples {index.tolist()}")
            fields["label"] = label.astype(np.int32 if label.dtype.kind in "iub" else np.float32)
        elif task == "tag":
            fields["label"] = _gather_tags(inputs[0], index, width, lengths) if targets is None \
                else _pad_tags(targets, lengths, width, index)
        elif task == "seq2seq":
            tlen = self._lengths(targets, index)
            if (tlen > key[1]).any() and not self.truncate:
                self._overflow(index, tlen, key[1], "target ")
            fields["label"], tlen = _pad_rows(targets, tlen, key[1], index, 0)
            fields["label_length"] = tlen.astype(np.int32)
        else:
            fields["label"] = None
        fields["data"], fields["valid_length"] = data, lengths.astype(np.int32)
        return fields

    def _inputs(self, inputs, index, width):
        if isinstance(inputs[0], _FlatSource):
            return self._gather(inputs[0], index, width)
        lengths = self._lengths(inputs, index)
        if (lengths > width).any() and not self.truncate:
            self._overflow(index, lengths, width, "")
        first = np.asarray(inputs[0])
        check_pad_val(self.pad_val, features=first.ndim == 2)
        if first.ndim == 2:
            return self._features(inputs, index, lengths, width)
        return _pad_rows(inputs, lengths, width, index, self.pad_val)

    def _features(self, inputs, index, lengths, width):
        dims = np.fromiter((np.shape(x)[-1] if np.ndim(x) == 2 else -1 for x in inputs),
                           dtype=np.int64, count=len(inputs))
        if (dims != dims[0]).any():
            values, counts = np.unique(dims, return_counts=True)
            expected = values[np.argmax(counts)]  # the odd one out is the likely culprit
            j = int(np.flatnonzero(dims != expected)[0])
            raise ValueError(f"example {int(index[j])} has feature shape "
                             f"{np.shape(inputs[j])}, expected (T, {expected}): ragged feature "
                             "dims")
        data, lengths = _pad_rows(inputs, lengths, width, index, self.pad_val,
                                  feature_dim=int(dims[0]), dtype=np.float32)
        nan = np.isnan(data).any(axis=2)
        if nan.any():
            row, step = np.argwhere(nan)[0]
            raise ValueError(f"example {int(index[row])} has NaN in its features at step "
                             f"{int(step)}")
        return data, lengths

    def _gather(self, flat, index, width):
        # One fancy-indexing gather for the whole batch: no Python object per row.
        check_pad_val(self.pad_val, features=False)
        starts = flat.offsets[index]
        lengths = flat.offsets[index + 1] - starts
        if (lengths < 1).any():
            i = int(index[np.flatnonzero(lengths < 1)[0]])
            raise ValueError(empty_sequence(i))
        if (lengths > width).any():
            if not self.truncate:
                self._overflow(index, lengths, width, "")
            lengths = np.minimum(lengths, width)
        steps = np.arange(width)
        mask = steps < lengths[:, None]
        pos = np.where(mask, starts[:, None] + steps, 0)
        ids = np.where(mask, flat.tokens[pos], 0)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, got flat tokens of dtype {ids.dtype}")
        bad = (ids < 0) | (ids > _INT32_MAX)
        if bad.any():
            row, step = np.argwhere(bad)[0]
            raise ValueError(f"example {int(index[row])} has token id {ids[row, step]}; token "
                             f"ids must be in [0, {_INT32_MAX}]")
        return np.where(mask, ids, self.pad_val).astype(np.int32), lengths

    @staticmethod
    def _lengths(rows, index):
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        if (lengths < 1).any():
            i = int(index[np.flatnonzero(lengths < 1)[0]])
            raise ValueError(empty_sequence(i))
        return lengths

    def _overflow(self, index, lengths, width, what):
        j = int(np.flatnonzero(lengths > width)[0])
        lm = " (bucket key + 1 for task='lm')" if self.task == "lm" and not what else ""
        raise ValueError(f"example {int(index[j])} has {what}length {int(lengths[j])}, longer "
                         f"than its bucket takes ({width}{lm}); use on_overflow='truncate' to "
                         "cut it")

    def _finish(self, key, fields, indices) -> Batch:
        batch = Batch(bucket_key=key, indices=indices, **fields)
        return to_ndarray(batch) if self.output == "ndarray" else batch

    def __repr__(self):
        limits = "".join(f", {name}={value!r}" for name, value in
                         (("vocab_size", self.vocab_size), ("num_classes", self.num_classes))
                         if value is not None)
        return (f"PadToBucket(keys={self.keys}, task={self.task!r}, pad_val={self.pad_val!r}, "
                f"truncate={self.truncate}{limits})")
