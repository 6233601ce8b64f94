"""Structured configs of the experiment app, registered in Hydra's ConfigStore.

The dataclasses are the schema of ``conf/config.yaml`` and its groups (``dataset``, ``model``,
``bucketing``, ``trainer``, ``memory``): an override naming a key that does not exist, or a value
of the wrong type or outside an enum, fails at composition with an error that names the key.
Library code never sees these objects; :func:`validate` checks what types cannot express, and
the app turns the config into plain arguments.

Examples
--------
>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.structured(Config)
>>> cfg.bucketing.num_buckets, cfg.model.cell.value
(8, 'unrolled')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bucketrnn.compat import MAX_ARRAY_ELEMENTS

__all__ = [
    "CONF_DIR",
    "OPTIMIZERS",
    "BucketingConfig",
    "Config",
    "DatasetConfig",
    "MemoryConfig",
    "ModelConfig",
    "TrainerConfig",
    "check_vocab_size",
    "fingerprint",
    "parse_context",
    "RESUMABLE",
    "register",
    "restore",
    "to_dict",
    "validate",
]


def _conf_dir() -> str:
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # A regular install ships the configs as package data in bucketrnn/conf; a source checkout
    # (and an editable install) keeps them in the repository's top-level conf/.
    packaged = os.path.join(package, "conf")
    if os.path.isfile(os.path.join(packaged, "config.yaml")):
        return packaged
    return os.path.join(os.path.dirname(package), "conf")


CONF_DIR = _conf_dir()


class DatasetName(str, Enum):
    ptb = "ptb"
    text = "text"
    tagged = "tagged"
    pairs = "pairs"
    prepared = "prepared"


class Tokens(str, Enum):
    whitespace = "whitespace"
    char = "char"


class ModelName(str, Enum):
    lstm_lm = "lstm_lm"
    gru_lm = "gru_lm"
    classifier = "classifier"
    tagger = "tagger"
    seq2seq = "seq2seq"


class Attention(str, Enum):
    dot = "dot"
    mlp = "mlp"


class Mode(str, Enum):
    lstm = "lstm"
    gru = "gru"


class Cell(str, Enum):
    unrolled = "unrolled"
    fused = "fused"
    foreach = "foreach"  # one length-agnostic graph for every bucket (F.contrib.foreach)


class Strategy(str, Enum):
    optimal = "optimal"
    quantile = "quantile"
    exp = "exp"
    fixed = "fixed"


class LastBatch(str, Enum):
    fill = "fill"
    keep = "keep"
    discard = "discard"
    rollover = "rollover"


class Overflow(str, Enum):
    error = "error"
    truncate = "truncate"
    drop = "drop"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"


class MemoryPolicy(str, Enum):
    shared = "shared"
    static = "static"
    dynamic = "dynamic"


@dataclass
class DatasetConfig:
    """Where sequences come from.

    ``ptb``: Penn Treebank sentences (``treebank`` package), ``limit`` keeps the first
    ``limit`` training sentences. ``text``: one sequence per line of ``path``; ``valid_path`` and
    ``test_path`` are optional, else ``valid_fraction`` / ``test_fraction`` of the lines are held
    out (seeded). ``label`` turns sentences into a classification task: ``contains:<token>``
    (1 if the token occurs, which is then kept in the input) or ``first_token`` (the first token
    of each line is its class and is removed from the input). ``max_length`` (``text``): a
    longer line is an error, or cut or dropped by ``on_overflow``, and counted. ``tagged``: one
    ``token/TAG token/TAG ...`` sentence per line of ``path`` (split on the last ``/`` of each
    item), with the keys of ``text`` except ``label``; for ``model=tagger``. ``prepared``: a
    directory ``bucketrnn-prepare`` wrote (``path``), memory-mapped; its format (text, a label,
    tagged, pairs), tokens and vocabulary were fixed when it was prepared, so ``tokens`` and
    ``label`` must say what it holds; ``valid_fraction`` / ``test_fraction`` and the limits
    apply. A ``text``, ``tagged`` or ``pairs`` ``path`` naming a prepared directory is read the
    same way.
    """

    name: DatasetName = DatasetName.ptb
    limit: Optional[int] = None
    valid_limit: Optional[int] = None
    test_limit: Optional[int] = None
    path: Optional[str] = None
    valid_path: Optional[str] = None
    test_path: Optional[str] = None
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    tokens: Tokens = Tokens.whitespace
    min_count: int = 1
    max_length: Optional[int] = None
    on_overflow: Overflow = Overflow.error
    label: Optional[str] = None
    # pairs: one source<TAB>target pair a line; one vocabulary for both sides or one each.
    shared_vocab: bool = False


@dataclass
class ModelConfig:
    """The reference model built for every bucket length (:mod:`bucketrnn.models`).

    ``lstm_lm`` and ``gru_lm`` are :class:`~bucketrnn.models.LanguageModel`; ``classifier`` is
    :class:`~bucketrnn.models.SequenceClassifier` with ``mode`` (lstm or gru) cells; ``tagger``
    is :class:`~bucketrnn.models.SequenceTagger` (``mode``, ``bidirectional``).
    """

    name: ModelName = ModelName.lstm_lm
    mode: Mode = Mode.lstm
    cell: Cell = Cell.unrolled
    hidden_size: int = 200
    embed_size: Optional[int] = None
    num_layers: int = 2
    dropout: float = 0.0
    tie_weights: bool = True
    bidirectional: bool = False
    # seq2seq (bucketrnn.models.Seq2Seq): attention over the source, one embedding matrix for
    # both sides (needs dataset.shared_vocab=true).
    attention: Attention = Attention.dot
    share_embeddings: bool = False


@dataclass
class BucketingConfig:
    """Bucket plan and batch schedule (:class:`bucketrnn.data.loader.BucketLoader` arguments)."""

    strategy: Strategy = Strategy.optimal
    # An integer >= 1, or "auto" (opt-in): probe the model and choose K for the fastest run
    # (bucketrnn/app/auto.py). Any: OmegaConf 2.3 has no Union[int, str]; validate() checks it.
    num_buckets: Any = 8
    boundaries: Optional[list[int]] = None
    # Set by the app, not the user: the boundaries num_buckets=auto chose at the run's first
    # session, so config.json and the checkpoint fingerprint fix the plan for a resume.
    auto_boundaries: Optional[list[int]] = None
    batch_size: Optional[int] = 32
    max_tokens: Optional[int] = None
    batch_size_multiple: int = 1
    last_batch: LastBatch = LastBatch.fill
    on_overflow: Overflow = Overflow.error
    shuffle: bool = True
    num_workers: int = 0
    # Seconds to wait for one batch from the loader workers (a dead worker is noticed sooner).
    timeout: float = 120.0


@dataclass
class TrainerConfig:
    """Optimisation and bookkeeping (:class:`bucketrnn.training.loop.TrainLoop` arguments)."""

    optimizer: str = "adam"
    lr: float = 0.01
    weight_decay: float = 0.0
    lr_decay: float = 0.5
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 2
    max_steps: Optional[int] = None
    clip_norm: Optional[float] = 1.0
    context: str = "cpu"
    kvstore: str = "device"
    checkpoint_every: int = 200
    log_every: int = 10
    progress: bool = True
    on_nonfinite: str = "error"
    # fp32 | bf16 (matrix products in bfloat16, parameters and loss in fp32; a CPU with
    # AVX512_BF16 and memory.policy=shared): bucketrnn.graphs.precision.
    precision: Precision = Precision.fp32


@dataclass
class MemoryConfig:
    """How the per-bucket graphs hold memory (passed to GraphCache)."""

    policy: MemoryPolicy = MemoryPolicy.shared


@dataclass
class Config:
    """The whole experiment. ``resume``: ``""`` (start fresh), ``"true"`` (continue the latest
    run with a checkpoint under the outputs root) or a run directory."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    bucketing: BucketingConfig = field(default_factory=BucketingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    seed: int = 0
    resume: str = ""
    plots: bool = True


