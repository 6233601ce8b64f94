"""The commands' work for language models and classifiers, registered by task.

``("read", "lm" | "classify" | "seq2seq")``: a file in the run's data format for
``evaluate FILE`` (for pairs ``source<TAB>target`` lines);
``("read", "tag")`` and ``("predict", "tag")`` for taggers (``token/TAG`` per token);
``("predict", "classify")``: a class name per line; ``("generate", "lm")``: stateful sampling.
Files are read as the run read its training data (``dataset.tokens``, ``dataset.max_length``
with ``dataset.on_overflow``), encoded with the run's vocabulary (unknown words become
``<unk>``), and batched by :meth:`~bucketrnn.app.trained.TrainedRun.loader`.
"""

from __future__ import annotations

import numpy as np

from bucketrnn.app.config import to_dict
from bucketrnn.app.tasks import Predictions, register
from bucketrnn.app.trained import explain_too_large, refuse_long_lines, refuse_outlier_lines
from bucketrnn.data.datasets import FlatSequences, encode_lines, label_lines, read_lines
from bucketrnn.data.pairs import Pairs, encode_pairs, read_pairs
from bucketrnn.inference.generation import generate
from bucketrnn.inference.translate import translate_file
from bucketrnn.models import tag_sentences
from bucketrnn.models.decode import Seq2SeqDecoder
from bucketrnn.validation import quote_token, quote_tokens

__all__ = ["MAX_PROMPT_CHARACTERS", "generate_lm", "predict_classify", "predict_tag",
           "read_classify", "read_lines_of", "read_lm", "read_seq2seq", "read_tag",
           "translate_seq2seq"]


# The longest prompt generate takes: what one command-line argument may hold on Linux
# (MAX_ARG_STRLEN, 128 KiB with its closing NUL), so load_run(...).generate() and `bucketrnn
# generate --prompt` accept the same prompts. The prompt is fed one token per step.
MAX_PROMPT_CHARACTERS = 2**17 - 1


def read_lines_of(run, path: str, every_line: bool = False):
    """The token lines of ``path`` read with the run's ``dataset`` settings. With
    ``every_line`` (predict: every line gets an answer) a line longer than ``max_length`` is
    truncated (and counted) where the run's policy would drop it."""
    d = to_dict(run.config.dataset)
    policy = d.get("on_overflow", "error") if d["max_length"] is not None else "error"
    if every_line and policy == "drop":
        policy = "truncate"
    try:
        return read_lines(path, tokens=d["tokens"], max_length=d["max_length"],
                          on_overflow=policy)
    except ValueError as e:
        raise _in_run_terms(e, policy) from None


def _in_run_terms(e: ValueError, policy: str) -> ValueError:
    """An overlong-line error of the library in the commands' terms: its hint names arguments
    the commands do not take, so say where the limit comes from (any other error unchanged)."""
    head, sep, _ = str(e).partition("; pass on_overflow=")
    if not sep:
        return e
    return ValueError(f"{head}: the run's dataset.max_length, with dataset.on_overflow="
                      f"{policy!r}; split or cut such lines")


def _unknown_note(run, lines) -> list:
    seen = [t for line in lines for t in line]
    unknown = run.vocab.unknown(seen)
    if not unknown:
        return []
    count = sum(1 for t in seen if t not in run.vocab.stoi)
    shown = quote_tokens(unknown, 5)
    return [f"{count} of {len(seen)} tokens are not in the run's vocabulary and were read as "
            f"<unk> ({shown})"]


@register("read", "lm")
def read_lm(run, path: str):
    """``(FlatSequences, OverflowCounts)``: each line as ``<eos> w1 ... wn <eos>``."""
    lines = read_lines_of(run, path)
    return encode_lines(lines, run.vocab), lines.overflow


@register("read", "classify")
def read_classify(run, path: str):
    """``(FlatSequences with labels, OverflowCounts)``, labelled as the run's
    ``dataset.label`` says (``first_token``: each line starts with its class name), with the
    run's class map (a class it does not know is refused naming the line)."""
    text = label_lines(read_lines_of(run, path), run.config.dataset.label)
    ids = text.label_ids(run.classes)
    seqs = encode_lines(text.sentences, run.vocab)
    return (FlatSequences(seqs.tokens, seqs.offsets, ids, line_numbers=seqs.line_numbers),
            text.sentences.overflow)


