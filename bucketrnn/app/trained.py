"""A trained run, loaded from its run directory: graphs, vocabulary, class map, config.

:func:`load_run` reads only what the app wrote into the run directory (``config.json``,
``vocab.json``, ``classes.json`` for a classifier, ``checkpoint.npz``), never a pickle, and
returns a :class:`TrainedRun`. Its graphs are a :class:`~bucketrnn.GraphCache` built from the
run's own model config and holding the trained parameters, so inference is bucketed like
training: a file of inputs is planned into length buckets and batched (:meth:`TrainedRun.loader`),
and the outputs are put back in input order.

Examples
--------
::

    from bucketrnn import load_run
    run = load_run("outputs/2026-11-29_20-00-00")
    run.evaluate("test")                 # {'loss': ..., 'perplexity': ...}
    run.generate("the company", max_tokens=20, seed=0)["text"]
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from bucketrnn.app.auto import FALLBACK_BUCKETS, fallback_buckets
from bucketrnn.files import not_regular, read_json
from bucketrnn.models.build import build_model
from bucketrnn.training.rundir import CHECKPOINT, CLASSES, CONFIG, TAGS, TGT_VOCAB, VOCAB
from bucketrnn.training.runfiles import check_file_digests, load_tags, read_config

__all__ = ["MAX_LINE_STEPS", "TrainedRun", "explain_too_large", "load_run", "refuse_long_lines",
           "refuse_outlier_lines"]

# The most steps evaluate and predict run on one line of a file (TrainedRun.max_line_steps,
# `--max-line-steps`): a line past the graphs' unroll_limit runs on the foreach twin at
# 0.13-0.16 ms of CPU per step for a small model (a 16-unit classifier: 25,000 steps in 3-4
# CPU-s, python -m benchmarks.long_line), so 100,000 steps are a few tens of seconds; a
# 10^6-token line is refused at once, not run for minutes.
MAX_LINE_STEPS = 100_000


@dataclass
class TrainedRun:
    """What :func:`load_run` returns.

    Attributes
    ----------
    run_dir : str
        The run directory (absolute).
    config : DictConfig
        The run's config (``config.json``), in the app's schema.
    task : str
        ``"lm"``, ``"classify"``, ``"tag"`` or ``"seq2seq"``
        (:mod:`bucketrnn.tasks`).
    graphs : GraphCache
        The model's bucket graphs with the trained parameters (no gradients), on :attr:`ctx`.
    vocab : Vocabulary
        The run's vocabulary (``vocab.json``).
    classes : list of str or None
        Class names by class index (``classes.json``, a tagger's ``tags.json``); None for a
        language model or a sequence-pair model.
    checkpoint : str
        The checkpoint file loaded.
    meta : dict
        The checkpoint's position: ``global_step``, ``epoch``, ``epoch_finished``; and
        ``run_files``, the SHA-256 of ``vocab.json`` (and ``tgt_vocab.json``,
        ``classes.json``, ``tags.json``) it was trained with, checked against the files (None
        for a checkpoint of a bucketrnn before them: then unchecked).
    ctx : mx.Context
    tgt_vocab : Vocabulary or None
        A sequence-pair model's target vocabulary (``tgt_vocab.json``; :attr:`vocab` is the
        source side).
    max_line_steps : int or None
        The most steps a line of a file given to :meth:`evaluate` or :meth:`predict` may take
        (default :data:`MAX_LINE_STEPS`); a longer one is refused naming the file and the
        line before any graph is built (:func:`refuse_long_lines`). None: no limit.
    """

    run_dir: str
    config: object
    task: str
    graphs: object
    vocab: object
    classes: list | None
    checkpoint: str
    meta: dict
    ctx: object
    _step: object = field(default=None, repr=False)
    tgt_vocab: object = None
    max_line_steps: int | None = MAX_LINE_STEPS

    # -- inputs ----------------------------------------------------------------------------
    def read(self, path: str):
        """``(dataset, OverflowCounts)`` of a labelled file in the run's data format, encoded
        with the run's vocabulary (:func:`bucketrnn.app.tasks.handler` ``("read", task)``)."""
        from bucketrnn.app.tasks import handler

        return handler("read", self.task, "evaluate FILE", self.run_dir)(self, path)

    def loader(self, dataset, source: str | None = None):
        """A loader over ``dataset`` planned like the run's training data: the run's bucketing
        config (strategy, buckets, batch sizes; no more buckets than the dataset has distinct
        lengths; a ``max_tokens`` budget raised to hold the longest line), no shuffling, fill
        rows to keep shapes static, id checks from the run. A line far longer than the rest
        (:func:`bucketrnn.data.plan.find_outliers`), or longer than :attr:`max_line_steps`, or
        one the graphs would unroll past their ``unroll_limit`` (:func:`refuse_long_lines`), is
        refused naming its line number and ``source`` (the file it came from)."""
        from bucketrnn.app.config import to_dict
        from bucketrnn.data.loader import BucketLoader, plan_lengths
        from bucketrnn.data.plan import with_longest

        b = to_dict(self.config.bucketing)
        lengths = plan_lengths(dataset, self.task)[1]
        pairs = lengths.ndim == 2
        # A pair is as long as its longer side (either would unroll that far).
        refuse_outlier_lines(dataset, lengths.max(axis=1) if pairs else lengths, source)
        refuse_long_lines(dataset, lengths, source, self.graphs, self.max_line_steps)
        bounds, strategy = None, b["strategy"]
        # An automatic plan is fixed in config.json (bucketing.auto_boundaries): the training
        # plan's boundaries, reused here so the inputs meet the graphs training compiled.
        fixed = b["boundaries"] if strategy == "fixed" else b.get("auto_boundaries")
        if fixed:
            strategy, bounds = "fixed", with_longest(fixed, lengths)
        planned = b["num_buckets"] if isinstance(b["num_buckets"], int) else FALLBACK_BUCKETS
        buckets = fallback_buckets(lengths, planned, strategy)
        budget = b["max_tokens"]
        if budget is not None:  # a token budget too small for the longest line: rows of one
            steps = lengths.sum(axis=1) if pairs else lengths
            budget = max(budget, b["batch_size_multiple"] * int(steps.max()))
        return BucketLoader(dataset, batch_size=b["batch_size"], max_tokens=budget,
                            batch_size_multiple=b["batch_size_multiple"], num_buckets=buckets,
                            strategy=strategy, boundaries=bounds, shuffle=False,
                            last_batch="fill", task=self.task, ctx=self.ctx,
                            vocab_size=len(self.vocab),
                            num_classes=None if self.classes is None else len(self.classes))

    # -- commands --------------------------------------------------------------------------
    def evaluate(self, what: str = "valid") -> dict:
        """The task's metrics on the run's ``"valid"`` or ``"test"`` split (rebuilt from the
        run's dataset config, on the training plan's boundaries, as at the end of training)
        or on a labelled file. Adds ``examples`` and, for a file, ``overflow`` (lines dropped
        or truncated by the run's ``dataset.max_length``)."""
        from bucketrnn.training.evaluation import evaluate

        if not isinstance(what, (str, os.PathLike)) or not str(what):
            raise TypeError(f"what must be 'valid', 'test' or the path of a file, got "
                            f"what={what!r}")
        if what in ("valid", "test"):
            loader = self._split_loader(what)
            extra = {}
        else:
            dataset, overflow = self.read(what)
            loader = self.loader(dataset, source=what)
            extra = {"overflow": overflow.to_dict()}
        with explain_too_large(loader.dataset, loader.lengths, os.fspath(what)):
            result = evaluate(self.graphs, loader, task=self.task)
        if self.task == "seq2seq":
            result.update(self._translation_scores(loader.dataset))
        return {**result, "examples": len(loader.dataset), **extra}

    def _translation_scores(self, pairs) -> dict:
        """Greedy exact match and corpus BLEU-4 (0-100) of held-out pairs, as the training
        summary reports them (:func:`bucketrnn.inference.translate.score_pairs`)."""
        from bucketrnn.app.config import to_dict
        from bucketrnn.inference.translate import score_pairs
        from bucketrnn.models.decode import Seq2SeqDecoder

        b = to_dict(self.config.bucketing)
        # decode_ids plans the sources with no more buckets than their distinct lengths.
        k = b["num_buckets"] if isinstance(b["num_buckets"], int) else FALLBACK_BUCKETS
        decoder = Seq2SeqDecoder(self.graphs.block((1, 1)), eos_id=self.tgt_vocab.eos_id)
        return score_pairs(decoder, pairs, batch_size=b["batch_size"] or 32, num_buckets=k,
                           unk_id=self.tgt_vocab.unk_id)

    def _split_loader(self, name: str):
        from bucketrnn.app.experiment import load_data, make_loaders

        try:
            data = load_data(self.config.dataset, seed=self.config.seed)
        except FileNotFoundError as e:
            # The paths are the run's, as given when it was started: relative ones were read
            # from the directory it started in, not necessarily this one.
            raise FileNotFoundError(f"the {name} split cannot be rebuilt from the run's "
                                    f"{os.path.join(self.run_dir, CONFIG)}: {e} (relative "
                                    f"paths are read from the current directory {os.getcwd()!r}"
                                    "); run from the directory the run started in, or evaluate "
                                    "a file instead") from None
        if list(data.vocab.itos) != list(self.vocab.itos):
            raise ValueError(f"the run's data no longer gives the vocabulary it was trained with "
                             f"({os.path.join(self.run_dir, VOCAB)}: {len(self.vocab)} tokens, "
                             f"the data now {len(data.vocab)}): the {name} split cannot be "
                             "rebuilt; evaluate a file instead (bucketrnn evaluate RUN_DIR FILE)")
        if self.classes is not None and data.classes != self.classes:
            raise ValueError(f"the run's data no longer gives the classes of "
                             f"{os.path.join(self.run_dir, CLASSES)}: the {name} split cannot be "
                             "rebuilt; evaluate a file instead")
        loaders = make_loaders(data, self.config.bucketing, seed=self.config.seed, ctx=self.ctx)
        loader = loaders[1 if name == "valid" else 2]
        if loader is None:
            raise ValueError(f"the run {self.run_dir!r} has no {name} split (its dataset config "
                             f"holds none out): evaluate a file instead")
        return loader

    def predict(self, path: str):
        """:class:`~bucketrnn.app.tasks.Predictions` for the lines of ``path`` (classifier:
        the class name of each line), in input order."""
        from bucketrnn.app.tasks import handler

        return handler("predict", self.task, "predict", self.run_dir)(self, path)

    def generate(self, prompt: str, **options) -> dict:
        """Sample a continuation of ``prompt`` (language models): see
        :func:`bucketrnn.app.infer.generate_lm` for the options and the result."""
        from bucketrnn.app.tasks import handler

        return handler("generate", self.task, "generate", self.run_dir)(self, prompt, **options)

    def step_model(self):
        """The one-step graph of a language model on the trained parameters (built once)."""
        if self._step is None:
            from bucketrnn.app.config import to_dict
            from bucketrnn.models.step import LanguageModelStep

            if self.task != "lm":
                raise ValueError(f"a step graph is built for language models, not for this "
                                 f"run's task {self.task!r}")
            m = to_dict(self.config.model)
            reference = self.graphs.collect_params()
            prefix = reference.prefix  # the bucket graphs' own: the same parameter names
            step = LanguageModelStep(vocab_size=len(self.vocab), embed_size=m["embed_size"],
                                     hidden_size=m["hidden_size"], num_layers=m["num_layers"],
                                     mode=m["mode"], tie_weights=m["tie_weights"],
                                     cell=m["cell"], prefix=prefix, params=reference)
            step.hybridize(static_alloc=True, static_shape=True)
            self._step = step
        return self._step