def register() -> None:
    """Store the schema as ``base_config`` (used by ``conf/config.yaml``'s defaults list)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)


register()


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_dict(cfg) -> dict:
    """Plain JSON-able dict of a config (enums as their values)."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    return _plain(cfg)


# Keys that change what a run computes. Epoch count, step limits, logging, checkpoint
# cadence and on_nonfinite do not: a run may be resumed with more epochs (or with skip).
_FINGERPRINT_SECTIONS = ("dataset", "model", "bucketing", "memory")
_FINGERPRINT_TRAINER = ("optimizer", "lr", "lr_decay", "weight_decay", "optimizer_params",
                        "clip_norm")


def fingerprint(cfg) -> dict:
    """Flat ``{"section.key": value}`` of everything a checkpoint depends on."""
    d = to_dict(cfg)
    flat = {"seed": d["seed"]}
    for section in _FINGERPRINT_SECTIONS:
        for key, value in d[section].items():
            if section == "bucketing" and key in ("num_workers", "timeout"):
                continue
            if section == "bucketing" and key == "auto_boundaries" and value is None:
                continue  # absent before num_buckets=auto existed: old checkpoints still load
            flat[f"{section}.{key}"] = value
    for key in _FINGERPRINT_TRAINER:
        flat[f"trainer.{key}"] = d["trainer"][key]
    return flat