@register("read", "seq2seq")
def read_seq2seq(run, path: str):
    """``(pairs, OverflowCounts)`` of a ``source<TAB>target`` file, read as the run read its
    pairs (``dataset.tokens``, ``dataset.max_length`` with ``dataset.on_overflow``) and encoded
    with the run's source and target vocabularies (unknown tokens become ``<unk>``): the
    examples :func:`bucketrnn.data.pairs.encode_pairs` makes, each target ending in ``<eos>``."""
    d = to_dict(run.config.dataset)
    policy = d.get("on_overflow", "error") if d["max_length"] is not None else "error"
    try:
        pairs = read_pairs(path, tokens=d["tokens"], max_length=d["max_length"],
                           on_overflow=policy)
    except ValueError as e:
        raise _in_run_terms(e, policy) from None
    encoded = encode_pairs(pairs, run.vocab, run.tgt_vocab)
    # Kept with their line numbers: an error names the file's line.
    return (Pairs(encoded, path, pairs.line_numbers, pairs.tokens, pairs.overflow),
            pairs.overflow)


@register("read", "tag")
def read_tag(run, path: str):
    """``(FlatSequences with a tag per token, OverflowCounts)`` of a ``token/TAG ...`` file,
    with the run's tag map (an unknown tag is refused naming the line)."""
    text = label_lines(read_lines_of(run, path), "tags")
    seqs = FlatSequences.from_sequences([run.vocab.encode(s) for s in text.sentences],
                                        tags=text.label_ids(run.classes))
    return (FlatSequences(seqs.tokens, seqs.offsets, tags=seqs.tags,
                          line_numbers=text.sentences.line_numbers), text.sentences.overflow)


@register("predict", "tag")
def predict_tag(run, path: str) -> Predictions:
    """Every non-blank line of ``path`` (plain tokens) as ``token/TAG token/TAG ...``, in
    input order, bucketed on the run's boundaries (:func:`bucketrnn.models.tag_sentences`)."""
    lines = read_lines_of(run, path, every_line=True)
    # A line far longer than the rest is refused naming its line and the file, as predict does
    # for a classifier (tag_sentences' own check names a 0-based example and library arguments).
    lengths = np.array([len(line) for line in lines])
    refuse_outlier_lines(lines, lengths, path)
    refuse_long_lines(lines, lengths, path, run.graphs, run.max_line_steps)
    b = to_dict(run.config.bucketing)
    with explain_too_large(lines, [len(line) for line in lines], path):
        tags = tag_sentences(run.graphs, list(lines), run.vocab, classes=run.classes,
                             batch_size=b["batch_size"] or 32, num_buckets=8, ctx=run.ctx)
    outputs = [" ".join(f"{w}/{t}" for w, t in zip(line, tagged))
               for line, tagged in zip(lines, tags)]
    notes = _unknown_note(run, lines)
    known = set(run.classes)
    if all(item.rpartition("/")[2] in known and item not in run.vocab.stoi
           for line in lines for item in line):
        # A tagged file given to predict: every token/TAG item was read as one unknown word,
        # the answers are no measure of the model.
        notes.append("every item is token/TAG with one of the run's tags: predict reads plain "
                     "tokens, so the items were read as words; to score a tagged file use "
                     "`bucketrnn evaluate RUN_DIR FILE`")
    if lines.overflow:
        notes.append(f"max_length={run.config.dataset.max_length}: {lines.overflow}")
    return Predictions(outputs, lines.line_numbers, notes)


@register("predict", "classify")
def predict_classify(run, path: str) -> Predictions:
    """The class name of every non-blank line of ``path`` (unlabelled text), in input order;
    the lines are bucketed and batched like training data."""
    lines = read_lines_of(run, path, every_line=True)
    encoded = encode_lines(lines, run.vocab)
    dataset = FlatSequences(encoded.tokens, encoded.offsets, np.zeros(len(lines), np.int32),
                            line_numbers=encoded.line_numbers)
    predicted = np.full(len(lines), -1, dtype=np.int64)
    loader = run.loader(dataset, source=path)
    with explain_too_large(dataset, loader.lengths, path):
        for batch in loader:
            out = run.graphs(batch)
            logits = out[1] if isinstance(out, (list, tuple)) else out
            rows = np.asarray(batch.indices)
            real = rows >= 0
            predicted[rows[real]] = logits.argmax(axis=-1).asnumpy().astype(np.int64)[real]
    if (predicted < 0).any():  # every example is played once per epoch (DESIGN invariant 1)
        raise RuntimeError(f"no prediction for line {int(lines.line_numbers[predicted < 0][0])}")
    notes = _unknown_note(run, lines)
    if run.config.dataset.label == "first_token" and len(lines) > 1 and \
            all(line and line[0] in run.classes for line in lines):
        # A labelled file given to predict: its labels were read as words, the answers are
        # no measure of the model.
        notes.append(f"every line starts with a class name ({', '.join(run.classes)}): predict "
                     "reads unlabelled text, so they were read as words; to score a labelled "
                     "file use `bucketrnn evaluate RUN_DIR FILE`")
    if lines.overflow:
        notes.append(f"max_length={run.config.dataset.max_length}: {lines.overflow}")
    return Predictions([run.classes[i] for i in predicted], lines.line_numbers, notes)