@contextmanager
def explain_too_large(dataset, lengths, source: str):
    """Re-raise a :class:`~bucketrnn.errors.GraphTooLargeError` met while running the lines of
    the file ``source`` (``dataset``, anything with ``line_numbers``, of step ``lengths``)
    naming the file and its longest line: the library's hint (``max_length``,
    ``memory_limit=``) names nothing a command takes."""
    from bucketrnn.errors import GraphTooLargeError

    try:
        yield
    except GraphTooLargeError as e:
        lengths = np.asarray(lengths)
        i = int(np.argmax(lengths.reshape(len(lengths), -1).max(axis=1)))
        lines = getattr(dataset, "line_numbers", None)
        where = f"line {int(lines[i])}" if lines is not None else f"example {i}"
        what = str(e).split(": lower the largest bucket length", 1)[0]
        raise GraphTooLargeError(f"{source!r} is too long to run here: {what}; its longest line, "
                                 f"{where}, is {int(lengths[i].max())} steps: split or cut "
                                 "long lines") from None


def refuse_outlier_lines(dataset, lengths, source=None) -> None:
    """A line far longer than the rest (:func:`bucketrnn.data.plan.find_outliers`) is refused
    naming its line, before any graph of its length is built: ``lengths`` are the steps of
    each example of ``dataset`` (anything with ``line_numbers``, e.g. ``FlatSequences`` or
    :class:`~bucketrnn.data.datasets.Lines`), ``source`` the file they came from."""
    from bucketrnn.data.plan import find_outliers

    found = find_outliers(lengths)
    if not found:
        return
    i = int(found.indices[0])
    lines = getattr(dataset, "line_numbers", None)
    where = f"line {int(lines[i])}" if lines is not None else f"example {i}"
    steps = int(found.lengths[0])
    raise ValueError(f"{where} of {source or 'the input'!r} is {steps} steps long, far more "
                     f"than the rest needs ({found.rest_max} at most; {found.rule('line')}): "
                     "a line so far out of the file's range is taken for damaged input; split "
                     "or cut such lines, or give it in a file of its own (a file's only line "
                     "runs whatever its length, up to --max-line-steps)")


