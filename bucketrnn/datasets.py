"""Datasets: the flat large-corpus form, a vocabulary, Penn Treebank and text files.

:class:`FlatSequences` keeps a whole corpus as one integer token array plus ``N + 1`` offsets, so
a million sentences cost two numpy arrays, not a million Python lists; its lengths are
``np.diff(offsets)``. Sequences read from a text file remember their 1-based line numbers
(``line_numbers``), through subsets and held-out splits, so an error can name the line.
"""

from __future__ import annotations

import errno
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np
from mxnet.gluon.data import Dataset
from numpy.typing import ArrayLike

from bucketrnn.buckets import OVERFLOW_POLICIES
from bucketrnn.rundir import atomic_write, read_json, read_regular
from bucketrnn.validation import check_int

__all__ = ["BOS", "EOS", "PAD", "UNK", "FlatSequences", "Lines", "OverflowCounts", "Vocabulary",
           "encode_lines", "penn_treebank", "read_lines", "text_file"]

EOS = "<eos>"
UNK = "<unk>"
PAD = "<pad>"
BOS = "<bos>"


class FlatSequences(Dataset):
    """Integer sequences stored as one flat token array plus offsets.

    ``ds[i]`` is ``tokens[offsets[i]:offsets[i + 1]]`` (a view). Pass ``labels`` (one per
    sequence) to get ``(sequence, label)`` items, and ``line_numbers`` (one per sequence, where
    it came from: :func:`encode_lines` passes the file's 1-based line numbers) to keep them
    through :meth:`subset`; ``line_numbers`` is None otherwise.

    Examples
    --------
    >>> ds = FlatSequences.from_sequences([[1, 2, 3], [4, 5]])
    >>> ds[1].tolist(), ds.lengths().tolist()
    ([4, 5], [3, 2])
    """

    def __init__(self, tokens: ArrayLike, offsets: ArrayLike, labels: ArrayLike | None = None,
                 line_numbers: ArrayLike | None = None):
        tokens = np.asarray(tokens)
        offsets = np.asarray(offsets, dtype=np.int64)
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(
                f"tokens must be a 1-D integer array, got shape {tokens.shape} dtype {tokens.dtype}"
            )
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != tokens.size:
            raise ValueError(
                "offsets must be 1-D, start at 0 and end at len(tokens)="
                f"{tokens.size}, got offsets[:1]={offsets[:1].tolist()} "
                f"offsets[-1:]={offsets[-1:].tolist()}"
            )
        if (np.diff(offsets) < 0).any():
            i = int(np.flatnonzero(np.diff(offsets) < 0)[0])
            raise ValueError(f"offsets must be non-decreasing, got "
                             f"offsets[{i}:{i + 2}]={offsets[i:i + 2].tolist()}")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape[0] != offsets.size - 1:
                raise ValueError(
                    f"labels must have one entry per sequence ({offsets.size - 1}), got "
                    f"{labels.shape[0]}"
                )
        if line_numbers is not None:
            line_numbers = np.asarray(line_numbers, dtype=np.int64)
            if line_numbers.shape != (offsets.size - 1,):
                raise ValueError(f"line_numbers must have one entry per sequence "
                                 f"({offsets.size - 1}), got shape {line_numbers.shape}")
        self.tokens = tokens
        self.offsets = offsets
        self.labels = labels
        self.line_numbers = line_numbers

    @classmethod
    def from_sequences(cls, sequences: Iterable, labels=None, dtype=np.int32) -> "FlatSequences":
        seqs = [np.asarray(s, dtype=dtype).ravel() for s in sequences]
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([s.size for s in seqs])
        tokens = np.concatenate(seqs) if seqs else np.zeros(0, dtype=dtype)
        return cls(tokens, offsets, labels)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, i):
        seq = self.tokens[self.offsets[i]:self.offsets[i + 1]]
        return seq if self.labels is None else (seq, self.labels[i])

    def subset(self, indices) -> "FlatSequences":
        """A new FlatSequences holding the given examples, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        lens = self.lengths()[indices]
        offsets = np.zeros(indices.size + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lens)
        starts = np.repeat(self.offsets[indices] - offsets[:-1], lens)
        tokens = self.tokens[starts + np.arange(offsets[-1])]
        labels = None if self.labels is None else self.labels[indices]
        lines = None if self.line_numbers is None else self.line_numbers[indices]
        return FlatSequences(tokens, offsets, labels, line_numbers=lines)

    def __repr__(self) -> str:
        return f"FlatSequences(num_sequences={len(self)}, num_tokens={self.tokens.size})"


class Vocabulary:
    """Token <-> id mapping; id 0 is ``<unk>``.

    Special tokens: ``<unk>`` (id 0, any unknown token) and ``<eos>`` are always there;
    ``<pad>`` and ``<bos>`` only when :meth:`build` was asked for them (``specials=``), so a
    vocabulary of an existing run keeps its ids. Without them :attr:`pad_id` is 0 (padding is
    masked by ``valid_length``, so its value is never read) and :attr:`bos_id` is ``<eos>``'s
    id (the language-model form ``<eos> w1 ... wn <eos>`` of :func:`encode_lines` uses the
    first ``<eos>`` as the begin-of-sentence).

    Examples
    --------
    >>> vocab = Vocabulary.build([["a", "b", "a"]])
    >>> vocab["a"], vocab["zzz"], len(vocab)
    (2, 0, 4)
    >>> vocab.decode([1, 2, 0, 3, 1]), vocab.decode([2, 3], skip_special=False)
    (['a', '<unk>', 'b'], ['a', 'b'])
    >>> padded = Vocabulary.build([["a"]], specials=("<pad>", "<bos>"))
    >>> padded.itos, padded.pad_id, padded.bos_id
    (['<unk>', '<eos>', '<pad>', '<bos>', 'a'], 2, 3)
    """

    def __init__(self, tokens: Sequence[str]):
        if not tokens or tokens[0] != UNK:
            raise ValueError(f"a vocabulary must start with {UNK!r}, got {tokens[:3]!r}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            twice = next(t for i, t in enumerate(self.itos) if self.stoi[t] != i)
            raise ValueError(f"vocabulary tokens must be unique, got {twice!r} at ids "
                             f"{self.itos.index(twice)} and {self.stoi[twice]}")

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 1, max_size: int | None = None,
              specials: Sequence[str] = ()):
        """``<unk>`` and ``<eos>`` first, then ``specials`` (any of ``"<pad>"``, ``"<bos>"``,
        in the order given), then the most frequent tokens (ties: first seen)."""
        bad = [t for t in specials if t not in (PAD, BOS)]
        if isinstance(specials, str) or bad or len(set(specials)) != len(specials):
            raise ValueError(f"specials must be distinct tokens among {(PAD, BOS)!r}, got "
                             f"specials={specials!r}")
        counter = Counter()
        for s in sentences:
            counter.update(s)
        special = [UNK, EOS, *specials]
        words = [w for w, c in counter.most_common() if c >= min_count and w not in special]
        if max_size is not None:
            words = words[: max(0, max_size - len(special))]
        return cls(special + words)

    def __len__(self) -> int:
        return len(self.itos)

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, 0)

    def encode(self, tokens: list[str]) -> np.ndarray:
        get = self.stoi.get
        return np.fromiter((get(t, 0) for t in tokens), dtype=np.int32, count=len(tokens))

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>``: 0."""
        return 0

    @property
    def eos_id(self) -> int:
        """Id of ``<eos>`` (end of sentence), or None when the vocabulary has none."""
        return self.stoi.get(EOS)

    @property
    def pad_id(self) -> int:
        """Id to pad with: ``<pad>``'s when the vocabulary has one, else 0 (``<unk>``; padded
        steps are masked by ``valid_length``, so the value is never read)."""
        return self.stoi.get(PAD, 0)

    @property
    def bos_id(self) -> int | None:
        """Id that starts a sequence: ``<bos>``'s when the vocabulary has one, else ``<eos>``'s
        (the form of :func:`encode_lines`), else None."""
        return self.stoi.get(BOS, self.eos_id)

    def unknown(self, tokens: Iterable[str]) -> list:
        """The tokens (in order, without repeats) that are not in the vocabulary: they encode as
        ``<unk>``."""
        return list(dict.fromkeys(t for t in tokens if t not in self.stoi))

    def decode(self, ids: ArrayLike, skip_special: bool = True) -> list:
        """Tokens of ``ids`` (any iterable of integers, e.g. a model's output).

        Parameters
        ----------
        ids : array_like of int
        skip_special : bool
            Leave out ``<eos>``, ``<pad>`` and ``<bos>`` (``<unk>`` stays: it stands for a word).

        Raises
        ------
        ValueError
            An id outside ``[0, len(self))`` or not an integer, naming its position and value.
        """
        arr = np.asarray(ids.asnumpy() if hasattr(ids, "asnumpy") else ids)
        if arr.size and (arr.ndim != 1 or arr.dtype.kind not in "iuf"
                         or (arr.dtype.kind == "f" and not np.all(arr == np.round(arr)))):
            raise ValueError(f"ids must be a 1-D sequence of integer token ids, got shape "
                             f"{arr.shape} dtype {arr.dtype}")
        arr = arr.astype(np.int64).ravel()
        out_of_range = np.flatnonzero((arr < 0) | (arr >= len(self.itos)))
        if out_of_range.size:
            i = int(out_of_range[0])
            raise ValueError(f"ids[{i}]={int(arr[i])} is outside [0, {len(self.itos)}) for this "
                             f"vocabulary of {len(self.itos)} tokens")
        skip = {self.stoi[t] for t in (EOS, PAD, BOS) if t in self.stoi} if skip_special \
            else set()
        return [self.itos[i] for i in arr.tolist() if i not in skip]

    def save(self, path: str) -> None:
        """Write the tokens as a JSON list, atomically (:func:`bucketrnn.rundir.atomic_write`:
        never through a link planted at ``path`` or at a temporary name)."""
        atomic_write(path, json.dumps(self.itos).encode("utf-8"))

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        """The vocabulary :meth:`save` wrote; a ``ValueError`` naming ``path`` for any other
        file."""
        try:
            tokens = read_json(path)
        except ValueError as e:
            raise ValueError(f"{path!r} is not a vocabulary written by bucketrnn: it {e}") \
                from None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"{path!r} is not a vocabulary written by bucketrnn (expected a "
                             "JSON list of tokens)")
        try:
            return cls(tokens)
        except ValueError as e:
            raise ValueError(f"{path!r} is not a vocabulary written by bucketrnn: {e}") from None


