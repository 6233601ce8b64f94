"""A prepared corpus on disk, read through memory maps: :class:`PreparedDataset`.

``bucketrnn-prepare`` (:func:`bucketrnn.data.prepare.prepare`) turns a text file into a
directory of named numpy arrays and a ``manifest.json``; this module reads it. Nothing is
tokenized and nothing is copied into memory: the token file is a read-only ``np.memmap``,
``lengths()`` reads the lengths file, an example is a slice. A corpus larger than memory costs
only the pages a batch touches.

The directory (every array a ``.npy`` file, loaded with ``allow_pickle=False``):

=====================  ===================================================================
``manifest.json``      format version, format and options, counts, the source file (path,
                       size, mtime, SHA-256) and of every file below its dtype, shape, size
                       and SHA-256; written last, so a directory without it is incomplete
``vocab.json``         the vocabulary (:meth:`~bucketrnn.data.datasets.Vocabulary.save`); for
                       pairs the source one, and ``tgt_vocab.json`` the target one
``classes.json``       the class map (id -> name) of a labelled or tagged file
``tokens.npy``         every sequence's token ids, one after the other, in the narrowest
                       unsigned integer type that holds the vocabulary (``uint8``/``16``/``32``)
``offsets.npy``        ``int64`` ``(N + 1,)``: sequence ``i`` is ``tokens[offsets[i]:offsets[i+1]]``
``lengths.npy``        ``int32`` ``(N,)`` (``(N, 2)`` source and target for pairs)
``line_numbers.npy``   ``int64`` ``(N,)``: the 1-based line of the source file of each sequence
``labels.npy``         labelled text: ``int32`` class id per sequence
``tags.npy``           tagged text: a class id per token, aligned with ``tokens.npy``
``tgt_tokens.npy``,    pairs: the targets (each ending with ``<eos>``)
``tgt_offsets.npy``
=====================  ===================================================================

Examples are exactly what the in-memory readers give (:func:`~bucketrnn.data.datasets.text_file`
and the app's labelled, tagged and pairs datasets): ``int32`` arrays, ``(sequence, label)``,
``(sequence, tags)`` or ``(source, target)``.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from mxnet.gluon.data import Dataset

from bucketrnn.data.datasets import Vocabulary
from bucketrnn.files import read_json

__all__ = ["FORMAT_VERSION", "MANIFEST", "PreparedDataset", "file_sha256", "is_prepared",
           "read_manifest"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KIND = "bucketrnn-prepared"
FORMATS = ("text", "tagged", "pairs")
# Offsets and lengths are checked block by block: bounded memory for any corpus.
_BLOCK = 1 << 22


def file_sha256(path: str, block: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in blocks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(block)
            if not data:
                return h.hexdigest()
            h.update(data)


def is_prepared(path) -> bool:
    """True when ``path`` is a directory holding a prepared corpus's manifest."""
    return isinstance(path, str) and os.path.isfile(os.path.join(path, MANIFEST))


def read_manifest(path: str) -> dict:
    """The manifest of the prepared directory ``path``.

    Raises
    ------
    FileNotFoundError
        ``path`` is not there.
    ValueError
        ``path`` is not a prepared directory (no manifest: an interrupted prepare leaves none),
        or its manifest is damaged or of another format version; the message says how to
        prepare it again.
    """
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"prepared directory not found: {path!r}")
        raise ValueError(f"{path!r} is not a prepared directory (a file); make one with "
                         f"bucketrnn-prepare INPUT {path}.d")
    where = os.path.join(path, MANIFEST)
    if not os.path.isfile(where):
        raise ValueError(f"{path!r} is not a prepared corpus: it has no {MANIFEST} (an "
                         "interrupted bucketrnn-prepare leaves none); run bucketrnn-prepare "
                         f"INPUT {path} again")
    try:
        manifest = read_json(where)
    except ValueError as e:
        raise ValueError(f"{where!r} is damaged: it {e}; run bucketrnn-prepare again") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise ValueError(f"{where!r} is not a manifest written by bucketrnn-prepare")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{where!r} has format_version={version!r}; this bucketrnn reads "
                         f"version {FORMAT_VERSION}: run bucketrnn-prepare again")
    for key in ("format", "options", "counts", "files", "source"):
        if key not in manifest:
            raise ValueError(f"{where!r} is damaged: no {key!r} entry; run bucketrnn-prepare "
                             "again")
    if manifest["format"] not in FORMATS:
        raise ValueError(f"{where!r} names format {manifest['format']!r}, not one of "
                         f"{FORMATS}")
    return manifest


