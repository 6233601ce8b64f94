"""Datasets: the flat large-corpus form, a vocabulary, Penn Treebank and text files.

:class:`FlatSequences` keeps a whole corpus as one integer token array plus ``N + 1`` offsets, so
a million sentences cost two numpy arrays, not a million Python lists; its lengths are
``np.diff(offsets)``. Sequences read from a text file remember their 1-based line numbers
(``line_numbers``), through subsets and held-out splits, so an error can name the line.

Size: about 850 lines: the vocabulary, the flat corpus and the readers of the four text formats
with their error messages, which :mod:`bucketrnn.data.prepare` shares so a prepared corpus
fails exactly as the in-memory readers do.
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

from bucketrnn.data.plan import OVERFLOW_POLICIES
from bucketrnn.files import atomic_write, read_json, read_regular
from bucketrnn.validation import check_int, quote_token

__all__ = ["BOS", "EOS", "LABELS", "PAD", "UNK", "FlatSequences", "LabelledSplits",
           "LabelledText", "Lines", "OverflowCounts", "Vocabulary", "encode_lines", "label_lines",
           "labelled_text_file", "penn_treebank", "penn_treebank_sentences", "read_labelled",
           "read_lines", "split_indices", "split_tokens", "text_file", "label_kind",
           "no_sequences_error", "no_token_after_label", "overflow_error", "split_tagged",
           "utf8_error"]

EOS = "<eos>"
UNK = "<unk>"
PAD = "<pad>"
BOS = "<bos>"


class FlatSequences(Dataset):
    """Integer sequences stored as one flat token array plus offsets.

    ``ds[i]`` is ``tokens[offsets[i]:offsets[i + 1]]`` (a view). Pass ``labels`` (one per
    sequence) to get ``(sequence, label)`` items, or ``tags`` (an integer class id per token,
    aligned with ``tokens``) to get ``(sequence, tags)`` items for ``task="tag"``, and
    ``line_numbers`` (one per sequence, where it came from: :func:`encode_lines` passes the
    file's 1-based line numbers) to keep them through :meth:`subset`; ``line_numbers`` is None
    otherwise.

    Examples
    --------
    >>> ds = FlatSequences.from_sequences([[1, 2, 3], [4, 5]])
    >>> ds[1].tolist(), ds.lengths().tolist()
    ([4, 5], [3, 2])
    """

    def __init__(self, tokens: ArrayLike, offsets: ArrayLike, labels: ArrayLike | None = None,
                 line_numbers: ArrayLike | None = None, tags: ArrayLike | None = None):
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
        if tags is not None:
            tags = np.asarray(tags)
            if labels is not None:
                raise ValueError("give labels (one per sequence) or tags (one per token), not both")
            if tags.shape != tokens.shape or not np.issubdtype(tags.dtype, np.integer):
                raise ValueError(f"tags must be integer class ids, one per token: shape "
                                 f"{tokens.shape}, got shape {tags.shape} dtype {tags.dtype}")
            if tags.size and (tags.min() < 0 or tags.max() > np.iinfo(np.int32).max):
                bad = tags[(tags < 0) | (tags > np.iinfo(np.int32).max)][0]
                raise ValueError(f"tags must be class ids >= 0 (int32), got tag {bad.item()!r}")
            tags = tags.astype(np.int32, copy=False)
        if line_numbers is not None:
            line_numbers = np.asarray(line_numbers, dtype=np.int64)
            if line_numbers.shape != (offsets.size - 1,):
                raise ValueError(f"line_numbers must have one entry per sequence "
                                 f"({offsets.size - 1}), got shape {line_numbers.shape}")
        self.tokens = tokens
        self.offsets = offsets
        self.labels = labels
        self.line_numbers = line_numbers
        self.tags = tags

    @classmethod
    def from_sequences(cls, sequences: Iterable, labels=None, dtype=np.int32,
                       tags: Iterable | None = None) -> "FlatSequences":
        """From a list of sequences (and ``labels``, one per sequence, or ``tags``, a sequence
        of class ids per sequence as long as it)."""
        seqs = [np.asarray(s, dtype=dtype).ravel() for s in sequences]
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([s.size for s in seqs])
        tokens = np.concatenate(seqs) if seqs else np.zeros(0, dtype=dtype)
        if tags is not None:
            tags = [np.asarray(t).ravel() for t in tags]
            if len(tags) != len(seqs):
                raise ValueError(f"tags must hold one sequence of class ids per sequence "
                                 f"({len(seqs)}), got {len(tags)}")
            for i, (s, t) in enumerate(zip(seqs, tags)):
                if t.size != s.size:
                    raise ValueError(f"sequence {i} has {s.size} tokens but {t.size} tags; "
                                     "tags need one class id per token")
            tags = np.concatenate(tags) if tags else np.zeros(0, np.int32)
        return cls(tokens, offsets, labels, tags=tags)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, i):
        start, end = self.offsets[i], self.offsets[i + 1]
        seq = self.tokens[start:end]
        if self.tags is not None:
            return seq, self.tags[start:end]
        return seq if self.labels is None else (seq, self.labels[i])

    def subset(self, indices) -> "FlatSequences":
        """A new FlatSequences holding the given examples, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        lens = self.lengths()[indices]
        offsets = np.zeros(indices.size + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lens)
        starts = np.repeat(self.offsets[indices] - offsets[:-1], lens)
        positions = starts + np.arange(offsets[-1])
        tokens = self.tokens[positions]
        labels = None if self.labels is None else self.labels[indices]
        lines = None if self.line_numbers is None else self.line_numbers[indices]
        tags = None if self.tags is None else self.tags[positions]
        return FlatSequences(tokens, offsets, labels, line_numbers=lines, tags=tags)

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
        return cls.from_counts(counter, min_count, max_size, specials)

    @classmethod
    def from_counts(cls, counts: Counter, min_count: int = 1, max_size: int | None = None,
                    specials: Sequence[str] = ()) -> "Vocabulary":
        """:meth:`build` from token counts already made (a ``Counter`` whose insertion order is
        the order tokens were first seen, which breaks ties; what a streaming pass over a file
        larger than memory collects)."""
        special = [UNK, EOS, *specials]
        words = [w for w, c in counts.most_common() if c >= min_count and w not in special]
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
        """Write the tokens as a JSON list, atomically
        (:func:`bucketrnn.files.atomic_write`:
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


def penn_treebank_sentences(split: str = "train") -> Lines:
    """The Penn Treebank sentences of ``split`` as token lists (the ``treebank`` package, no
    network), as :class:`Lines` of path ``"treebank:<split>"`` numbered from 1."""
    import treebank

    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got split={split!r}")
    lines = [ln.split() for ln in treebank.penn[split].split("\n") if ln.strip()]
    return Lines(lines, f"treebank:{split}", np.arange(1, len(lines) + 1), OverflowCounts())


def penn_treebank(split: str = "train", vocab: Vocabulary | None = None, limit: int | None = None):
    """Penn Treebank language-model sentences from the ``treebank`` package.

    Returns ``(FlatSequences, Vocabulary)``; each sequence is ``<eos> words <eos>`` as ids, so
    with ``task="lm"`` its length is the number of words plus one. The vocabulary is built from
    the train split unless given.
    """
    everything = list(penn_treebank_sentences(split))
    lines = everything if limit is None else everything[:limit]
    if vocab is None:
        vocab = Vocabulary.build(everything if split == "train"
                                 else penn_treebank_sentences("train"))
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
        raise ValueError(utf8_error(path, line, e.start, data[e.start], e.reason)) from e


def utf8_error(path: str, line: int, offset: int, byte: int, reason: str) -> str:
    """The message for a file that is not UTF-8: ``line`` (1-based) holds ``byte`` at byte
    ``offset`` (0-based) of the file. One message for every reader (in memory or streaming)."""
    return (f"text file {path!r} is not valid UTF-8: line {line}, byte offset {offset} of the "
            f"file (0-based) holds byte 0x{byte:02x} ({reason}); re-encode the file "
            "as UTF-8 (e.g. iconv -f <its encoding> -t UTF-8) or fix that line")


def overflow_error(path: str, number: int, length: int, max_length: int, longer: int) -> str:
    """The message for a line of ``length`` tokens over ``max_length`` under
    ``on_overflow='error'`` (``longer``: how many lines of the file are over)."""
    return (f"text file {path!r} line {number} has {length} tokens, more than "
            f"max_length={max_length} ({longer} line(s) are longer); pass on_overflow="
            "'truncate' (keep their first max_length tokens) or 'drop' (leave them out), "
            "or a larger max_length")


def no_sequences_error(path: str, max_length: int | None, lines_read: int) -> str:
    """The message for a file with no sequence left (blank, or every line dropped)."""
    return (f"text file {path!r} has no sequences"
            + (f" of at most max_length={max_length} tokens" if max_length is not None else "")
            + f" (read {lines_read} lines)")


def split_tokens(text: str, tokens: str = "whitespace") -> list:
    """The tokens of ``text``: its words (split at whitespace) for ``tokens="whitespace"``, its
    characters for ``"char"`` (spaces are tokens then).

    >>> split_tokens("a b"), split_tokens("a b", "char")
    (['a', 'b'], ['a', ' ', 'b'])
    """
    return text.split() if tokens == "whitespace" else list(text)


def read_lines(path: str, tokens: str = "whitespace", max_length: int | None = None,
               on_overflow: str = "error", keep: str | None = None) -> Lines:
    """Tokenized non-blank lines of a UTF-8 text file.

    Parameters
    ----------
    path : str
        The file; lines end with ``\\n``, ``\\r\\n`` or ``\\r``, blank ones are skipped;
        a leading UTF-8 byte-order mark is not read as text.
    tokens : {"whitespace", "char"}
        Words or characters.
    max_length : int, optional
        Longest line, in tokens; ``on_overflow`` decides what happens to a longer one.
    on_overflow : {"error", "truncate", "drop"}
        ``"error"`` (default) raises ``ValueError`` naming the file, the line and its length;
        ``"truncate"`` keeps the first ``max_length`` tokens; ``"drop"`` leaves the line out.
        Nothing is lost silently: the result's ``overflow`` counts the lines dropped and
        truncated and the tokens cut.
    keep : str, optional
        Characters that make a line of whitespace not blank (kept, not skipped): a pairs file
        passes ``"\\t"``, so a line holding only its separator is read and refused, not lost.

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
    if keep is not None and not isinstance(keep, str):
        raise TypeError(f"keep must be a string of characters or None, got keep={keep!r}")
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
    # A byte-order mark (Windows editors write one) is no text: kept, it would glue itself to
    # the first token (a vocabulary entry '\ufeffthe' apart from 'the').
    text = text[1:] if text.startswith("\ufeff") else text
    # The line breaks of Python's text mode (universal newlines), so line numbers match it.
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    split = str.split if tokens == "whitespace" else list
    numbers = [i + 1 for i, ln in enumerate(raw)
               if ln.strip() or (keep and any(c in ln for c in keep))]
    lines = [split(raw[i - 1]) for i in numbers]
    counts = OverflowCounts()
    if max_length is not None:
        long = [j for j, ln in enumerate(lines) if len(ln) > max_length]
        if long and on_overflow == "error":
            j = long[0]
            raise ValueError(overflow_error(path, numbers[j], len(lines[j]), max_length,
                                            len(long)))
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
        raise ValueError(no_sequences_error(path, max_length, len(raw)))
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


# ---------------------------------------------------------------- labelled text files
LABELS = ("first_token", "contains:<token>", "tags")


def label_kind(label) -> str:
    """``"first_token"``, ``"contains"`` or ``"tags"`` for a ``label`` of :data:`LABELS`; a
    ``ValueError`` naming ``label`` otherwise."""
    if label in ("first_token", "tags"):
        return label
    if isinstance(label, str) and label.startswith("contains:") and len(label) > len("contains:"):
        return "contains"
    raise ValueError(f"label must be one of {LABELS} (contains: followed by a token), got "
                     f"label={label!r}")


@dataclass
class LabelledText:
    """Sentences of a labelled text file, their labels, and where each came from.

    Attributes
    ----------
    sentences : Lines
        The token lists, label tokens removed (the words a model reads), with the file's
        ``path``, ``line_numbers`` and ``overflow``.
    labels : list
        A class name (``str``) per sentence, or for ``label="tags"`` a list of tag names, one
        per token.
    per_token : bool
        True for tags.
    """

    sentences: Lines
    labels: list
    per_token: bool = False

    def __len__(self) -> int:
        return len(self.sentences)

    def classes(self) -> list:
        """The class names that occur, sorted."""
        if self.per_token:
            return sorted({tag for tags in self.labels for tag in tags})
        return sorted(set(self.labels))

    def label_ids(self, classes: Sequence[str]):
        """Labels as class ids of ``classes`` (a class map: id -> name): an ``int32`` array of
        one id per sentence, or for tags a list of ``int32`` arrays (one id per token).

        Raises ``ValueError`` naming the file, line and label for a label not in ``classes``.
        """
        index = {c: i for i, c in enumerate(classes)}
        lines = self.sentences.line_numbers

        def lookup(name, j):
            try:
                return index[name]
            except KeyError:
                raise ValueError(f"{self.sentences.path!r} line {int(lines[j])}: label "
                                 f"{quote_token(name)} is not one of the {len(index)} classes "
                                 f"{list(index)[:10]!r}") from None

        if self.per_token:
            return [np.fromiter((lookup(t, j) for t in tags), dtype=np.int32, count=len(tags))
                    for j, tags in enumerate(self.labels)]
        return np.fromiter((lookup(c, j) for j, c in enumerate(self.labels)), dtype=np.int32,
                           count=len(self.labels))

    def subset(self, indices) -> "LabelledText":
        """The given sentences, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        s = self.sentences
        lines = Lines([s[i] for i in indices], s.path, s.line_numbers[indices], s.overflow)
        return LabelledText(lines, [self.labels[i] for i in indices], self.per_token)


def no_token_after_label(path: str, number: int, label: str) -> str:
    """The message for a ``label='first_token'`` line holding only its label."""
    return (f"text file {path!r} line {number} has no token after its label {label!r}: "
            "label='first_token' needs a label and at least one token per line")


def split_tagged(path: str, number: int, items: list) -> tuple:
    """``(tokens, tags)`` of one line of ``token/TAG`` items (split on the last ``/``); a
    ``ValueError`` naming the file, the line and the item without a tag."""
    tokens, tags = [], []
    for item in items:
        token, slash, tag = item.rpartition("/")
        if not slash or not token or not tag:
            what = "no tag" if not slash or not tag else "no token before its '/'"
            raise ValueError(f"tagged file {path!r} line {number}: item {quote_token(item)} has "
                             f"{what}; "
                             "write every item as token/TAG (the tag follows the last '/', so "
                             "a token may itself hold '/')")
        tokens.append(token)
        tags.append(tag)
    return tokens, tags


def read_labelled(path: str, label: str, tokens: str = "whitespace",
                  max_length: int | None = None, on_overflow: str = "error") -> LabelledText:
    """The sentences and labels of a UTF-8 text file, one labelled sentence a line.

    Parameters
    ----------
    path : str
        The file (blank lines are skipped; see :func:`read_lines`).
    label : {"first_token", "contains:<token>", "tags"}
        Where the labels are. ``"first_token"``: the first token of a line is its class and is
        not part of the sentence (``pos a fine film``). ``"contains:<token>"``: class ``"1"``
        when the token occurs in the line (it stays in the sentence), else ``"0"``.
        ``"tags"``: every item is ``token/TAG`` (``The/DT cat/NN``), split on its *last* ``/``
        so a token may hold one (``1/2/CD`` is token ``1/2``, tag ``CD``); needs
        ``tokens="whitespace"``.
    tokens, max_length, on_overflow
        See :func:`read_lines` (``max_length`` counts the items of a line, a first-token
        label included).

    Returns
    -------
    LabelledText

    Raises
    ------
    ValueError
        What :func:`read_lines` raises; an unknown ``label``; a ``first_token`` line with no
        token after its label; a tagged item without a tag (naming the file, line and item).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "tagged.txt")
    >>> _ = open(path, "w").write("The/DT cat/NN sat/VBD\\n1/2/CD cup/NN\\n")
    >>> text = read_labelled(path, "tags")
    >>> text.sentences[1], text.labels[1], text.classes()
    (['1/2', 'cup'], ['CD', 'NN'], ['CD', 'DT', 'NN', 'VBD'])
    """
    if label_kind(label) == "tags" and tokens != "whitespace":
        raise ValueError(f"label='tags' reads whitespace-separated token/TAG items, got "
                         f"tokens={tokens!r}")
    return label_lines(read_lines(path, tokens, max_length, on_overflow), label)


def label_lines(lines: Lines, label: str) -> LabelledText:
    """The sentences and labels of token lines (:func:`read_labelled` without the reading:
    for lines from elsewhere, e.g. :func:`penn_treebank_sentences`); ``label`` as there.

    >>> text = label_lines(penn_treebank_sentences("valid"), "contains:N")
    >>> text.labels[:2], text.sentences.path
    (['0', '1'], 'treebank:valid')
    """
    kind = label_kind(label)
    if not isinstance(lines, Lines):
        raise TypeError(f"lines must be Lines (read_lines, penn_treebank_sentences), got "
                        f"{type(lines).__name__}")
    path, numbers = lines.path, lines.line_numbers
    if kind == "tags":
        pairs = [split_tagged(path, int(n), ln) for ln, n in zip(lines, numbers)]
        sentences, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    elif kind == "first_token":
        short = next((j for j, ln in enumerate(lines) if len(ln) < 2), None)
        if short is not None:
            raise ValueError(no_token_after_label(path, int(numbers[short]), lines[short][0]))
        sentences, labels = [ln[1:] for ln in lines], [ln[0] for ln in lines]
    else:
        word = label.split(":", 1)[1]
        sentences, labels = list(lines), ["1" if word in ln else "0" for ln in lines]
    if kind != "contains":
        _refuse_unprintable(path, numbers, labels, "tag" if kind == "tags" else "label")
    return LabelledText(Lines(sentences, path, numbers, lines.overflow), labels,
                        per_token=kind == "tags")


def _refuse_unprintable(path, numbers, labels, what: str) -> None:
    """Class and tag names are printed (``predict`` writes them to a terminal, the run's class
    map keeps them): refuse one holding a control or format character (a terminal escape
    sequence, a right-to-left override; ``str.isprintable``), naming the file and line. Refused
    rather than escaped on output: the name is the user's own data, and an escaped copy would
    differ from the label a script compares it with."""
    for j, label in enumerate(labels):
        names = label if isinstance(label, list) else (label,)
        bad = next((name for name in names if not name.isprintable()), None)
        if bad is not None:
            raise ValueError(f"text file {path!r} line {int(numbers[j])}: {what} {bad!r} holds an "
                             "unprintable character (a control or format character, such as a "
                             "terminal escape); class and tag names are printed: clean the file")


def split_indices(n: int, valid_fraction: float = 0.1, test_fraction: float = 0.0,
                  seed: int = 0) -> tuple:
    """Seeded held-out index sets of ``n`` examples: ``(train, valid, test)``, each sorted.

    ``round(valid_fraction * n)`` examples go to valid and ``round(test_fraction * n)`` to test,
    drawn by a permutation from ``np.random.default_rng([seed, 0x5EED])``: the same ``(n,
    fractions, seed)`` always give the same split (the app's ``dataset.valid_fraction`` /
    ``test_fraction``).

    >>> [p.tolist() for p in split_indices(5, 0.2, 0.2, seed=0)]
    [[0, 2, 3], [1], [4]]
    """
    check_int("n", n, low=0)
    for name, f in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ValueError(f"{name} must be a number in [0, 1), got {name}={f!r}")
    if valid_fraction + test_fraction >= 1:
        raise ValueError(f"valid_fraction + test_fraction must be < 1 (something to train on), "
                         f"got {valid_fraction} + {test_fraction}")
    perm = np.random.default_rng([seed, 0x5EED]).permutation(n)
    n_valid, n_test = (int(round(f * n)) for f in (valid_fraction, test_fraction))
    parts = perm[:n_valid], perm[n_valid:n_valid + n_test], perm[n_valid + n_test:]
    return tuple(np.sort(p) for p in (parts[2], parts[0], parts[1]))


@dataclass
class LabelledSplits:
    """What :func:`labelled_text_file` returns: the splits (``valid``/``test`` may be None),
    the class map ``classes`` (id -> name, sorted names of every split, so a held-out label is
    never unknown) and ``overflow``, the lines ``max_length`` cut or dropped in every file
    read."""

    train: LabelledText
    valid: LabelledText | None
    test: LabelledText | None
    classes: list
    overflow: OverflowCounts = OverflowCounts()

    @classmethod
    def build(cls, train: LabelledText, valid: LabelledText | None, test: LabelledText | None,
              label: str, overflow: OverflowCounts = OverflowCounts()) -> "LabelledSplits":
        """The splits with their class map: ``["0", "1"]`` for ``contains:``, else the sorted
        class names of every split."""
        if label_kind(label) == "contains":
            classes = ["0", "1"]
        else:
            classes = sorted(set().union(*(part.classes() for part in (train, valid, test)
                                           if part is not None)))
        return cls(train, valid, test, classes, overflow)

    def label_ids(self, split: str):
        """:meth:`LabelledText.label_ids` of ``split`` (``"train"``, ``"valid"``, ``"test"``)
        on :attr:`classes`."""
        return getattr(self, split).label_ids(self.classes)


def labelled_text_file(path: str, label: str, valid_fraction: float = 0.1,
                       test_fraction: float = 0.0, seed: int = 0, valid_path: str | None = None,
                       test_path: str | None = None, tokens: str = "whitespace",
                       max_length: int | None = None,
                       on_overflow: str = "error") -> LabelledSplits:
    """A labelled text file as seeded train / valid (/ test) splits and a class map.

    The file is read with :func:`read_labelled` (``label``, ``tokens``, ``max_length``,
    ``on_overflow``). Without ``valid_path`` and ``test_path``, ``valid_fraction`` and
    ``test_fraction`` of its lines are held out by :func:`split_indices` with ``seed``;
    otherwise the whole file trains and those files are read the same way. The class map is
    the sorted class names of every split (``"0"``, ``"1"`` for ``contains:``), so its ids are
    stable for a given file; save it with the model (the app writes ``tags.json`` for a
    tagger).

    Returns
    -------
    LabelledSplits
        ``train``/``valid``/``test`` :class:`LabelledText` and ``classes``; get the ids with
        ``splits.label_ids("train")``.

    Raises
    ------
    ValueError, FileNotFoundError
        What :func:`read_labelled` raises, prefixed with the argument naming the file
        (``valid_path='held.txt': ...``); no training line left after the split.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "reviews.txt")
    >>> _ = open(path, "w").write("pos a fine film\\nneg dull\\npos good\\nneg bad plot\\n")
    >>> splits = labelled_text_file(path, "first_token", valid_fraction=0.25, seed=0)
    >>> splits.classes, len(splits.train), len(splits.valid), splits.test is None
    (['neg', 'pos'], 3, 1, True)
    >>> splits.train.sentences[0], splits.label_ids("train").tolist()
    (['a', 'fine', 'film'], [1, 1, 0])
    """

    def read(key, value):
        try:
            return read_labelled(value, label, tokens, max_length, on_overflow)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{key}={value!r}: {e}") from None
        except ValueError as e:
            raise ValueError(f"{key}={value!r}: {e}") from None

    label_kind(label)  # an unknown label is named before any file is read
    whole = read("path", path)
    overflow = whole.sentences.overflow
    if valid_path or test_path:
        train = whole
        valid = read("valid_path", valid_path) if valid_path else None
        test = read("test_path", test_path) if test_path else None
        for part in (valid, test):
            overflow += OverflowCounts() if part is None else part.sentences.overflow
    else:
        parts = split_indices(len(whole), valid_fraction, test_fraction, seed)
        if parts[0].size == 0:
            raise ValueError(f"path={path!r} leaves no training lines after holding out "
                             f"valid_fraction={valid_fraction} and test_fraction="
                             f"{test_fraction} of {len(whole)}")
        train, valid, test = (whole.subset(p) if p.size else None for p in parts)
    return LabelledSplits.build(train, valid, test, label, overflow)
