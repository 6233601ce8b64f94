"""Sequence pairs from a text file: one ``source<TAB>target`` pair a line.

:func:`read_pairs` reads and checks the file (every bad line is an error naming the file and the
line), :func:`pair_vocabularies` builds the source and target vocabularies (separate or one
shared), :func:`encode_pairs` turns the pairs into ``(source ids, target ids + <eos>)`` examples
a :class:`~bucketrnn.BucketLoader` plans on ``(src_len, tgt_len)`` keys. The target ends with
``<eos>`` (so a decoder learns where to stop) and the decoder starts from ``<eos>`` too, the
begin-of-sentence convention of the language-model data.

In a run directory the source vocabulary is ``vocab.json`` (as for every run) and the target
vocabulary ``tgt_vocab.json``; with a shared vocabulary both hold the same tokens.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "pairs.tsv")
>>> with open(path, "w") as f:
...     _ = f.write("a b c\\tc b a\\nb c\\tc b\\n")
>>> pairs = read_pairs(path)
>>> pairs[0], pairs.line_numbers.tolist()
((['a', 'b', 'c'], ['c', 'b', 'a']), [1, 2])
>>> src, tgt = pair_vocabularies(pairs)
>>> examples = encode_pairs(pairs, src, tgt)
>>> examples[1][0].tolist(), examples[1][1].tolist(), tgt.itos[1]
([2, 3], [2, 3, 1], '<eos>')
"""

from __future__ import annotations

import numpy as np

from bucketrnn._aliases import moved_names
from bucketrnn.data.datasets import EOS, OverflowCounts, Vocabulary, read_lines, split_tokens
from bucketrnn.validation import check_choice, check_int

__all__ = ["Pairs", "TOY_TASKS", "decode_ids", "encode_pairs", "pair_vocabularies",
           "parse_pair", "read_pairs", "toy_pairs"]
__getattr__ = moved_names(__name__, {"TGT_VOCAB": "bucketrnn.training.rundir"})

_POLICIES = ("error", "truncate", "drop")
TOY_TASKS = ("copy", "reverse", "translit")
_LETTERS = "abcdefghijkl"


class Pairs(list):
    """``(source tokens, target tokens)`` pairs of a file, with ``path``, ``line_numbers``
    (1-based, ``int64``), ``tokens`` (``"whitespace"`` or ``"char"``) and ``overflow``
    (:class:`~bucketrnn.data.datasets.OverflowCounts`: pairs dropped or cut by ``max_length``)."""

    def __init__(self, pairs, path: str, line_numbers, tokens: str, overflow: OverflowCounts):
        super().__init__(pairs)
        self.path, self.tokens, self.overflow = path, tokens, overflow
        self.line_numbers = np.asarray(line_numbers, dtype=np.int64)

    def subset(self, indices) -> Pairs:
        """The pairs at ``indices``, in that order (with their line numbers)."""
        indices = np.asarray(indices, dtype=np.int64)
        return Pairs([self[i] for i in indices], self.path, self.line_numbers[indices],
                     self.tokens, self.overflow)


def read_pairs(path: str, tokens: str = "whitespace", max_length: int | None = None,
               on_overflow: str = "error") -> Pairs:
    """The ``source<TAB>target`` pairs of a UTF-8 file (blank lines skipped; a line holding a
    tab is never blank).

    Parameters
    ----------
    path : str
    tokens : {"whitespace", "char"}
        Words, or characters (spaces inside a side are tokens then).
    max_length : int, optional
        Longest side, in tokens; ``on_overflow`` decides what happens to a pair with a longer
        side: ``"error"`` (default, names the line), ``"truncate"`` (cut that side) or
        ``"drop"`` (leave the pair out); both are counted in ``Pairs.overflow``.

    Raises
    ------
    ValueError
        A line without a tab, with more than one, with an empty source or target, or with
        ``<eos>`` in its target (naming the file and the line); anything
        :func:`~bucketrnn.data.datasets.read_lines` refuses (not UTF-8, a directory or device); no
        pair left.
    FileNotFoundError
    """
    check_choice("tokens", tokens, ("whitespace", "char"))
    check_int("max_length", max_length, low=1, allow_none=True)
    check_choice("on_overflow", on_overflow, _POLICIES)
    # Characters keep the tabs (and every other byte of the line): the line comes back whole.
    # A line of only tabs and spaces is no blank line here: it is read (and refused).
    lines = read_lines(path, tokens="char", keep="\t")
    pairs, numbers = [], []
    dropped = truncated = cut = 0
    for chars, number in zip(lines, lines.line_numbers.tolist()):
        pair, lost = parse_pair("".join(chars), path, number, tokens, max_length, on_overflow)
        cut += lost
        if pair is None:
            dropped += 1
            continue
        truncated += lost > 0
        pairs.append(pair)
        numbers.append(number)
    if not pairs:
        raise ValueError(f"pairs file {path!r} has no pair of at most max_length={max_length} "
                         "tokens a side")
    return Pairs(pairs, path, numbers, tokens, OverflowCounts(dropped, truncated, cut))