# The optimizers the app offers: each one's state is saved as named arrays in a checkpoint.
OPTIMIZERS = ("sgd", "nag", "adam", "adamax", "nadam", "rmsprop", "adagrad", "adadelta",
              "ftml", "signum", "lamb")

MAX_DEVICE_ID = 1024
_CONTEXT = re.compile(r"^(cpu|gpu)(?:[(:](\d+)\)?)?$")


def parse_context(text: str):
    """``"cpu"``, ``"gpu"``, ``"gpu(1)"`` or ``"gpu:1"`` to an ``mx.Context``.

    >>> parse_context("gpu(1)")
    gpu(1)
    """
    import mxnet as mx

    m = _CONTEXT.match(str(text).strip())
    if not m:
        raise ValueError(f"trainer.context must be 'cpu', 'gpu' or 'gpu(i)', got {text!r}")
    kind, index = m.group(1), int(m.group(2) or 0)
    if index >= MAX_DEVICE_ID:
        # MXNet keeps per-device state indexed by the id: cpu(2**32) spins and eats memory.
        raise ValueError(f"trainer.context device index must be < {MAX_DEVICE_ID}, got "
                         f"{text!r}")
    return mx.cpu(index) if kind == "cpu" else mx.gpu(index)


MAX_ELEMENTS = MAX_ARRAY_ELEMENTS
# Optimizer arguments the app sets itself, or that a checkpoint cannot hold (optim_state saves
# named arrays and scalars, not schedulers or symbols).
_OPTIMIZER_OWN = {"learning_rate": "trainer.lr", "wd": "trainer.weight_decay"}
_OPTIMIZER_REFUSED = ("lr_scheduler", "param_dict", "param_idx2name", "sym")


# Models whose output layer scores classes (a classifier per sequence, a tagger per token).
_PER_CLASS = ("classifier", "tagger")


def _gates(model: dict) -> int:
    return 4 if model["mode"] == "lstm" else 3


