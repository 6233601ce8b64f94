"""From a composed config to the objects an experiment runs on: datasets, vocabulary, loaders.

:func:`load_data` builds the datasets and vocabulary a ``dataset`` config describes (and refuses
an outlier line by file and line number); :func:`make_loaders` builds the training loader and
evaluation loaders on the training plan's boundaries, so evaluation reuses the training graphs.
The app (:mod:`bucketrnn.app.run`) and the plan command (:mod:`bucketrnn.app.plan`) share them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

from bucketrnn.app.config import to_dict
from bucketrnn.autoplan import auto_plan
from bucketrnn.data import datasets
from bucketrnn.data import pairs as P
from bucketrnn.data.datasets import OverflowCounts, split_indices
from bucketrnn.data.loader import BucketLoader, evaluation_loader, plan_lengths
from bucketrnn.data.plan import find_outliers
from bucketrnn.data.prepared import PreparedDataset, is_prepared

__all__ = ["Data", "load_data", "make_loaders"]


@dataclass
class Data:
    """Datasets of one experiment (``valid``/``test`` may be None) and what describes them."""

    train: object
    valid: object
    test: object
    vocab: object
    num_classes: int | None
    description: str
    overflow: dict | None = None  # text: lines dropped / truncated and tokens cut (max_length)
    # the class map (id -> name) of a classifier or a tagger; saved as classes.json / tags.json
    # in the run directory (bucketrnn.app.trained reads it)
    classes: list | None = None
    tgt_vocab: object = None  # pairs: the target vocabulary (``vocab`` is the source one)

    @property
    def vocab_size(self):
        """What the loaders check token ids against: an int, or ``(source, target)`` sizes."""
        if self.tgt_vocab is None:
            return len(self.vocab)
        return len(self.vocab), len(self.tgt_vocab)


def _refuse_one_class(label: str, labels, classes) -> None:
    """A classifier learns nothing from one class: refuse training labels that take one value."""
    seen = np.unique(np.asarray(labels))
    if seen.size >= 2:
        return
    if seen.size == 0:
        what = "no sequences"
    elif label == "first_token":
        what = f"every training line starts with {classes[int(seen[0])]!r}"
    else:
        word = label.split(":", 1)[1]
        what = f"every training sequence {'contains' if seen[0] else 'lacks'} {word!r}"
    raise ValueError(f"dataset.label={label!r} gives {seen.size} class in the training split "
                     f"({what}): a classifier needs at least 2 classes; choose another "
                     "dataset.label or data with more than one label")


def _keyed(key: str, value, e: Exception) -> Exception:
    """``e``'s message behind the config key that led to it, as a FileNotFoundError or a
    ValueError: never ``type(e)(message)``, which breaks on exceptions whose constructor takes
    other arguments (UnicodeDecodeError takes five)."""
    cls = FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError
    return cls(f"{key}={value!r}: {e}")


def _read(datasets, key: str, path: str, kw: dict):
    try:
        return datasets.read_lines(path, **kw)
    except (FileNotFoundError, ValueError) as e:
        raise _keyed(key, path, e) from e


def _refuse_outlier_lines(parts, markers: int = 2, prepared: bool = False) -> None:
    """Refuse a line far longer than the rest (:func:`bucketrnn.data.plan.find_outliers`, on
    tokens per line over every split), naming its file and line, before any plan or graph.
    ``markers``: tokens each sequence has beyond its line's (the two ``<eos>`` of
    ``encode_lines``; none for tagged sentences). ``prepared``: the data is a prepared
    directory, whose ``max_length`` is bucketrnn-prepare's."""
    parts = [(ds, key, path) for ds, key, path in parts if ds is not None and len(ds)]
    sizes = [ds.lengths() - markers for ds, _, _ in parts]
    found = find_outliers(np.concatenate(sizes))
    if not found:
        return
    i, top, need = int(found.indices[0]), int(found.lengths[0]), found.rest_max
    part = int(np.searchsorted(np.cumsum([size.size for size in sizes]), i, side="right"))
    ds, key, path = parts[part]
    i -= sum(size.size for size in sizes[:part])
    raise ValueError(
        f"{key}={path!r} line {int(ds.line_numbers[i])} has {top} tokens, far more than the "
        f"rest of the data needs ({need} at most; {found.rule('line')}): "
        f"bucketing it would unroll a {top}-step graph. "
        + (f"Prepare it again with --max-length {need} --on-overflow truncate (keep the first "
           "max_length tokens) or drop (leave such lines out)" if prepared else
           f"Set dataset.max_length={need} with dataset.on_overflow=truncate (keep the first "
           "max_length tokens) or drop (leave such lines out)")
        + "; the run reports how many lines were cut or dropped"
    )


