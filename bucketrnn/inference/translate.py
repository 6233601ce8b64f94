"""Using a trained sequence-pair model: translate sources, score translations.

:func:`translate` is what ``bucketrnn translate RUN_DIR FILE`` runs: sources (text, or token
lists) are planned into source-length buckets like training data (:func:`plan_buckets`), each
bucket's batches are padded to its length and decoded greedily or by beam search with
:class:`~bucketrnn.models.decode.Seq2SeqDecoder` (one encoder graph per bucket, one step graph),
and the outputs come back in input order. :func:`decode_ids` is the same on token ids;
:func:`score_pairs` adds exact match and corpus BLEU-4 (:mod:`bucketrnn.inference.bleu`) against the
targets.

Examples
--------
>>> import mxnet as mx
>>> from bucketrnn import Vocabulary
>>> from bucketrnn.models import Seq2Seq
>>> vocab = Vocabulary.build([["a", "b", "c"]])
>>> model = Seq2Seq((3, 3), src_vocab_size=len(vocab), hidden_size=8)
>>> model.initialize(mx.init.Xavier())
>>> out = translate(model, vocab, vocab, ["a b", "c a b", "b"], max_length=4)
>>> len(out), all(isinstance(s, str) for s in out)
(3, True)
"""

from __future__ import annotations

import numpy as np

from bucketrnn.data.datasets import EOS, read_lines, split_tokens
from bucketrnn.data.pairs import decode_ids as ids_to_text
from bucketrnn.data.plan import find_outliers, plan_buckets
from bucketrnn.errors import GraphTooLargeError
from bucketrnn.inference.bleu import corpus_bleu, exact_match
from bucketrnn.models.decode import Seq2SeqDecoder
from bucketrnn.validation import check_choice, check_int, quote_tokens

__all__ = ["decode_ids", "score_pairs", "translate", "translate_file"]


def decode_ids(decoder: Seq2SeqDecoder, sources, beam_size: int = 1,
               length_penalty: float = 0.0, max_length: int | None = None,
               batch_size: int = 32, num_buckets: int = 8) -> list:
    """Target ids (without ``<eos>``) for each source of token ids, in input order.

    Sources are bucketed by length (at most ``num_buckets`` buckets, ``batch_size`` sources a
    batch); ``beam_size=1`` is greedy decoding, more is beam search (the best hypothesis).
    """
    check_int("beam_size", beam_size, low=1)
    check_int("batch_size", batch_size, low=1)
    check_int("num_buckets", num_buckets, low=1)
    sources = [np.asarray(s, dtype=np.int64) for s in sources]
    if not sources:
        raise ValueError("sources must not be empty")
    lengths = np.array([s.size for s in sources], dtype=np.int64)
    if (lengths < 1).any():
        raise ValueError(f"source {int(np.flatnonzero(lengths < 1)[0])} is empty: every source "
                         "needs at least one token")
    plan = plan_buckets(lengths, num_buckets=min(num_buckets, np.unique(lengths).size),
                        batch_size=batch_size)
    bucket = plan.assign(lengths)
    # Every bucket's memory is judged before any is decoded, the largest first: a source too
    # long to decode is refused before the shorter ones take their time.
    for b in np.argsort(plan.keys)[::-1]:
        members = int(np.count_nonzero(bucket == b))
        if members:
            decoder.check_memory(int(plan.keys[b]), min(batch_size, members), beam_size)
    out = [None] * len(sources)
    for b, src_len in enumerate(plan.keys):
        members = np.flatnonzero(bucket == b)
        for start in range(0, members.size, batch_size):
            rows = members[start:start + batch_size]
            batch = [sources[i] for i in rows]
            if beam_size == 1:
                hyps = [h[0] for h in decoder.greedy(batch, max_length, src_len=src_len)]
            else:
                hyps = [h[0][0] for h in decoder.beam(batch, beam_size, max_length,
                                                      length_penalty, n_best=1,
                                                      src_len=src_len)]
            for i, ids in zip(rows, hyps):
                out[i] = ids
    return out


def _tokens(sources, tokens):
    check_choice("tokens", tokens, ("whitespace", "char"))
    out = []
    for i, s in enumerate(sources):
        toks = split_tokens(s, tokens) if isinstance(s, str) else list(s)
        if not toks:
            raise ValueError(f"source {i} is empty ({s!r}): every source needs at least one "
                             "token")
        out.append(toks)
    return out