def refuse_long_lines(dataset, lengths, source, graphs, max_steps=MAX_LINE_STEPS) -> None:
    """Refuse, before any graph is built, the longest line of ``dataset`` (anything with
    ``line_numbers``; ``lengths`` its steps, ``(N, 2)`` for pairs) when it takes more than
    ``max_steps`` steps (None: no limit), or when ``graphs`` (a
    :class:`~bucketrnn.GraphCache`) would unroll a graph of its length past their
    ``unroll_limit`` (:meth:`~bucketrnn.GraphCache.unrolls_too_long`: a model without a
    length-agnostic twin, such as a sequence-pair model). The message names ``source``, the
    line, its steps, the limit and how to lift it."""
    from bucketrnn.data.plan import key_length

    lengths = np.asarray(lengths)
    if lengths.size == 0:
        return
    pairs = lengths.ndim == 2
    steps = lengths.sum(axis=1) if pairs else lengths
    i = int(np.argmax(steps))
    lines = getattr(dataset, "line_numbers", None)
    where = f"line {int(lines[i])}" if lines is not None else f"example {i}"
    key = tuple(int(n) for n in lengths[i]) if pairs else int(lengths[i])
    size = f"{key_length(key):,} steps long" + (
        f" ({key[0]:,} source + {key[1]:,} target)" if pairs else "")
    head = f"{where} of {source or 'the input'!r} is {size}"
    if max_steps is not None and key_length(key) > max_steps:
        raise ValueError(f"{head}, more than the {max_steps:,} steps a line may take "
                         "(max_line_steps): split or cut such lines, or raise the limit "
                         "(--max-line-steps N; load_run(...).max_line_steps = N)")
    if graphs.unrolls_too_long(key):
        raise ValueError(f"{head}, more than the {graphs.unroll_limit:,} steps this model's "
                         "graphs unroll (unroll_limit; a sequence-pair model has no "
                         "length-agnostic graph to run it on, and binding an unrolled graph "
                         "costs about 1 ms and 100 kB per step): split or cut such lines, or "
                         "raise the limit (load_run(...).graphs.unroll_limit = N)")