def _check_model_size(model: dict, b: dict, need) -> None:
    """Refuse a model or batch whose arrays MXNet cannot make (more than :data:`MAX_ELEMENTS`):
    each layer's input-to-hidden weights are (gates x hidden, layer input), its hidden-to-hidden
    ones (gates x hidden, hidden), and a batch's per-step gate array is (rows, gates x hidden).
    The output and embedding layers depend on the vocabulary: see :func:`check_vocab_size`."""
    gates, hidden = _gates(model), model["hidden_size"]
    embed = model["embed_size"] or hidden
    inputs = hidden * (2 if model["name"] in _PER_CLASS and model["bidirectional"]
                       and model["num_layers"] > 1 else 1)
    if model["name"] == "seq2seq":  # the decoder reads embedding + attentional state
        inputs = max(embed + hidden, hidden * (2 if model["bidirectional"] else 1))
    widest = max(embed, inputs, hidden)
    need(gates * hidden * widest <= MAX_ELEMENTS, "model.hidden_size", hidden,
         f"makes a {model['mode']} weight matrix of {gates} gates x {hidden} x {widest} = "
         f"{gates * hidden * widest} elements, more than MXNet's limit of {MAX_ELEMENTS} "
         "(2**31 - 1) per array; use a smaller model.hidden_size (or model.embed_size)")
    if model["cell"] == "fused":
        # The fused operator takes every layer's weights and biases as one flat array.
        directions = 2 if model["name"] in _PER_CLASS + ("seq2seq",) \
            and model["bidirectional"] else 1
        total = sum(directions * gates * hidden * (size + hidden + 2) for size in
                    [embed] + [hidden * directions] * (model["num_layers"] - 1))
        need(total <= MAX_ELEMENTS, "model.hidden_size", hidden,
             f"with model.cell=fused makes the fused operator's one parameter array "
             f"{total} elements ({model['num_layers']} layers), more than MXNet's limit of "
             f"{MAX_ELEMENTS} (2**31 - 1); use a smaller model or model.cell=unrolled")
    rows = b["batch_size"]
    if b["max_tokens"] is None and rows is not None and rows >= 1:
        # Every bucket's batches have exactly batch_size rows.
        need(rows * gates * hidden <= MAX_ELEMENTS, "bucketing.batch_size", rows,
             f"makes each step's {model['mode']} gate array {rows} rows x {gates} gates x "
             f"{hidden} = {rows * gates * hidden} elements, more than MXNet's limit of "
             f"{MAX_ELEMENTS} (2**31 - 1) per array; use at most "
             f"{MAX_ELEMENTS // (gates * hidden)} rows")


def check_vocab_size(model, vocab_size: int, num_classes: int | None = None) -> None:
    """Refuse an embedding (vocabulary x embed) or output layer (vocabulary, or classes, x
    hidden) MXNet cannot make, once the data gave the vocabulary: ``ValueError`` naming the
    model key and the product."""
    m = to_dict(model)
    hidden = m["hidden_size"]
    embed = m["embed_size"] or hidden
    if m["name"] in _PER_CLASS:
        out = ("model.hidden_size", hidden, num_classes or 0, hidden * (1 + m["bidirectional"]),
               "classes")
    else:
        out = ("model.hidden_size", hidden, vocab_size, hidden, "words")
    for key, value, rows, width, what in (
            ("model.embed_size", embed, vocab_size, embed, "words"), out):
        if rows * width > MAX_ELEMENTS:
            raise ValueError(f"{key}={value} with {rows} {what} makes a {rows} x {width} = "
                             f"{rows * width} element weight matrix, more than MXNet's limit of "
                             f"{MAX_ELEMENTS} (2**31 - 1) per array; use a smaller {key} (or a "
                             "larger dataset.min_count for a smaller vocabulary)")


def _check_optimizer(t: dict, need) -> None:
    """Make the optimizer once, as the trainer will: an unknown argument or a value it cannot
    take is named under trainer.optimizer_params before anything is written."""
    import mxnet as mx

    params = t["optimizer_params"]
    for key, value in params.items():
        need(key not in _OPTIMIZER_OWN, f"trainer.optimizer_params.{key}", value,
             f"is set by {_OPTIMIZER_OWN.get(key)}: give that key instead")
        need(key not in _OPTIMIZER_REFUSED, f"trainer.optimizer_params.{key}", value,
             f"cannot be given: a checkpoint cannot hold it (refused: "
             f"{', '.join(_OPTIMIZER_REFUSED)}); use trainer.lr_decay for a schedule")
        need(isinstance(value, (int, float)), f"trainer.optimizer_params.{key}", value,
             "must be a number or true/false")
    try:
        mx.optimizer.create(t["optimizer"], learning_rate=t["lr"], wd=t["weight_decay"],
                            **params)
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"trainer.optimizer_params={params!r} do not fit trainer.optimizer="
                         f"{t['optimizer']!r}: {e}") from None