def encode_lines(lines: list[list[str]], vocab: Vocabulary) -> FlatSequences:
    """Token lines in the language-model form of :func:`penn_treebank`.

    The line numbers of :class:`Lines` (what :func:`read_lines` returns) become the dataset's
    ``line_numbers``.
    """
    # Language-model form: <eos> w1 ... wn <eos>; the first <eos> acts as begin-of-sentence, so
    # an example of n words gives n + 1 predictions (its length "with <eos>").
    eos = vocab[EOS]
    seqs = [np.concatenate([[eos], vocab.encode(ws), [eos]]).astype(np.int32) for ws in lines]
    flat = FlatSequences.from_sequences(seqs)
    return FlatSequences(flat.tokens, flat.offsets,
                         line_numbers=getattr(lines, "line_numbers", None))


def penn_treebank(split: str = "train", vocab: Vocabulary | None = None, limit: int | None = None):
    """Penn Treebank language-model sentences from the ``treebank`` package.

    Returns ``(FlatSequences, Vocabulary)``; each sequence is ``<eos> words <eos>`` as ids, so
    with ``task="lm"`` its length is the number of words plus one. The vocabulary is built from
    the train split unless given.
    """
    import treebank

    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got split={split!r}")
    def sentences(name):
        return [ln.split() for ln in treebank.penn[name].split("\n") if ln.strip()]

    everything = sentences(split)
    lines = everything if limit is None else everything[:limit]
    if vocab is None:
        vocab = Vocabulary.build(everything if split == "train" else sentences("train"))
    return encode_lines(lines, vocab), vocab


