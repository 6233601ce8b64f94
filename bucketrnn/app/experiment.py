"""From a composed config to the objects an experiment runs on: datasets, vocabulary, loaders.

:func:`load_data` builds the datasets and vocabulary a ``dataset`` config describes (and refuses
an outlier line by file and line number); :func:`make_loaders` builds the training loader and
evaluation loaders on the training plan's boundaries, so evaluation reuses the training graphs.
The app (:mod:`bucketrnn.app.run`) and the plan command (:mod:`bucketrnn.app.plan`) share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bucketrnn.app.config import to_dict

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


def _labelled(ds, label: str, vocab, classes=None):
    """``ds`` with a class label per sequence, for ``dataset.label`` (see DatasetConfig)."""
    from bucketrnn.datasets import FlatSequences

    tokens, offsets, lines = ds.tokens, ds.offsets, ds.line_numbers
    if label.startswith("contains:"):
        word = label.split(":", 1)[1]
        wid = vocab.stoi.get(word)
        if wid is None:
            raise ValueError(f"dataset.label={label!r}: the token {word!r} is not in the "
                             "vocabulary")
        hits = np.add.reduceat((tokens == wid).astype(np.int64), offsets[:-1]) \
            if tokens.size else np.zeros(len(ds), np.int64)
        hits[np.diff(offsets) == 0] = 0
        labels = (hits > 0).astype(np.int32)
        return FlatSequences(tokens, offsets, labels, line_numbers=lines), classes or [0, 1]
    # first_token: sequences are "<eos> label w1 ... <eos>"; drop the label token.
    lengths = np.diff(offsets)
    short = np.flatnonzero(lengths < 3)
    if short.size:
        raise ValueError(f"dataset.label='first_token' needs a label and at least one token per "
                         f"line; sequence {int(short[0])} has none")
    first = tokens[offsets[:-1] + 1]
    if classes is None:
        classes = sorted(set(first.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    unknown = [vocab.itos[c] for c in set(first.tolist()) if c not in index]
    if unknown:
        raise ValueError(f"dataset.label='first_token': labels {sorted(unknown)[:5]} do not "
                         "occur in the training split")
    keep = np.ones(tokens.size, dtype=bool)
    keep[offsets[:-1] + 1] = False
    new_offsets = offsets - np.arange(offsets.size)
    new_offsets[0] = 0
    labels = np.array([index[c] for c in first.tolist()], dtype=np.int32)
    return FlatSequences(tokens[keep], new_offsets, labels, line_numbers=lines), classes


def _refuse_one_class(label: str, labels, classes, vocab) -> None:
    """A classifier learns nothing from one class: refuse training labels that take one value."""
    seen = np.unique(np.asarray(labels))
    if seen.size >= 2:
        return
    if seen.size == 0:
        what = "no sequences"
    elif label == "first_token":
        what = f"every training line starts with {vocab.itos[classes[int(seen[0])]]!r}"
    else:
        word = label.split(":", 1)[1]
        what = f"every training sequence {'contains' if seen[0] else 'lacks'} {word!r}"
    raise ValueError(f"dataset.label={label!r} gives {seen.size} class in the training split "
                     f"({what}): a classifier needs at least 2 classes; choose another "
                     "dataset.label or data with more than one label")


def _split(n, fractions, seed):
    """Seeded held-out index sets of ``n`` examples: ``(train, valid, test)``, sorted."""
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_valid, n_test = (int(round(f * n)) for f in fractions)
    parts = perm[:n_valid], perm[n_valid:n_valid + n_test], perm[n_valid + n_test:]
    return [np.sort(p) for p in (parts[2], parts[0], parts[1])]


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


def _refuse_outlier_lines(parts) -> None:
    """Refuse a line far longer than the rest (:func:`bucketrnn.buckets.find_outliers`, on
    tokens per line over every split), naming its file and line, before any plan or graph."""
    from bucketrnn.buckets import find_outliers

    parts = [(ds, key, path) for ds, key, path in parts if ds is not None and len(ds)]
    sizes = [ds.lengths() - 2 for ds, _, _ in parts]  # without the two <eos> of encode_lines
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
        f"bucketing it would unroll a {top}-step graph. Set dataset.max_length={need} with "
        "dataset.on_overflow=truncate (keep the first max_length tokens) or drop (leave such "
        "lines out); the run reports how many lines were cut or dropped"
    )


def load_data(dataset, seed: int = 0) -> Data:
    """Build the datasets a ``dataset`` config (DictConfig or dict) describes.

    A text line far longer than the rest of the data raises ``ValueError`` naming its file and
    line (see :func:`bucketrnn.buckets.find_outliers`); ``dataset.max_length`` with
    ``dataset.on_overflow`` cuts or drops long lines, counted in ``Data.overflow``.
    """
    from bucketrnn import datasets

    d = to_dict(dataset)
    overflow = None
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
            parts = _split(len(lines), (d["valid_fraction"], d["test_fraction"]), seed)
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
    classes = None
    if d["label"]:
        train, classes = _labelled(train, d["label"], vocab)
        _refuse_one_class(d["label"], train.labels, classes, vocab)
        valid = None if valid is None else _labelled(valid, d["label"], vocab, classes)[0]
        test = None if test is None else _labelled(test, d["label"], vocab, classes)[0]
        what += f", label {d['label']} ({len(classes)} classes)"
    return Data(train, valid, test, vocab, None if classes is None else len(classes), what,
                overflow)


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
    from bucketrnn.loader import BucketLoader, evaluation_loader

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
                             "probes it; bucketrnn.costmodel.probe); give bucketing.num_buckets="
                             "N to plan without one")
        else:
            plan.update(cost=cost, epochs=epochs, memory_limit=memory_limit)
    train = BucketLoader(data.train, **plan, shuffle=b["shuffle"], seed=seed,
                         last_batch=b["last_batch"], on_overflow=b["on_overflow"],
                         num_workers=b["num_workers"], timeout=b["timeout"],
                         num_shards=num_shards, shard_index=shard_index, ctx=ctx,
                         vocab_size=len(data.vocab), num_classes=data.num_classes, **sizes)
    out = [train]
    for ds in (data.valid, data.test):
        if ds is None or len(ds) == 0:
            out.append(None)
            continue
        out.append(evaluation_loader(train, ds, seed=0, last_batch="fill", **sizes))
    return tuple(out)