# Datasets read from the user's files (dataset.path, max_length, ...).
_FILES = ("text", "tagged", "pairs")


def _as_prepared(ds: dict, need) -> dict:
    """A prepared directory's dataset config as the file config it stands for (``name`` text,
    tagged or pairs; its ``label``), after checking what the directory fixed: the remaining
    checks of :func:`validate` then apply as to that file."""
    # Imported here: only a prepared dataset needs it (it loads numpy and MXNet's Dataset).
    from bucketrnn.data.prepared import is_prepared, read_manifest

    name = ds["name"]
    if name == "prepared":
        need(bool(ds["path"]), "dataset.path", ds["path"],
             "is required for dataset=prepared (a directory bucketrnn-prepare wrote)")
    elif not (name in _FILES and is_prepared(ds["path"])):
        return ds
    try:
        manifest = read_manifest(ds["path"])
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"dataset.path={ds['path']!r}: {e}") from None
    o = manifest["options"]
    form = o["format"]
    need(name in ("prepared", form), "dataset", name,
         f"must be prepared or {form}: dataset.path={ds['path']!r} was prepared as {form}")
    for key in ("valid_path", "test_path", "max_length"):
        need(ds[key] is None, f"dataset.{key}", ds[key],
             f"must be null for a prepared dataset.path ({ds['path']!r}): held-out data comes "
             "from valid_fraction/test_fraction, max_length was applied by bucketrnn-prepare "
             "(--max-length)")
    for key in ("tokens", "label"):
        need((ds[key] or None) == o[key], f"dataset.{key}", ds[key],
             f"must say what dataset.path={ds['path']!r} holds ({key}={o[key]!r}, as it was "
             f"prepared; the run's config.json records how its text reads): set "
             f"dataset.{key}={o[key]}")
    need(ds["min_count"] in (1, o["min_count"]), "dataset.min_count", ds["min_count"],
         f"is fixed by bucketrnn-prepare for a prepared dataset.path (it used --min-count "
         f"{o['min_count']}): leave it out, or prepare again with --min-count "
         f"{ds['min_count']}")
    return {**ds, "name": form, "min_count": o["min_count"], "shared_vocab": o["shared_vocab"]}