@dataclass(frozen=True)
class OverflowCounts:
    """Lines longer than ``max_length`` that :func:`read_lines` left out or cut."""

    lines_dropped: int = 0
    lines_truncated: int = 0
    tokens_cut: int = 0

    def __add__(self, other: "OverflowCounts") -> "OverflowCounts":
        return OverflowCounts(*(a + b for a, b in zip(asdict(self).values(),
                                                      asdict(other).values(), strict=True)))

    def __bool__(self) -> bool:
        return bool(self.lines_dropped or self.lines_truncated)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.lines_dropped} line(s) dropped, {self.lines_truncated} truncated "
                f"({self.tokens_cut} tokens cut)")


class Lines(list):
    """The token lines of a text file (a list of token lists) and where each came from.

    Attributes
    ----------
    path : str
        The file.
    line_numbers : numpy.ndarray
        ``int64``, the 1-based line of the file each entry was read from.
    overflow : OverflowCounts
        Lines that ``max_length`` left out or cut.
    """

    def __init__(self, lines: Iterable[list[str]], path: str, line_numbers: ArrayLike,
                 overflow: OverflowCounts):
        super().__init__(lines)
        self.path = path
        self.line_numbers = np.asarray(line_numbers, dtype=np.int64)
        self.overflow = overflow


def _decode_utf8(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start].decode("utf-8")  # the first bad byte ends the valid prefix
        line = before.replace("\r\n", "\n").replace("\r", "\n").count("\n") + 1
        raise ValueError(
            f"text file {path!r} is not valid UTF-8: line {line}, byte offset {e.start} of the "
            f"file (0-based) holds byte 0x{data[e.start]:02x} ({e.reason}); re-encode the file "
            "as UTF-8 (e.g. iconv -f <its encoding> -t UTF-8) or fix that line"
        ) from e