def parse_pair(text: str, path: str, number: int, tokens: str, max_length: int | None,
               on_overflow: str) -> tuple:
    """One line of a pairs file: ``((source tokens, target tokens), tokens cut)``, or
    ``(None, tokens cut)`` for a pair ``on_overflow="drop"`` leaves out.

    ``text`` is the line without its line break. A ``ValueError`` names the file and the line
    for every bad line (:func:`read_pairs`); the streaming reader of
    :mod:`bucketrnn.data.prepare` parses lines with it too, so both give the same errors.
    """
    tabs = text.count("\t")
    if tabs != 1:
        raise ValueError(f"pairs file {path!r} line {number} has {tabs} tabs: each line must "
                         "be one source<TAB>target pair (exactly one tab)")
    src, tgt = (split_tokens(side, tokens) for side in text.split("\t"))
    for name, side in (("source", src), ("target", tgt)):
        if not side:
            raise ValueError(f"pairs file {path!r} line {number} has an empty {name}: each "
                             "line must be a non-empty source<TAB>non-empty target")
    if EOS in tgt:  # whitespace tokens only: one character is never '<eos>'
        raise ValueError(f"pairs file {path!r} line {number} has {EOS!r} in its target at "
                         f"token {tgt.index(EOS) + 1}: it is the end-of-target marker (every "
                         "target gets one appended), so decoding would stop there and never "
                         "produce the rest; remove it from the file")
    longest = max(len(src), len(tgt))
    if max_length is None or longest <= max_length:
        return (src, tgt), 0
    if on_overflow == "error":
        raise ValueError(
            f"pairs file {path!r} line {number} has a side of {longest} tokens, more "
            f"than max_length={max_length}; pass on_overflow='truncate' or 'drop', or "
            "a larger max_length")
    cut = max(len(src) - max_length, 0) + max(len(tgt) - max_length, 0)
    if on_overflow == "drop":
        return None, cut
    return (src[:max_length], tgt[:max_length]), cut


def pair_vocabularies(pairs, shared: bool = False, min_count: int = 1):
    """``(source, target)`` :class:`~bucketrnn.Vocabulary` of ``pairs``; with ``shared=True``
    one vocabulary (the same object) built from both sides."""
    check_int("min_count", min_count, low=1)
    if shared:
        vocab = Vocabulary.build([s for pair in pairs for s in pair], min_count=min_count)
        return vocab, vocab
    return (Vocabulary.build([p[0] for p in pairs], min_count=min_count),
            Vocabulary.build([p[1] for p in pairs], min_count=min_count))


def encode_pairs(pairs, src_vocab: Vocabulary, tgt_vocab: Vocabulary) -> list:
    """``[(source ids, target ids + <eos>), ...]`` as ``int32`` arrays (unknown tokens: 0)."""
    eos = tgt_vocab[EOS]
    return [(src_vocab.encode(src), np.append(tgt_vocab.encode(tgt), eos).astype(np.int32))
            for src, tgt in pairs]


def decode_ids(ids, vocab: Vocabulary, tokens: str = "whitespace") -> str:
    """The text of target ids (up to the first ``<eos>``), joined as ``tokens`` were split."""
    eos = vocab[EOS]
    words = []
    for i in np.asarray(ids, dtype=np.int64).tolist():
        if i == eos:
            break
        words.append(vocab.itos[i] if 0 <= i < len(vocab) else vocab.itos[0])
    return (" " if tokens == "whitespace" else "").join(words)


def toy_pairs(n: int, task: str = "reverse", min_length: int = 3, max_length: int = 40,
              median: float = 9.0, seed: int = 0) -> list:
    """``n`` synthetic ``(source tokens, target tokens)`` pairs with a heavy-ish length spread.

    Source lengths are log-normal around ``median`` (sigma 0.6), clipped to ``[min_length,
    max_length]``: most pairs are short, a tail reaches ``max_length``. Sources are letters
    ``a``-``l``; ``task`` makes the target: ``"copy"`` (the source), ``"reverse"`` (reversed),
    ``"translit"`` (reversed, each letter upper-cased, vowels doubled: ``"b a" -> "A A B"``, so
    the target is longer than the source by the number of vowels).

    Examples
    --------
    >>> toy_pairs(1, "translit", max_length=3, seed=1)
    [(['j', 'l', 'a'], ['A', 'A', 'L', 'J'])]
    """
    check_int("n", n, low=1)
    check_choice("task", task, TOY_TASKS)
    check_int("min_length", min_length, low=1)
    check_int("max_length", max_length, low=min_length)
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(np.log(median), 0.6, n)), min_length, max_length)
    out = []
    for length in lengths.astype(np.int64):
        src = [_LETTERS[i] for i in rng.integers(0, len(_LETTERS), length)]
        if task == "copy":
            tgt = list(src)
        elif task == "reverse":
            tgt = src[::-1]
        else:
            tgt = [c.upper() for c in src[::-1] for _ in range(2 if c in "aei" else 1)]
        out.append((src, tgt))
    return out