def _part_of(i: int, sizes) -> tuple:
    """``(part, index within it)`` of the ``i``-th item of the concatenated ``sizes`` arrays
    (one per data split), to name an outlier found over all of them by its split's line."""
    part = int(np.searchsorted(np.cumsum([s.size for s in sizes]), i, side="right"))
    return part, i - sum(s.size for s in sizes[:part])


def _load_pairs(d: dict, seed: int) -> Data:
    """``dataset=pairs``: train/valid/test pairs (:mod:`bucketrnn.data.pairs`), vocabularies from
    the training pairs only; a pair far longer than the rest is refused naming its file and
    line."""
    kw = {"tokens": d["tokens"], "max_length": d["max_length"],
          "on_overflow": d.get("on_overflow", "error")}

    def read(key):
        try:
            return P.read_pairs(d[key], **kw)
        except (FileNotFoundError, ValueError) as e:
            raise _keyed(f"dataset.{key}", d[key], e) from e

    full = read("path")
    parts = {"train": (full, "path")}
    counts = full.overflow
    if d["valid_path"] or d["test_path"]:
        for name in ("valid", "test"):
            if d[f"{name}_path"]:
                parts[name] = (read(f"{name}_path"), f"{name}_path")
                counts += parts[name][0].overflow
    else:
        train_i, valid_i, test_i = split_indices(len(full), d["valid_fraction"],
                                                 d["test_fraction"], seed)
        if train_i.size == 0:
            raise ValueError(f"dataset.path={d['path']!r} leaves no training pairs after holding "
                             f"out valid_fraction={d['valid_fraction']} and test_fraction="
                             f"{d['test_fraction']} of {len(full)}")
        parts = {name: (full.subset(i), "path") for name, i in
                 (("train", train_i), ("valid", valid_i), ("test", test_i)) if i.size}
    for name in ("train", "valid", "test"):
        limit = d["limit" if name == "train" else f"{name}_limit"]
        if name in parts and limit:
            ps, key = parts[name]
            parts[name] = (ps.subset(np.arange(min(limit, len(ps)))), key)
    listed = [(ps, key) for ps, key in parts.values()]
    sizes = [np.array([max(len(a), len(b)) for a, b in ps], dtype=np.int64) for ps, _ in listed]
    found = find_outliers(np.concatenate(sizes))
    if found:
        part, i = _part_of(int(found.indices[0]), sizes)
        ps, key = listed[part]
        raise ValueError(
            f"dataset.{key}={d[key]!r} line {int(ps.line_numbers[i])} has a side of "
            f"{int(found.lengths[0])} tokens, far more than the rest of the data needs "
            f"({found.rest_max} at most; {found.rule('pair')}): set dataset.max_length="
            f"{found.rest_max} with dataset.on_overflow=truncate or drop")
    src, tgt = P.pair_vocabularies(parts["train"][0], shared=d["shared_vocab"],
                                   min_count=d["min_count"])
    encoded = {name: P.encode_pairs(ps, src, tgt) for name, (ps, _) in parts.items()}
    what = (f"{d['path']} ({d['tokens']} token pairs, {len(src)} source / {len(tgt)} target "
            f"{'shared ' if d['shared_vocab'] else ''}vocabulary)")
    if d["max_length"] is not None:
        what += f", max_length={d['max_length']} ({kw['on_overflow']}: {counts})"
    return Data(encoded["train"], encoded.get("valid"), encoded.get("test"), src, None, what,
                counts.to_dict(), tgt_vocab=tgt)