def translate(model, src_vocab, tgt_vocab, sources, tokens: str = "whitespace",
              beam_size: int = 1, length_penalty: float = 0.0, max_length: int | None = None,
              batch_size: int = 32, num_buckets: int = 8, decoder=None) -> list:
    """Translate ``sources`` with a trained :class:`~bucketrnn.models.Seq2Seq`.

    Parameters
    ----------
    model : Seq2Seq
        A block of the trained model (any bucket key; its parameters are used).
    src_vocab, tgt_vocab : Vocabulary
        The run's ``vocab.json`` and ``tgt_vocab.json``.
    sources : list of str or list of list of str
        One source each: text (split as ``tokens``) or tokens; unknown tokens become
        ``<unk>``.
    tokens : {"whitespace", "char"}
        How text is split, and how output tokens are joined (``" "`` or ``""``).
    beam_size, length_penalty, max_length, batch_size, num_buckets :
        See :func:`decode_ids` and :meth:`Seq2SeqDecoder.beam`.
    decoder : Seq2SeqDecoder, optional
        Reuse one (and its compiled graphs) across calls.

    Returns
    -------
    list of str
        The best translation of each source, in input order.
    """
    decoder = decoder or Seq2SeqDecoder(model, eos_id=tgt_vocab[EOS])
    ids = decode_ids(decoder, [src_vocab.encode(t) for t in _tokens(sources, tokens)],
                     beam_size, length_penalty, max_length, batch_size, num_buckets)
    return [ids_to_text(i, tgt_vocab, tokens) for i in ids]


def score_pairs(decoder: Seq2SeqDecoder, examples, unk_id: int | None = None,
                **kwargs) -> dict:
    """Decode the sources of ``examples`` (``(source ids, target ids)``, the form of
    :func:`bucketrnn.data.pairs.encode_pairs`; a trailing ``<eos>`` of the target is dropped) and
    compare with the targets: ``{"exact_match", "bleu", "pairs"}``. With ``unk_id`` (the target
    vocabulary's ``<unk>``), a target token outside the vocabulary matches nothing: an output
    ``<unk>`` is not the word the reference holds. ``kwargs`` go to :func:`decode_ids`."""
    check_int("unk_id", unk_id, low=0, allow_none=True)
    refs = []
    for _, tgt in examples:
        t = [int(x) for x in tgt]
        t = t[:t.index(decoder.eos_id)] if decoder.eos_id in t else t
        refs.append(t if unk_id is None else [-1 if x == unk_id else x for x in t])
    hyps = decode_ids(decoder, [src for src, _ in examples], **kwargs)
    return {"exact_match": exact_match(hyps, refs), "bleu": corpus_bleu(hyps, refs),
            "pairs": len(refs)}


def translate_file(model, src_vocab, tgt_vocab, path: str, tokens: str = "whitespace",
                   **kwargs) -> dict:
    """Translate every non-blank line of a UTF-8 file (``bucketrnn translate RUN_DIR FILE``).

    A line is a source, or a ``source<TAB>target`` pair of a pairs file (the target is
    ignored). ``kwargs`` go to :func:`translate` (``beam_size``, ``length_penalty``,
    ``max_length``, ``batch_size``, ``num_buckets``, ``decoder``).

    Returns
    -------
    dict
        ``outputs`` (one string per line read, in file order), ``line_numbers`` (1-based,
        ``int64``: the file line each output answers; blank lines are skipped) and ``notes``
        (e.g. how many source tokens were not in the vocabulary).

    Raises
    ------
    ValueError
        What :func:`~bucketrnn.data.datasets.read_lines` refuses; a line with an empty source; a
        source far longer than the rest (:func:`bucketrnn.data.plan.find_outliers`), naming its
        line, before any graph of its length is built.
    GraphTooLargeError
        A source too long to decode in the memory there is (the decoder's ``memory_limit``,
        :meth:`~bucketrnn.models.decode.Seq2SeqDecoder.estimate_memory`), naming the file and
        its longest line, before its encoder graph is built.
    """
    lines = read_lines(path, tokens="char")  # characters keep the tabs
    sources = []
    for chars, number in zip(lines, lines.line_numbers.tolist()):
        text = "".join(chars).split("\t", 1)[0]
        toks = split_tokens(text, tokens)
        if not toks:
            raise ValueError(f"file {path!r} line {number} has an empty source")
        sources.append(toks)
    # decode_ids' own outlier check would name a 0-based source and library arguments, after
    # reading: name the file's line (a 10**6-token line would otherwise be traced for hours).
    found = find_outliers([len(t) for t in sources])
    if found:
        i, steps = int(found.indices[0]), int(found.lengths[0])
        raise ValueError(f"file {path!r} line {int(lines.line_numbers[i])} is a source of "
                         f"{steps} tokens, far more than the rest need ({found.rest_max} at "
                         f"most; {found.rule('line')}): it would unroll a {steps}-step encoder "
                         "graph; split or cut such lines")
    unknown = sorted({t for toks in sources for t in toks if t not in src_vocab.stoi})
    notes = []
    if unknown:
        shown = quote_tokens(unknown, 10)
        notes.append(f"{len(unknown)} source token(s) not in the run's vocabulary, read as "
                     f"<unk>: {shown}")
    try:
        outputs = translate(model, src_vocab, tgt_vocab, sources, tokens=tokens, **kwargs)
    except GraphTooLargeError as e:
        # The decoder's hint names library arguments: name the file's longest line.
        i = int(np.argmax([len(t) for t in sources]))
        what = str(e).split(": lower the largest bucket length", 1)[0]
        raise GraphTooLargeError(f"file {path!r} is too long to decode here: {what}; its "
                                 f"longest source, line {int(lines.line_numbers[i])}, is "
                                 f"{len(sources[i])} tokens: split or cut long lines") from None
    return {"outputs": outputs, "line_numbers": lines.line_numbers.copy(), "notes": notes}