def _read_classes(run_dir: str, label) -> list:
    """The class names of ``classes.json``; a run made before the file existed has none, which
    only a ``contains:<token>`` label can do without (its classes are 0 and 1)."""
    path = os.path.join(run_dir, CLASSES)
    if not os.path.lexists(path) and str(label).startswith("contains:"):
        return ["0", "1"]
    try:
        doc = read_json(path)
    except FileNotFoundError:
        # Never "write it by hand": the class order is the checkpoint's, and a guess at it
        # would silently rename every prediction.
        raise FileNotFoundError(f"{path!r} is missing: a classifier run keeps its class map "
                                "there, and the checkpoint's class ids mean nothing without it; "
                                "restore it from a copy of the run directory, or retrain (runs "
                                "of an older bucketrnn have none)") from None
    except ValueError as e:
        raise ValueError(f"{path!r} is not a class map written by bucketrnn: it {e}") from None
    names = doc.get("classes") if isinstance(doc, dict) else None
    if not isinstance(names, list) or len(names) < 2 or \
            not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{path!r} is not a class map written by bucketrnn (expected "
                         '{"label": ..., "classes": [at least 2 distinct names]})')
    bad = [n for n in names if not n.strip() or n != " ".join(n.split())]
    if bad:  # predict prints one name per line: a blank or multi-line name breaks line N = N
        raise ValueError(f"{path!r} is not a class map written by bucketrnn: class name "
                         f"{bad[0]!r} is blank or holds a line break, tab or surrounding space")
    bad = [n for n in names if not n.isprintable()]
    if bad:  # predict writes class names to the terminal: an escape sequence would act on it
        raise ValueError(f"{path!r} is not a class map written by bucketrnn: class name "
                         f"{bad[0]!r} holds an unprintable character (a control or format "
                         "character, such as a terminal escape)")
    return names