@register("generate", "lm")
def generate_lm(run, prompt: str, max_tokens: int = 50, temperature: float = 1.0,
                top_k: int | None = None, seed: int | None = None, on_text=None) -> dict:
    """Sample a continuation of ``prompt`` with the state carried between steps
    (:func:`bucketrnn.inference.generation.generate` on the run's one-step graph).

    The prompt is tokenized as the training data was and starts a sentence (``<eos>`` first,
    the begin-of-sentence of the run's data form); generation stops at ``<eos>`` or after
    ``max_tokens``. Returns ``{"prompt": tokens, "unknown": prompt tokens read as <unk>,
    "ids": generated ids, "tokens": generated tokens (without <eos>), "text": prompt and
    continuation joined, "stopped": whether <eos> ended it}``. ``on_text``, when given, is
    called with that text as it grows (the prompt once the options are checked, then each
    token as it is drawn, with its separator): the pieces join to ``text``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got prompt={prompt!r}")
    if len(prompt) > MAX_PROMPT_CHARACTERS:
        raise ValueError(f"prompt is {len(prompt):,} characters long, more than the "
                         f"{MAX_PROMPT_CHARACTERS:,} a prompt may hold (as on the command line): "
                         "give its last part, which the continuation follows from")
    char = to_dict(run.config.dataset)["tokens"] == "char"
    tokens = list(prompt) if char else prompt.split()
    if not prompt.strip():
        raise ValueError(f"prompt must hold at least one token, got prompt={quote_token(prompt)}")
    ids = [run.vocab.bos_id, *run.vocab.encode(tokens).tolist()]
    sep = "" if char else " "
    shown = []

    def show(token_id=None):
        if on_text is None:
            return
        if not shown:
            shown.append(True)
            on_text(sep.join(tokens))
        if token_id is not None:
            for word in run.vocab.decode([token_id]):  # nothing for <eos>
                on_text(sep + word)

    out = generate(run.step_model(), ids, max_tokens=max_tokens, temperature=temperature,
                   top_k=top_k, seed=seed, stop_id=run.vocab.eos_id, ctx=run.ctx,
                   on_token=show)
    show()  # the prompt, when no token was drawn (max_tokens=0)
    words = run.vocab.decode(out)
    return {"prompt": tokens, "unknown": run.vocab.unknown(tokens), "ids": out, "tokens": words,
            "text": sep.join(tokens + words),
            "stopped": bool(out) and out[-1] == run.vocab.eos_id}


@register("translate", "seq2seq")
def translate_seq2seq(run, path: str, beam: int = 1, max_length: int | None = None
                      ) -> Predictions:
    """Every non-blank line of ``path`` (a source, or a ``source<TAB>target`` pair whose
    target is ignored) translated in input order, the sources bucketed like training data
    (:func:`bucketrnn.inference.translate.translate_file`): greedily with ``beam=1``, else by
    beam search keeping ``beam`` hypotheses; at most ``max_length`` target tokens a line
    (``<eos>`` included; default ``2 x`` the line's own source length ``+ 10``)."""
    # Any key's block holds the shared parameters; the decoder builds its own graphs from it,
    # refusing a batch too large for the run graphs' memory limit before building it.
    model = run.graphs.block((1, 1))
    decoder = Seq2SeqDecoder(model, eos_id=run.tgt_vocab.eos_id, ctx=run.ctx,
                             memory_limit=run.graphs.memory_limit)
    done = translate_file(model, run.vocab, run.tgt_vocab, path, decoder=decoder,
                          tokens=to_dict(run.config.dataset)["tokens"], beam_size=beam,
                          max_length=max_length)
    return Predictions(done["outputs"], done["line_numbers"], done["notes"])