def load_data(dataset, seed: int = 0) -> Data:
    """Build the datasets a ``dataset`` config (DictConfig or dict) describes.

    A text line far longer than the rest of the data raises ``ValueError`` naming its file and
    line (see :func:`bucketrnn.data.plan.find_outliers`); ``dataset.max_length`` with
    ``dataset.on_overflow`` cuts or drops long lines, counted in ``Data.overflow``.
    """
    d = to_dict(dataset)
    if d["name"] == "prepared" or (d["name"] != "ptb" and is_prepared(d["path"])):
        return _load_prepared(d, seed)
    if d["name"] != "ptb":
        _hint_prepare(d["path"])
    if d["name"] == "tagged" or d["label"]:
        return _load_labelled(d, seed)
    overflow = None
    if d["name"] == "pairs":
        return _load_pairs(d, seed)
    if d["name"] == "ptb":
        train, vocab = datasets.penn_treebank("train", limit=d["limit"])
        valid, _ = datasets.penn_treebank("valid", vocab=vocab, limit=d["valid_limit"])
        test, _ = datasets.penn_treebank("test", vocab=vocab, limit=d["test_limit"])
        what = "Penn Treebank"
        if d["limit"]:
            what += f" (first {len(train)} of the training sentences: dataset.limit={d['limit']})"
    else:
        kw = {"tokens": d["tokens"], "max_length": d["max_length"],
              "on_overflow": d.get("on_overflow", "error")}
        lines = _read(datasets, "dataset.path", d["path"], kw)
        counts = lines.overflow
        sources = {"train": ("dataset.path", d["path"])}
        if d["valid_path"] or d["test_path"]:
            vocab = datasets.Vocabulary.build(lines, min_count=d["min_count"])
            train = datasets.encode_lines(lines, vocab)
            valid = test = None
            for key in ("valid_path", "test_path"):
                if d[key]:
                    part_lines = _read(datasets, f"dataset.{key}", d[key], kw)
                    counts += part_lines.overflow
                    part = datasets.encode_lines(part_lines, vocab)
                    valid, test = (part, test) if key == "valid_path" else (valid, part)
                    sources[key[:-5]] = (f"dataset.{key}", d[key])
        else:
            parts = datasets.split_indices(len(lines), d["valid_fraction"], d["test_fraction"],
                                           seed)
            if parts[0].size == 0:
                raise ValueError(f"dataset.path={d['path']!r} leaves no training sequences "
                                 f"after holding out valid_fraction={d['valid_fraction']} and "
                                 f"test_fraction={d['test_fraction']} of {len(lines)}")
            # The vocabulary comes from the training lines alone: held-out words stay unknown.
            vocab = datasets.Vocabulary.build([lines[i] for i in parts[0]],
                                              min_count=d["min_count"])
            full = datasets.encode_lines(lines, vocab)
            train, valid, test = (full.subset(p) if p.size else None for p in parts)
        if d["limit"]:
            train = train.subset(np.arange(min(d["limit"], len(train))))
        what = f"{d['path']} ({d['tokens']} tokens)"
        overflow = counts.to_dict()
        if d["max_length"] is not None:
            what += f", max_length={d['max_length']} ({kw['on_overflow']}: {counts})"
    for name, part, key in (("valid", valid, "valid_limit"), ("test", test, "test_limit")):
        if part is not None and d[key]:
            part = part.subset(np.arange(min(d[key], len(part))))
            valid, test = (part, test) if name == "valid" else (valid, part)
    if d["name"] != "ptb":
        _refuse_outlier_lines([(part, *sources.get(name, sources["train"]))
                               for name, part in (("train", train), ("valid", valid),
                                                  ("test", test))])
    return Data(train, valid, test, vocab, None, what, overflow)


# A text file this large takes minutes to read and ~20x its size in memory at every run.
PREPARE_HINT_BYTES = 256 * 2**20