def validate(cfg) -> None:
    """Check ranges and combinations the types cannot; ``ValueError`` naming the key."""
    d = to_dict(cfg)

    def need(ok, key, value, what):
        if not ok:
            raise ValueError(f"{key} {what}, got {key}={value!r}")

    ds, model, b, t = d["dataset"], d["model"], d["bucketing"], d["trainer"]
    need(isinstance(d["seed"], int) and d["seed"] >= 0, "seed", d["seed"],
         "must be an integer >= 0")
    ds = _as_prepared(ds, need)
    need(ds["min_count"] >= 1, "dataset.min_count", ds["min_count"],
         "must be >= 1 (words seen fewer times become <unk>)")
    if ds["name"] == "text":
        need(bool(ds["path"]), "dataset.path", ds["path"],
             "is required for dataset=text (a UTF-8 file, one sequence per line)")
    if ds["name"] == "tagged":
        need(bool(ds["path"]), "dataset.path", ds["path"],
             "is required for dataset=tagged (a UTF-8 file, one token/TAG token/TAG ... "
             "sentence per line)")
        need(ds["tokens"] == "whitespace", "dataset.tokens", ds["tokens"],
             "must be whitespace for dataset=tagged (items are token/TAG)")
        need(not ds["label"], "dataset.label", ds["label"],
             "must be null for dataset=tagged (the tags are the labels)")
    is_pairs = ds["name"] == "pairs"
    if is_pairs:
        need(bool(ds["path"]), "dataset.path", ds["path"],
             "is required for dataset=pairs (a UTF-8 file, one source<TAB>target pair a line)")
    need(is_pairs == (model["name"] == "seq2seq"), "model.name", model["name"],
         f"must be seq2seq exactly when dataset=pairs (dataset={ds['name']})")
    need(not model["share_embeddings"] or ds["shared_vocab"], "model.share_embeddings",
         model["share_embeddings"], "needs dataset.shared_vocab=true (one vocabulary)")
    need(not ds["shared_vocab"] or is_pairs, "dataset.shared_vocab", ds["shared_vocab"],
         "is for dataset=pairs only")
    for key in ("limit", "valid_limit", "test_limit", "max_length"):
        need(ds[key] is None or ds[key] >= 1, f"dataset.{key}", ds[key], "must be null or >= 1")
    need(ds["max_length"] is None or ds["name"] in _FILES, "dataset.max_length",
         ds["max_length"], "is only used with dataset=text (PTB sentences are at most 82 words)")
    need(ds["on_overflow"] == "error" or ds["max_length"] is not None, "dataset.on_overflow",
         ds["on_overflow"], "needs dataset.max_length (the longest line to keep whole)")
    for key in ("valid_fraction", "test_fraction"):
        need(0.0 <= ds[key] < 0.5, f"dataset.{key}", ds[key], "must be in [0, 0.5)")
    label = ds["label"]
    need(label in (None, "", "first_token") or str(label).startswith("contains:"),
         "dataset.label", label, "must be null, 'first_token' or 'contains:<token>'")
    is_tagger = model["name"] == "tagger"
    need(is_tagger == (ds["name"] == "tagged"), "model", model["name"],
         f"must be tagger exactly when dataset=tagged (dataset={ds['name']}): a tagger learns "
         "from token/TAG sentences")
    is_clf = model["name"] == "classifier"
    need(is_clf == bool(label) or is_tagger, "dataset.label", label,
         "must be set exactly when model=classifier (a classifier needs labels, a language "
         f"model none; model={model['name']})")
    need(model["hidden_size"] >= 1, "model.hidden_size", model["hidden_size"], "must be >= 1")
    need(model["num_layers"] >= 1, "model.num_layers", model["num_layers"], "must be >= 1")
    need(model["embed_size"] is None or model["embed_size"] >= 1, "model.embed_size",
         model["embed_size"], "must be null (model.hidden_size) or >= 1")
    need(0.0 <= model["dropout"] < 1.0, "model.dropout", model["dropout"], "must be in [0, 1)")
    lm_mode = {"lstm_lm": "lstm", "gru_lm": "gru"}.get(model["name"])
    need(lm_mode in (None, model["mode"]), "model.mode", model["mode"],
         f"must be {lm_mode!r} for model={model['name']} (choose model=lstm_lm or gru_lm)")
    tied_ok = model["embed_size"] in (None, model["hidden_size"])
    need(is_clf or is_tagger or is_pairs or not model["tie_weights"] or tied_ok,
         "model.embed_size",
         model["embed_size"],
         f"must be null or model.hidden_size={model['hidden_size']} while "
         "model.tie_weights=true")
    _check_model_size(model, b, need)
    auto = b["num_buckets"] == "auto"
    need(auto or (isinstance(b["num_buckets"], int) and not isinstance(b["num_buckets"], bool)),
         "bucketing.num_buckets", b["num_buckets"], "must be an integer >= 1 or auto")
    need(auto or b["num_buckets"] >= 1, "bucketing.num_buckets", b["num_buckets"],
         "must be >= 1")
    need(not auto or b["strategy"] in ("optimal", "fixed"), "bucketing.strategy", b["strategy"],
         "needs an integer bucketing.num_buckets (bucketing.num_buckets=auto plans its own "
         "boundaries, as strategy=optimal)")
    bounds = b.get("auto_boundaries")
    need(bounds is None or (auto and b["strategy"] == "optimal"), "bucketing.auto_boundaries",
         bounds, "is set by bucketing.num_buckets=auto (strategy=optimal) only; use "
         "bucketing.strategy=fixed with bucketing.boundaries to give boundaries")
    need(bounds is None or (len(bounds) >= 1
                            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                    for x in bounds)
                            and all(x < y for x, y in zip(bounds, bounds[1:]))),
         "bucketing.auto_boundaries", bounds, "must be strictly increasing integers >= 1")
    need(b["batch_size"] is not None or b["max_tokens"] is not None, "bucketing.batch_size",
         b["batch_size"], "or bucketing.max_tokens must be set")
    need(b["batch_size"] is None or b["batch_size"] >= 1, "bucketing.batch_size",
         b["batch_size"], "must be null or >= 1")
    need(b["max_tokens"] is None or b["max_tokens"] >= 1, "bucketing.max_tokens",
         b["max_tokens"], "must be null or >= 1")
    need((b["strategy"] == "fixed") == (b["boundaries"] is not None), "bucketing.boundaries",
         b["boundaries"], f"must be given exactly when bucketing.strategy=fixed (strategy="
         f"{b['strategy']})")
    need(0 < b["timeout"] < float("inf"), "bucketing.timeout", b["timeout"],
         "must be a finite number of seconds > 0")
    need(t["lr"] > 0, "trainer.lr", t["lr"], "must be > 0")
    need(0 < t["lr_decay"] <= 1, "trainer.lr_decay", t["lr_decay"], "must be in (0, 1]")
    need(t["epochs"] >= 1, "trainer.epochs", t["epochs"], "must be >= 1")
    need(t["max_steps"] is None or t["max_steps"] >= 1, "trainer.max_steps", t["max_steps"],
         "must be null or >= 1")
    need(t["clip_norm"] is None or 0 < t["clip_norm"] < float("inf"), "trainer.clip_norm",
         t["clip_norm"], "must be null or a finite number > 0 (the largest gradient norm)")
    need(t["checkpoint_every"] >= 0, "trainer.checkpoint_every", t["checkpoint_every"],
         "must be >= 0 (0: only at epoch ends)")
    need(t["log_every"] >= 1, "trainer.log_every", t["log_every"], "must be >= 1")
    from bucketrnn.training.loop import ON_NONFINITE

    need(t["on_nonfinite"] in ON_NONFINITE, "trainer.on_nonfinite", t["on_nonfinite"],
         f"must be one of {ON_NONFINITE}")
    need(t["optimizer"] in OPTIMIZERS, "trainer.optimizer", t["optimizer"],
         f"must be one of {', '.join(OPTIMIZERS)} (the optimizers whose state a checkpoint "
         "stores)")
    _check_optimizer(t, need)
    need(ds["name"] in _FILES or not any(ds[k] for k in ("path", "valid_path", "test_path")),
         "dataset.path", ds["path"] or ds["valid_path"] or ds["test_path"],
         f"is read by dataset=text, tagged or pairs only (dataset={ds['name']} would ignore "
         "it): add dataset=text")
    from bucketrnn.distributed import KVSTORES

    need(t["kvstore"] in KVSTORES, "trainer.kvstore", t["kvstore"],
         f"must be one of {', '.join(KVSTORES)}")
    need(t["precision"] == "fp32" or d["memory"]["policy"] == "shared", "trainer.precision",
         t["precision"], f"needs memory.policy=shared (the casts are placed in the symbols "
         f"the shared policy binds), got memory.policy={d['memory']['policy']}")
    ctx = parse_context(t["context"])
    if ctx.device_type == "gpu":
        import mxnet as mx

        gpus = mx.context.num_gpus()
        need(ctx.device_id < gpus, "trainer.context", t["context"],
             f"names a GPU this machine does not have (MXNet sees {gpus} GPU(s)); use "
             "trainer.context=cpu")
    from bucketrnn.graphs.precision import check_precision

    check_precision(t["precision"], ctx, name="trainer.precision")