def _open_array(directory: str, name: str, entry: dict, verify: bool) -> np.ndarray:
    """One listed array, memory-mapped read-only, checked against its manifest entry."""
    where = os.path.join(directory, name)
    if not os.path.isfile(where):
        raise ValueError(f"prepared file {where!r} is missing; run bucketrnn-prepare again")
    size = os.path.getsize(where)
    if size != entry["bytes"]:
        raise ValueError(f"prepared file {where!r} has {size} bytes, the manifest says "
                         f"{entry['bytes']} (truncated or changed); run bucketrnn-prepare again")
    if verify and file_sha256(where) != entry["sha256"]:
        raise ValueError(f"prepared file {where!r} does not match its SHA-256 digest in the "
                         "manifest (its contents changed); run bucketrnn-prepare again")
    try:
        array = np.load(where, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"prepared file {where!r} is not a numpy array file: {e}") from None
    if str(array.dtype) != entry["dtype"] or list(array.shape) != entry["shape"]:
        raise ValueError(f"prepared file {where!r} holds {array.dtype} {list(array.shape)}, "
                         f"the manifest says {entry['dtype']} {entry['shape']}; run "
                         "bucketrnn-prepare again")
    return array


def _check_offsets(where: str, offsets: np.ndarray, num_tokens: int) -> None:
    """Offsets start at 0, never decrease and end at the token count (so none points past the
    end), checked in blocks."""
    if offsets[0] != 0 or offsets[-1] != num_tokens:
        raise ValueError(f"prepared file {where!r} is damaged: offsets run from "
                         f"{int(offsets[0])} to {int(offsets[-1])}, the token file holds "
                         f"{num_tokens} tokens; run bucketrnn-prepare again")
    # Read with plain reads, not through the map: pages touched through a map stay in the
    # process's resident set, and a check must not cost the memory of the whole offsets file.
    with open(where, "rb") as f:
        f.seek(offsets.offset)
        last = 0
        for start in range(0, offsets.size, _BLOCK):
            block = np.fromfile(f, dtype=offsets.dtype, count=min(_BLOCK, offsets.size - start))
            steps = np.diff(block, prepend=last)
            bad = np.flatnonzero((steps < 0) | (block > num_tokens))
            if bad.size:
                i = max(start + int(bad[0]) - 1, 0)
                raise ValueError(f"prepared file {where!r} is damaged: offsets[{i}:{i + 2}]="
                                 f"{np.asarray(offsets[i:i + 2]).tolist()} (past the end of "
                                 f"{num_tokens} tokens or decreasing); run bucketrnn-prepare "
                                 "again")
            last = block[-1]