def _hint_prepare(path) -> None:
    """Say how to prepare a large text file once rather than read it at every run."""
    try:
        size = os.path.getsize(path)
    except (OSError, TypeError):
        return  # the reader names a missing file
    if size >= PREPARE_HINT_BYTES:
        print(f"note: dataset.path={path!r} is {size / 2**20:.0f} MB of text, read and "
              "tokenized in memory at every run; prepare it once (bounded memory, memory-mapped "
              f"afterwards): bucketrnn-prepare {path} {path}.prepared, then dataset.path="
              f"{path}.prepared", file=sys.stderr)


def _load_prepared(d: dict, seed: int) -> Data:
    """``dataset=prepared`` (or a file dataset whose ``path`` is a prepared directory): the
    memory-mapped :class:`~bucketrnn.data.prepared.PreparedDataset`, held-out splits and limits
    as index views; the vocabulary and class map are the directory's."""
    path = d["path"]
    try:
        full = PreparedDataset(path)
    except (ValueError, FileNotFoundError) as e:
        raise _keyed("dataset.path", path, e) from e
    src = full.manifest["source"]
    try:
        st = os.stat(src["path"])
    except OSError:
        st = None  # the source may live elsewhere: the prepared files are what is read
    if st is not None and (st.st_size, st.st_mtime_ns) != (src["bytes"], src["mtime_ns"]):
        raise ValueError(f"dataset.path={path!r} was prepared from {src['path']!r}, which has "
                         f"changed since ({src['bytes']} bytes then, {st.st_size} now): prepare "
                         f"it again (bucketrnn-prepare {src['path']} {path} --force)")
    parts = split_indices(len(full), d["valid_fraction"], d["test_fraction"], seed)
    if parts[0].size == 0:
        raise ValueError(f"dataset.path={path!r} leaves no training sequences after holding "
                         f"out valid_fraction={d['valid_fraction']} and test_fraction="
                         f"{d['test_fraction']} of {len(full)}")
    if parts[1].size == 0 and parts[2].size == 0:
        train, valid, test = full, None, None  # the whole corpus: the flat fast path
    else:
        train, valid, test = (full.subset(p) if p.size else None for p in parts)
    train, valid, test = (_limited(part, d[key]) for part, key in
                          ((train, "limit"), (valid, "valid_limit"), (test, "test_limit")))
    fmt, label = full.format, full.label
    splits = [(train, "dataset.path", path), (valid, "dataset.path", path),
              (test, "dataset.path", path)]
    if fmt == "pairs":
        sizes = [np.maximum(ds.lengths()[:, 0], ds.lengths()[:, 1] - 1)
                 for ds, _, _ in splits if ds is not None]
        found = find_outliers(np.concatenate(sizes))
        if found:
            k, i = _part_of(int(found.indices[0]), sizes)
            parts_ = [ds for ds, _, _ in splits if ds is not None]
            raise ValueError(
                f"dataset.path={path!r} line {int(parts_[k].line_numbers[i])} has a side of "
                f"{int(found.lengths[0])} tokens, far more than the rest of the data needs "
                f"({found.rest_max} at most; {found.rule('pair')}): prepare it again with "
                f"--max-length {found.rest_max} --on-overflow truncate (or drop)")
    else:
        _refuse_outlier_lines(splits, markers=0 if fmt == "tagged" else 2, prepared=True)
    c = full.manifest["counts"]
    o = full.manifest["options"]
    what = (f"{path} (prepared from {src['path']}: {fmt}, {o['tokens']} tokens, "
            f"{c['sequences']} sequences, {c['tokens']} token ids, vocabulary {len(full.vocab)})")
    if o["max_length"] is not None:
        what += (f", max_length={o['max_length']} ({o['on_overflow']}: "
                 f"{_overflow_text(c['overflow'])})")
    classes = full.classes
    if fmt == "tagged":
        if len(classes) < 2:
            raise ValueError(f"dataset.path={path!r} has {len(classes)} tag ({classes!r}): a "
                             "tagger needs at least 2 tags")
        what = f"tagged {what}, {len(classes)} tags (accuracy is per token)"
    elif label:
        _refuse_one_class(label, train.labels, classes)
        what += f", label {label} ({len(classes)} classes)"
    return Data(train, valid, test, full.vocab, len(classes) if classes else None, what,
                c["overflow"], classes, tgt_vocab=full.tgt_vocab)