# Keys a resumed run may change: how long it goes on, how it reports, where it runs. Everything
# else is part of what the checkpoint was trained with and comes back from the run directory.
RESUMABLE = ("trainer.epochs", "trainer.max_steps", "trainer.checkpoint_every",
             "trainer.log_every", "trainer.progress", "trainer.context", "trainer.on_nonfinite",
             "trainer.precision",
             "bucketing.num_workers", "bucketing.timeout", "plots", "resume")
_GROUPS = ("dataset", "model", "bucketing", "trainer", "memory")


def _get(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return "<absent>"
        d = d[part]
    return d


def _flat(d, prefix: str) -> dict:
    """``{"prefix.key.sub": leaf}`` of a nested dict (lists are leaves)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}.{key}"))
    return out


def restore(cfg, saved: dict, overrides, source: str = "config.json") -> DictConfig:
    """The config of a resumed run: ``saved`` (the run's own ``config.json``) with the
    command line's ``overrides`` applied where :data:`RESUMABLE` allows it.

    Parameters
    ----------
    cfg : DictConfig
        The config composed from the command line (its values of the overridden keys are used).
    saved : dict
        The plain config the run was started with.
    overrides : list of str
        The command line's overrides (``key=value``; Hydra's own ``hydra.*`` are ignored).
    source : str
        The saved config's file, named in errors.

    Raises
    ------
    ValueError
        An override of a key that is not resumable and differs from the saved value, or of a
        config group (``model=gru_lm``) whose values differ from the run's: the message names
        the keys. A group override that composes the run's own values is accepted (the same
        command again with ``resume=true``); keys that a dotted override on the same command
        line sets are judged by that override, as above.
    """
    now = to_dict(cfg)
    merged = to_dict(saved)
    keys = [str(text).split("=", 1)[0].lstrip("+~") for text in overrides]
    dotted = [key for key in keys if "." in key and not key.startswith("hydra.")]
    for text, key in zip(overrides, keys):
        if key.startswith("hydra.") or key == "hydra":
            continue
        if key in _GROUPS:
            # The group as composed now must be the run's: rerunning the same command (or
            # relaunching a sweep) with resume=true names the groups the run already has.
            names = {**_flat(now[key], key), **_flat(merged.get(key, {}), key)}
            differ = [name for name in names
                      if not any(name == d or name.startswith(d + ".") for d in dotted)
                      and _get(now, name) != _get(merged, name)]
            if differ:
                shown = ", ".join(f"{name}={_get(merged, name)!r} (now {_get(now, name)!r})"
                                  for name in differ[:5])
                raise ValueError(f"{text!r} does not fit the resumed run: its {key} group "
                                 f"differs in {shown}{' ...' if len(differ) > 5 else ''}; a "
                                 "resumed run keeps its config groups (start a new run to "
                                 "change them)")
            continue
        if _get(now, key) == _get(merged, key):
            continue
        if key not in RESUMABLE:
            raise ValueError(f"{key} cannot change when a run is resumed: the run has "
                             f"{key}={_get(merged, key)!r}, the command line {text!r}. Only "
                             f"{', '.join(RESUMABLE[:-1])} may be given with resume; start a "
                             "new run to change anything else")
        node, *path = key.split(".")
        target = merged
        for part in [node, *path][:-1]:
            target = target.setdefault(part, {})
        target[key.split(".")[-1]] = _get(now, key)
    merged["resume"] = now["resume"]
    try:
        return OmegaConf.merge(OmegaConf.structured(Config), merged)
    except OmegaConfBaseException as e:
        raise ValueError(f"the run's saved config {source!r} does not fit this version's "
                         f"schema: {str(e).splitlines()[0]}") from None
