"""Datasets: the flat large-corpus form, a vocabulary, Penn Treebank and text files.

:class:`FlatSequences` keeps a whole corpus as one integer token array plus ``N + 1`` offsets, so
a million sentences cost two numpy arrays, not a million Python lists; its lengths are
``np.diff(offsets)``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterable

import numpy as np
from mxnet.gluon.data import Dataset

__all__ = ["FlatSequences", "Vocabulary", "encode_lines", "penn_treebank", "read_lines", "text_file"]

EOS = "<eos>"
UNK = "<unk>"


class FlatSequences(Dataset):
    """Integer sequences stored as one flat token array plus offsets.

    ``ds[i]`` is ``tokens[offsets[i]:offsets[i + 1]]`` (a view). Pass ``labels`` (one per
    sequence) to get ``(sequence, label)`` items.

    Examples
    --------
    >>> ds = FlatSequences.from_sequences([[1, 2, 3], [4, 5]])
    >>> ds[1].tolist(), ds.lengths().tolist()
    ([4, 5], [3, 2])
    """

    def __init__(self, tokens, offsets, labels=None):
        tokens = np.asarray(tokens)
        offsets = np.asarray(offsets, dtype=np.int64)
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise TypeError(
                f"tokens must be a 1-D integer array, got shape {tokens.shape} dtype {tokens.dtype}"
            )
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != tokens.size:
            raise ValueError(
                "offsets must be 1-D, start at 0 and end at len(tokens)="
                f"{tokens.size}, got offsets[:1]={offsets[:1].tolist()} offsets[-1:]={offsets[-1:].tolist()}"
            )
        if (np.diff(offsets) < 0).any():
            i = int(np.flatnonzero(np.diff(offsets) < 0)[0])
            raise ValueError(f"offsets must be non-decreasing, got offsets[{i}:{i + 2}]={offsets[i:i + 2].tolist()}")
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape[0] != offsets.size - 1:
                raise ValueError(
                    f"labels must have one entry per sequence ({offsets.size - 1}), got {labels.shape[0]}"
                )
        self.tokens = tokens
        self.offsets = offsets
        self.labels = labels

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
        return FlatSequences(tokens, offsets, labels)

    def __repr__(self) -> str:
        return f"FlatSequences(num_sequences={len(self)}, num_tokens={self.tokens.size})"


class Vocabulary:
    """Token <-> id mapping; id 0 is ``<unk>``.

    Examples
    --------
    >>> vocab = Vocabulary.build([["a", "b", "a"]])
    >>> vocab["a"], vocab["zzz"], len(vocab)
    (2, 0, 4)
    """

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != UNK:
            raise ValueError(f"a vocabulary must start with {UNK!r}, got {tokens[:3]!r}")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 1, max_size: int | None = None):
        """``<unk>`` and ``<eos>`` first, then the most frequent tokens (ties: first seen)."""
        counter = Counter()
        for s in sentences:
            counter.update(s)
        special = [UNK, EOS]
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

    def save(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.itos, f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f))


def encode_lines(lines: list[list[str]], vocab: Vocabulary) -> FlatSequences:
    """Token lines in the language-model form of :func:`penn_treebank`."""
    # Language-model form: <eos> w1 ... wn <eos>; the first <eos> acts as begin-of-sentence, so
    # an example of n words gives n + 1 predictions (its length "with <eos>").
    eos = vocab[EOS]
    seqs = [np.concatenate([[eos], vocab.encode(ws), [eos]]).astype(np.int32) for ws in lines]
    return FlatSequences.from_sequences(seqs)


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


def read_lines(path: str, tokens: str = "whitespace", max_length: int | None = None):
    """Tokenized non-blank lines of a UTF-8 text file.

    ``tokens`` is ``"whitespace"`` or ``"char"``; lines longer than ``max_length`` tokens are
    left out. Raises ``FileNotFoundError`` / ``ValueError`` naming the path when nothing is left.
    """
    if tokens not in ("whitespace", "char"):
        raise ValueError(f"tokens must be 'whitespace' or 'char', got tokens={tokens!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text file not found: path={path!r}")
    with open(path, encoding="utf-8") as f:
        raw = [ln.rstrip("\n") for ln in f]
    lines = [ln.split() if tokens == "whitespace" else list(ln) for ln in raw if ln.strip()]
    if max_length is not None:
        lines = [ln for ln in lines if len(ln) <= max_length]
    if not lines:
        raise ValueError(
            f"text file {path!r} has no sequences"
            + (f" of at most max_length={max_length} tokens" if max_length is not None else "")
            + f" (read {len(raw)} lines)"
        )
    return lines


def text_file(path: str, tokens: str = "whitespace", vocab: Vocabulary | None = None,
              min_count: int = 1, max_length: int | None = None):
    """One sequence per line of a UTF-8 text file; ``tokens`` is ``"whitespace"`` or ``"char"``.

    Blank lines are skipped. Returns ``(FlatSequences, Vocabulary)`` in the language-model form of
    :func:`penn_treebank`; the vocabulary is built from this file unless given (to hold out
    lines, build it from the training lines only: :func:`read_lines`, then
    :meth:`Vocabulary.build` and :func:`encode_lines`).
    """
    lines = read_lines(path, tokens, max_length)
    if vocab is None:
        vocab = Vocabulary.build(lines, min_count=min_count)
    return encode_lines(lines, vocab), vocab