def _overflow_text(counts: dict) -> str:
    """The overflow counts of a manifest as the text readers print them."""
    return str(OverflowCounts(**counts))


def _encoded(splits, vocab, tagged: bool, d: dict) -> list:
    """``[train, valid, test]`` of labelled splits as FlatSequences (None where absent), with
    ``dataset.limit`` / ``valid_limit`` / ``test_limit``: a tagger's sentences as they are with
    a tag per token, a classifier's in the language-model form of ``encode_lines``."""
    out = []
    for name in ("train", "valid", "test"):
        text = getattr(splits, name)
        if text is None:
            out.append(None)
            continue
        ids = text.label_ids(splits.classes)
        if tagged:
            seqs = datasets.FlatSequences.from_sequences(
                [vocab.encode(s) for s in text.sentences], tags=ids)
            part = datasets.FlatSequences(seqs.tokens, seqs.offsets, tags=seqs.tags,
                                          line_numbers=text.sentences.line_numbers)
        else:
            seqs = datasets.encode_lines(text.sentences, vocab)
            part = datasets.FlatSequences(seqs.tokens, seqs.offsets, ids,
                                          line_numbers=seqs.line_numbers)
        out.append(_limited(part, d[{"train": "limit"}.get(name, f"{name}_limit")]))
    return out


def _labelled_ptb(d: dict, label: str) -> Data:
    """Penn Treebank sentences labelled by ``dataset.label`` (``contains:N``: does a sentence
    hold a number?), on PTB's own splits; the vocabulary is that of all training sentences."""
    parts = [datasets.label_lines(datasets.penn_treebank_sentences(name), label)
             for name in ("train", "valid", "test")]
    splits = datasets.LabelledSplits.build(*parts, label=label)
    vocab = datasets.Vocabulary.build(splits.train.sentences, min_count=d["min_count"])
    train, valid, test = _encoded(splits, vocab, False, d)
    _refuse_one_class(label, train.labels, splits.classes)
    what = "Penn Treebank"
    if d["limit"]:
        what += f" (first {len(train)} of the training sentences: dataset.limit={d['limit']})"
    what += f", label {label} ({len(splits.classes)} classes)"
    return Data(train, valid, test, vocab, len(splits.classes), what, None, splits.classes)


def _limited(part, limit):
    return part if part is None or not limit else part.subset(np.arange(min(limit, len(part))))


def _load_labelled(d: dict, seed: int) -> Data:
    """A labelled text file (``dataset=text`` with ``dataset.label``) or a tagged one
    (``dataset=tagged``), read by :func:`bucketrnn.data.datasets.labelled_text_file`: the split,
    labels and class map of the library, encoded with a vocabulary of the training split."""
    tagged = d["name"] == "tagged"
    label = "tags" if tagged else d["label"]
    on_overflow = d.get("on_overflow", "error")
    if d["name"] == "ptb":
        return _labelled_ptb(d, label)
    try:
        splits = datasets.labelled_text_file(
            d["path"], label, valid_fraction=d["valid_fraction"],
            test_fraction=d["test_fraction"], seed=seed, valid_path=d["valid_path"],
            test_path=d["test_path"], tokens=d["tokens"], max_length=d["max_length"],
            on_overflow=on_overflow)
    except (FileNotFoundError, ValueError) as e:
        # The library's message starts with its argument (path=..., valid_path=...): the same
        # names under dataset.
        cls = FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError
        raise cls(f"dataset.{e}") from e
    classes = splits.classes
    # The vocabulary comes from the training sentences alone: held-out words stay unknown.
    vocab = datasets.Vocabulary.build(splits.train.sentences, min_count=d["min_count"])
    train, valid, test = _encoded(splits, vocab, tagged, d)
    keys = {"train": "path", "valid": "valid_path" if d["valid_path"] else "path",
            "test": "test_path" if d["test_path"] else "path"}
    _refuse_outlier_lines([(part, f"dataset.{keys[name]}", d[keys[name]]) for name, part in
                           (("train", train), ("valid", valid), ("test", test))],
                          markers=0 if tagged else 2)
    what = f"{d['path']} ({d['tokens']} tokens)"
    if d["max_length"] is not None:
        what += f", max_length={d['max_length']} ({on_overflow}: {splits.overflow})"
    if tagged:
        if len(classes) < 2:
            raise ValueError(f"dataset.path={d['path']!r} has {len(classes)} tag ({classes!r}): "
                             "a tagger needs at least 2 tags")
        what = f"tagged {what}, {len(classes)} tags (accuracy is per token)"
    else:
        _refuse_one_class(d["label"], train.labels, classes)
        what += f", label {d['label']} ({len(classes)} classes)"
    return Data(train, valid, test, vocab, len(classes), what, splits.overflow.to_dict(),
                classes)