def _checkpoint_path(run_dir: str, checkpoint) -> str:
    """The checkpoint file ``checkpoint`` ("latest" or a path) names; FileNotFoundError saying
    why there is none (not written yet, a dangling link, not a regular file)."""
    if not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint):
        raise TypeError(f"checkpoint must be 'latest' or the path of a checkpoint file, got "
                        f"checkpoint={checkpoint!r}")
    latest = checkpoint == "latest"
    path = os.path.join(run_dir, CHECKPOINT) if latest else os.fspath(checkpoint)
    if os.path.isfile(path):
        return path
    why = not_regular(path)  # a dangling link, a link to a device, a directory, ...
    if why is None:
        why = ("none (the run stopped before its first checkpoint, or is still running "
               "and has not reached it)") if latest else "none"
    raise FileNotFoundError(f"no checkpoint at {path!r}: there is {why}")


def load_run(run_dir: str, ctx=None, checkpoint: str = "latest") -> TrainedRun:
    """Load a run directory the app (``bucketrnn`` / ``python -m bucketrnn``) wrote.

    Parameters
    ----------
    run_dir : str
        The run directory.
    ctx : mx.Context or str, optional
        Where the graphs run: ``mx.cpu()`` (default), ``mx.gpu(0)``, ``"cpu"`` or ``"gpu:0"``.
    checkpoint : str
        ``"latest"`` (the run's ``checkpoint.npz``) or the path of a checkpoint of this run
        (its configuration fingerprint must be the run's).

    Returns
    -------
    TrainedRun

    Raises
    ------
    FileNotFoundError
        No such directory, or it lacks ``config.json``, ``vocab.json`` or the checkpoint.
    ValueError
        A file is damaged or not what bucketrnn writes (the message names it);
        :class:`~bucketrnn.errors.CheckpointError` for a damaged checkpoint,
        :class:`~bucketrnn.errors.StateMismatchError` for one of another config.
    """
    import mxnet as mx
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from bucketrnn.app.config import Config, fingerprint, parse_context, saved_config, to_dict
    from bucketrnn.app.tasks import task_of
    from bucketrnn.data.datasets import EOS, Vocabulary
    from bucketrnn.errors import CheckpointError, StateMismatchError
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.training import checkpoint as ckpt

    if not isinstance(run_dir, (str, os.PathLike)) or not str(run_dir):
        raise TypeError(f"run_dir must be a directory path, got run_dir={run_dir!r}")
    run_dir = os.path.abspath(os.fspath(run_dir))
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist or is not a directory")
    if isinstance(ctx, str):
        try:
            ctx = parse_context(ctx)
        except ValueError:
            raise ValueError(f"ctx must be 'cpu', 'gpu' or 'gpu:N', got ctx={ctx!r}") from None
    ctx = ctx or mx.cpu()
    if not isinstance(ctx, mx.Context):
        raise TypeError(f"ctx must be an mx.Context or a string such as 'cpu' or 'gpu:0', got "
                        f"ctx={ctx!r}")
    if ctx.device_type == "gpu" and ctx.device_id >= mx.context.num_gpus():
        raise ValueError(f"ctx={ctx} names a GPU this machine does not have (MXNet sees "
                         f"{mx.context.num_gpus()} GPU(s)); use ctx='cpu'")
    config_path = os.path.join(run_dir, CONFIG)
    if not os.path.lexists(config_path):
        raise FileNotFoundError(f"{run_dir!r} is not a bucketrnn run directory: it has no "
                                f"{CONFIG}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Config),
                              saved_config(read_config(config_path)))
    except OmegaConfBaseException as e:
        raise ValueError(f"{config_path!r} does not fit this bucketrnn's config schema: "
                         f"{str(e).splitlines()[0]}") from None
    model = to_dict(cfg.model)
    task = task_of(model["name"], config_path)
    vocab_path = os.path.join(run_dir, VOCAB)
    if not os.path.lexists(vocab_path):
        raise FileNotFoundError(f"{vocab_path!r} is missing: not a complete bucketrnn run "
                                "directory (no vocabulary)")
    vocab = Vocabulary.load(vocab_path)
    if vocab.eos_id is None:  # every sequence of the app's data starts and ends with it
        raise ValueError(f"{vocab_path!r} is not a vocabulary written by bucketrnn: it has no "
                         f"{EOS!r} token")
    if task == "classify":
        classes = _read_classes(run_dir, cfg.dataset.label)
    elif task == "tag":
        classes = load_tags(os.path.join(run_dir, TAGS))
    else:
        classes = None
    tgt_vocab = None
    if task == "seq2seq":  # vocab.json is the source side, tgt_vocab.json the target side
        tgt_path = os.path.join(run_dir, TGT_VOCAB)
        if not os.path.lexists(tgt_path):
            raise FileNotFoundError(f"{tgt_path!r} is missing: not a complete bucketrnn run "
                                    "directory of a sequence-pair model (no target vocabulary)")
        tgt_vocab = Vocabulary.load(tgt_path)
        if tgt_vocab.eos_id is None:  # targets end with it and the decoder starts from it
            raise ValueError(f"{tgt_path!r} is not a vocabulary written by bucketrnn: it has no "
                             f"{EOS!r} token")
    path = _checkpoint_path(run_dir, checkpoint)
    try:
        state = ckpt.load(path, fingerprint=fingerprint(cfg), optional={"run_files": dict})
    except StateMismatchError as e:
        # check_fingerprint's hint is for resuming training; here the files disagree.
        why = str(e).split("; it differs in ", 1)[-1].split(". Run with the original", 1)[0]
        raise StateMismatchError(f"checkpoint {path!r} was not made with the config of "
                                 f"{config_path!r}: it differs in {why}. Pass a checkpoint of "
                                 "this run, or restore its config.json") from None
    sizes = len(vocab) if tgt_vocab is None else (len(vocab), len(tgt_vocab))
    build = build_model(model, sizes, None if classes is None else len(classes))
    graphs = GraphCache(build, ctx=ctx, memory=to_dict(cfg.memory)["policy"])
    params = graphs.collect_params()
    missing, extra = sorted(set(params.keys()) - set(state.params)), \
        sorted(set(state.params) - set(params.keys()))
    if missing or extra:
        raise CheckpointError(f"checkpoint {path!r} does not hold the parameters of the model in "
                              f"{config_path} with {len(vocab)} tokens: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}")
    # The files whose sizes made the model (a tagger's class map is tags.json, not classes.json).
    made_of = [f"{VOCAB} ({len(vocab)} tokens)"] + (
        [f"{TGT_VOCAB} ({len(tgt_vocab)} tokens)"] if tgt_vocab is not None else []) + (
        [f"{TAGS if task == 'tag' else CLASSES} ({len(classes)} classes)"]
        if classes is not None else [])
    for name, p in params.items():
        if tuple(state.params[name].shape) != tuple(p.shape):
            raise CheckpointError(f"checkpoint {path!r} holds {name} shaped "
                                  f"{tuple(state.params[name].shape)}, but the model of "
                                  f"{config_path} with {' and '.join(made_of)} needs "
                                  f"{p.shape}: are these files of another run?")
        # Training writes each parameter in its own dtype; another one (int8 values) would be
        # cast silently by set_data below.
        if state.params[name].dtype != np.dtype(p.dtype):
            raise CheckpointError(f"checkpoint {path!r} holds {name} as "
                                  f"{state.params[name].dtype.name}, but the model of "
                                  f"{config_path} needs {np.dtype(p.dtype).name}: not a "
                                  "checkpoint bucketrnn wrote")
    recorded = state.meta.get("run_files")
    if recorded is not None:  # None: a checkpoint of a bucketrnn before the digests
        check_file_digests(run_dir, recorded, path)
    params.initialize(ctx=ctx)
    for name, p in params.items():
        p.set_data(mx.nd.array(state.params[name], dtype=p.dtype, ctx=ctx))
        p.grad_req = "null"
    meta = {k: state.meta.get(k) for k in ("global_step", "epoch", "epoch_finished",
                                           "run_files")}
    return TrainedRun(run_dir, cfg, task, graphs, vocab, classes, os.path.abspath(path), meta,
                      ctx, tgt_vocab=tgt_vocab)