class PreparedDataset(Dataset):
    """A prepared corpus directory as a dataset, on read-only memory maps.

    Works wherever a dataset does: :class:`~bucketrnn.BucketLoader` plans on :meth:`lengths`
    (read from ``lengths.npy``, nothing tokenized), workers of ``num_workers > 0`` reopen the
    files (the dataset pickles as its path and index, never its arrays), :meth:`subset` makes
    held-out splits and limits as index views sharing the same maps.

    Parameters
    ----------
    path : str
        The directory ``bucketrnn-prepare`` wrote.
    verify : bool
        Also check every file's SHA-256 digest against the manifest (reads every byte: seconds
        per GB). Without it, opening checks sizes, dtypes, shapes, counts and the offsets.

    Attributes
    ----------
    manifest : dict
    format : {"text", "tagged", "pairs"}
    label : str or None
        ``"first_token"`` or ``"contains:<token>"`` for a labelled text file.
    vocab, tgt_vocab : Vocabulary
        ``tgt_vocab`` is None except for pairs (the same object as ``vocab`` when shared).
    classes : list or None
        The class map (id -> name) of a labelled or tagged corpus.
    line_numbers : numpy.ndarray
        1-based source line of each example.

    Raises
    ------
    ValueError
        Not a prepared directory, or a file of it is missing, truncated, of another dtype or
        shape, with offsets past the end, or (``verify=True``) with another digest: the message
        names the file.

    Examples
    --------
    >>> import os, tempfile
    >>> from bucketrnn.data.prepare import prepare
    >>> tmp = tempfile.mkdtemp()
    >>> _ = open(os.path.join(tmp, "c.txt"), "w").write("a b\\nb c d\\n")
    >>> ds = prepare(os.path.join(tmp, "c.txt"), os.path.join(tmp, "c"), progress=False)
    >>> len(ds), ds.lengths().tolist(), ds[0].tolist(), ds.vocab.itos[2:]
    (2, [4, 5], [1, 3, 2, 1], ['b', 'a', 'c', 'd'])
    """

    def __init__(self, path: str, verify: bool = False, indices=None):
        self.path = os.path.abspath(path)
        self.manifest = manifest = read_manifest(path)
        self.format = manifest["format"]
        self.label = manifest["options"].get("label")
        files = manifest["files"]
        arrays = {name[:-4]: _open_array(path, name, entry, verify)
                  for name, entry in files.items() if name.endswith(".npy")}
        for name in files:
            if name.endswith(".json"):
                _open_json(path, name, files[name], verify)
        n = int(manifest["counts"]["sequences"])
        for key, shape in (("offsets", (n + 1,)), ("line_numbers", (n,)),
                           ("lengths", (n, 2) if self.format == "pairs" else (n,))):
            if key not in arrays or arrays[key].shape != shape:
                raise ValueError(f"prepared directory {path!r} is damaged: {key}.npy should "
                                 f"hold shape {shape} for {n} sequences")
        _check_offsets(os.path.join(path, "offsets.npy"), arrays["offsets"],
                       arrays["tokens"].size)
        if self.format == "pairs":
            _check_offsets(os.path.join(path, "tgt_offsets.npy"), arrays["tgt_offsets"],
                           arrays["tgt_tokens"].size)
        self._arrays = arrays
        self.vocab = Vocabulary.load(os.path.join(path, "vocab.json"))
        self.tgt_vocab = None
        if self.format == "pairs":
            shared = manifest["options"].get("shared_vocab")
            self.tgt_vocab = self.vocab if shared else \
                Vocabulary.load(os.path.join(path, "tgt_vocab.json"))
        self.classes = read_json(os.path.join(path, "classes.json")) \
            if "classes.json" in files else None
        if indices is not None:
            indices = np.asarray(indices, dtype=np.int64)
            if indices.ndim != 1 or (indices.size and (indices.min() < 0
                                                       or indices.max() >= n)):
                raise ValueError(f"indices must be 1-D examples of [0, {n}), got shape "
                                 f"{indices.shape}")
        self._indices = indices

    # -- what the data flow reads
    def __len__(self) -> int:
        return int(self.manifest["counts"]["sequences"]) if self._indices is None \
            else int(self._indices.size)

    def lengths(self) -> np.ndarray:
        """Steps of every example (the prepared lengths file; ``(N, 2)`` for pairs)."""
        lengths = self._arrays["lengths"]
        return np.asarray(lengths if self._indices is None else lengths[self._indices],
                          dtype=np.int64)

    @property
    def line_numbers(self) -> np.ndarray:
        lines = self._arrays["line_numbers"]
        return np.asarray(lines if self._indices is None else lines[self._indices])

    @property
    def labels(self):
        """Class id per example (labelled text), else None."""
        labels = self._arrays.get("labels")
        if labels is None or self._indices is None:
            return labels
        return labels[self._indices]

    def __getattr__(self, name):
        # The flat form (tokens, offsets, tags) is offered only on the whole corpus: the
        # batchify step then gathers a batch in one indexing step. An index view answers
        # item by item instead (its examples are not contiguous in the token file).
        if name in ("tokens", "offsets", "tags") and "_arrays" in self.__dict__ \
                and self.__dict__["_indices"] is None and self.format != "pairs":
            array = self._arrays.get(name)
            if array is not None:
                return array
        raise AttributeError(name)

    def __getitem__(self, i):
        if self._indices is not None:
            i = self._indices[i]
        a = self._arrays
        start, end = a["offsets"][i], a["offsets"][i + 1]
        seq = np.asarray(a["tokens"][start:end], dtype=np.int32)
        if self.format == "pairs":
            tgt = np.asarray(a["tgt_tokens"][a["tgt_offsets"][i]:a["tgt_offsets"][i + 1]],
                             dtype=np.int32)
            return seq, tgt
        if "tags" in a:
            return seq, np.asarray(a["tags"][start:end], dtype=np.int32)
        if "labels" in a:
            return seq, a["labels"][i]
        return seq

    def subset(self, indices) -> "PreparedDataset":
        """The given examples, in that order: a view on the same files (no copy)."""
        indices = np.asarray(indices, dtype=np.int64)
        if self._indices is not None:
            indices = self._indices[indices]
        view = object.__new__(PreparedDataset)
        view.__dict__.update(self.__dict__)
        view._indices = indices
        return view

    # -- workers reopen the files rather than receive a copy
    def __reduce__(self):
        return _reopen, (self.path, self._indices)

    def __repr__(self) -> str:
        c = self.manifest["counts"]
        return (f"PreparedDataset({self.path!r}, format={self.format!r}, "
                f"num_sequences={len(self)}, num_tokens={c['tokens']}, "
                f"vocab={len(self.vocab)})")


def _open_json(directory: str, name: str, entry: dict, verify: bool) -> None:
    where = os.path.join(directory, name)
    if not os.path.isfile(where):
        raise ValueError(f"prepared file {where!r} is missing; run bucketrnn-prepare again")
    if os.path.getsize(where) != entry["bytes"] or (verify
                                                     and file_sha256(where) != entry["sha256"]):
        raise ValueError(f"prepared file {where!r} does not match the manifest (size or "
                         "SHA-256 digest); run bucketrnn-prepare again")


def _reopen(path, indices):
    # No digests again in a worker: the parent opened (and, if asked, verified) the files.
    return PreparedDataset(path, verify=False, indices=indices)