def make_loaders(data: Data, bucketing, seed: int = 0, num_shards: int = 1,
                 shard_index: int = 0, ctx=None, cost=None, epochs: float = 1.0,
                 memory_limit: int | None = None):
    """``(train_loader, valid_loader, test_loader)`` for a ``bucketing`` config, delivering
    batches on ``ctx`` (default: MXNet's current context).

    The training loader is shard ``shard_index`` of ``num_shards`` (one per distributed
    worker); every worker evaluates the whole validation and test sets.

    Evaluation loaders use the training plan's boundaries (plus one for a longer evaluation
    sequence), the same batch sizes and no shuffling, so they reuse the training graphs.
    Every loader checks token ids against ``len(data.vocab)`` and, for a classifier, labels
    against ``data.num_classes`` (an out-of-range id raises naming the dataset index).

    ``bucketing.num_buckets=auto`` plans with ``cost`` (a CostModel) for ``epochs`` under
    ``memory_limit``; with ``bucketing.auto_boundaries`` set (an earlier session chose them)
    those boundaries are used as they are; with neither, ``ValueError``
    (:mod:`bucketrnn.app.auto`).
    """
    b = to_dict(bucketing)
    sizes = {"batch_size": b["batch_size"], "max_tokens": b["max_tokens"],
             "batch_size_multiple": b["batch_size_multiple"]}
    plan = {"num_buckets": b["num_buckets"], "strategy": b["strategy"],
            "boundaries": b["boundaries"]}
    if b["num_buckets"] == "auto":
        if b["strategy"] == "fixed":  # num_buckets is not used with fixed boundaries
            plan["num_buckets"] = len(b["boundaries"])
        elif b.get("auto_boundaries"):
            plan = {"num_buckets": len(b["auto_boundaries"]), "strategy": "fixed",
                    "boundaries": b["auto_boundaries"]}
        elif cost is None:
            raise ValueError("bucketing.num_buckets=auto needs the model's cost model (the app "
                             "probes it; bucketrnn.autoplan.costmodel.probe); give "
                             "bucketing.num_buckets=N to plan without one")
    try:
        if plan["num_buckets"] == "auto":  # planned by measurement, a layer above the loader
            _, lengths = plan_lengths(data.train)
            plan = {"plan": auto_plan(lengths, cost, epochs=epochs, memory_limit=memory_limit,
                                      on_overflow=b["on_overflow"], **sizes)}
        else:
            plan.update(sizes)
        train = BucketLoader(data.train, **plan, shuffle=b["shuffle"], seed=seed,
                             last_batch=b["last_batch"], on_overflow=b["on_overflow"],
                             num_workers=b["num_workers"], timeout=b["timeout"],
                             num_shards=num_shards, shard_index=shard_index, ctx=ctx,
                             vocab_size=data.vocab_size, num_classes=data.num_classes)
    except ValueError as e:
        # The library names its argument (num_buckets=8 is more than the 2 distinct lengths,
        # max_tokens=...): the app's users set it as bucketing.<argument>.
        if str(e).split("=", 1)[0] in ("num_buckets", "max_tokens", "batch_size"):
            raise ValueError(f"bucketing.{e}") from e
        raise
    out = [train]
    for ds in (data.valid, data.test):
        if ds is None or len(ds) == 0:
            out.append(None)
            continue
        out.append(evaluation_loader(train, ds, seed=0, last_batch="fill", **sizes))
    return tuple(out)