def read_lines(path: str, tokens: str = "whitespace", max_length: int | None = None,
               on_overflow: str = "error") -> Lines:
    """Tokenized non-blank lines of a UTF-8 text file.

    Parameters
    ----------
    path : str
        The file; lines end with ``\\n``, ``\\r\\n`` or ``\\r``, blank ones are skipped.
    tokens : {"whitespace", "char"}
        Words or characters.
    max_length : int, optional
        Longest line, in tokens; ``on_overflow`` decides what happens to a longer one.
    on_overflow : {"error", "truncate", "drop"}
        ``"error"`` (default) raises ``ValueError`` naming the file, the line and its length;
        ``"truncate"`` keeps the first ``max_length`` tokens; ``"drop"`` leaves the line out.
        Nothing is lost silently: the result's ``overflow`` counts the lines dropped and
        truncated and the tokens cut.

    Returns
    -------
    Lines
        A list of token lists, with ``path``, ``line_numbers`` and ``overflow``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        ``path`` is a directory or not a regular file (a FIFO, a device: never read),
        invalid UTF-8 (naming the line and byte offset), a line longer than ``max_length``
        under ``on_overflow="error"``, or no sequence left.
    """
    if tokens not in ("whitespace", "char"):
        raise ValueError(f"tokens must be 'whitespace' or 'char', got tokens={tokens!r}")
    check_int("max_length", max_length, low=1, allow_none=True)
    if on_overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"on_overflow must be one of {OVERFLOW_POLICIES}, got "
                         f"on_overflow={on_overflow!r}")
    if max_length is None and on_overflow != "error":
        raise ValueError(f"on_overflow={on_overflow!r} needs max_length (the longest line to "
                         "keep whole), got max_length=None")
    try:
        data = read_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"text file not found: path={path!r}") from None
    except IsADirectoryError:
        raise ValueError(f"text file path={path!r} is a directory: name a UTF-8 text "
                         "file") from None
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        # e.strerror names the path and says what it is (a FIFO, a character device...).
        raise ValueError(f"text file {e.strerror}; it is not read (a FIFO could block, a "
                         "device never end): name a UTF-8 text file") from None
    text = _decode_utf8(data, path)
    # The line breaks of Python's text mode (universal newlines), so line numbers match it.
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    split = str.split if tokens == "whitespace" else list
    numbers = [i + 1 for i, ln in enumerate(raw) if ln.strip()]
    lines = [split(raw[i - 1]) for i in numbers]
    counts = OverflowCounts()
    if max_length is not None:
        long = [j for j, ln in enumerate(lines) if len(ln) > max_length]
        if long and on_overflow == "error":
            j = long[0]
            raise ValueError(
                f"text file {path!r} line {numbers[j]} has {len(lines[j])} tokens, more than "
                f"max_length={max_length} ({len(long)} line(s) are longer); pass on_overflow="
                "'truncate' (keep their first max_length tokens) or 'drop' (leave them out), "
                "or a larger max_length"
            )
        if on_overflow == "truncate":
            cut = sum(len(lines[j]) - max_length for j in long)
            for j in long:
                lines[j] = lines[j][:max_length]
            counts = OverflowCounts(lines_truncated=len(long), tokens_cut=cut)
        elif long:
            gone = set(long)
            cut = sum(len(lines[j]) for j in long)
            lines = [ln for j, ln in enumerate(lines) if j not in gone]
            numbers = [n for j, n in enumerate(numbers) if j not in gone]
            counts = OverflowCounts(lines_dropped=len(long), tokens_cut=cut)
    if not lines:
        raise ValueError(
            f"text file {path!r} has no sequences"
            + (f" of at most max_length={max_length} tokens" if max_length is not None else "")
            + f" (read {len(raw)} lines)"
        )
    return Lines(lines, path, numbers, counts)


def text_file(path: str, tokens: str = "whitespace", vocab: Vocabulary | None = None,
              min_count: int = 1, max_length: int | None = None, on_overflow: str = "error"):
    """One sequence per line of a UTF-8 text file; ``tokens`` is ``"whitespace"`` or ``"char"``.

    Blank lines are skipped; ``max_length`` and ``on_overflow`` are those of :func:`read_lines`.
    Returns ``(FlatSequences, Vocabulary)`` in the language-model form of :func:`penn_treebank`;
    the dataset's ``line_numbers`` are the lines of ``path`` and its ``overflow``
    (:class:`OverflowCounts`) counts the lines dropped or truncated. The vocabulary is built
    from this file unless given (to hold out lines, build it from the training lines only:
    :func:`read_lines`, then :meth:`Vocabulary.build` and :func:`encode_lines`).
    """
    lines = read_lines(path, tokens, max_length, on_overflow)
    if vocab is None:
        vocab = Vocabulary.build(lines, min_count=min_count)
    ds = encode_lines(lines, vocab)
    ds.overflow = lines.overflow
    return ds, vocab
