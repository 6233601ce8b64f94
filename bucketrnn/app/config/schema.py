"""The app's config schema: structured configs registered in Hydra's ConfigStore.

The dataclasses are the schema of ``conf/config.yaml`` and its groups (``dataset``, ``model``,
``bucketing``, ``trainer``, ``memory``): an override naming a key that does not exist, or a value
of the wrong type or outside an enum, fails at composition with an error that names the key.
:func:`to_dict` turns a config into plain data and :func:`fingerprint` picks what a checkpoint
must agree with.

Examples
--------
>>> from omegaconf import OmegaConf
>>> cfg = OmegaConf.structured(Config)
>>> cfg.bucketing.num_buckets, cfg.model.cell.value
(8, 'unrolled')
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

__all__ = ["CONF_DIR", "BucketingConfig", "Config", "DatasetConfig", "MemoryConfig", "ModelConfig",
           "LrSchedule", "TrainerConfig", "fingerprint", "register", "saved_config", "to_dict"]


def _conf_dir() -> str:
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


class LrSchedule(str, Enum):
    warmdown = "warmdown"
    cosine = "cosine"
    epoch = "epoch"


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
    # warmdown | cosine (down to zero over the run's planned steps) | epoch (lr * lr_decay ** e,
    # the schedule of runs made before it existed).
    lr_schedule: LrSchedule = LrSchedule.warmdown
    # The share of the planned steps warmdown falls over (null: 0.5); refused with the others.
    lr_warmdown: Optional[float] = None
    # The per-epoch factor of lr_schedule=epoch (null: 0.5 there); refused with the others.
    lr_decay: Optional[float] = None
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 2
    max_steps: Optional[int] = None
    clip_norm: Optional[float] = 1.0
    # Batches per optimizer update: their gradients summed, divided by their real tokens.
    accumulate: int = 1
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
_FINGERPRINT_TRAINER = ("optimizer", "lr", "lr_schedule", "lr_warmdown", "lr_decay",
                        "weight_decay", "optimizer_params", "clip_norm", "accumulate")


def saved_config(saved: dict) -> dict:
    """A run's saved ``config.json`` (a plain dict) in this version's terms, before it is merged
    over the schema's defaults: what an older bucketrnn wrote without a key, it ran with the
    behaviour of that time, not today's default (a run saved without
    ``trainer.lr_schedule`` halved its rate every epoch: ``epoch``; one saved without
    ``trainer.accumulate`` updated after every batch: 1)."""
    trainer = saved.get("trainer") if isinstance(saved, dict) else None
    if isinstance(trainer, dict):
        old = {key: value for key, value in (("lr_schedule", "epoch"), ("accumulate", 1))
               if key not in trainer}
        if old:
            saved = {**saved, "trainer": {**trainer, **old}}
    return saved


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
        value = d["trainer"][key]
        schedule = d["trainer"]["lr_schedule"]
        if key == "lr_schedule" and value == "epoch":
            continue  # the only schedule before the key existed: old checkpoints still load
        if key == "lr_warmdown" and schedule != "warmdown":
            continue  # not used (and absent from old checkpoints)
        if key == "lr_warmdown" and value is None:
            value = 0.5  # what null means there
        if key == "lr_decay" and value is None and schedule == "epoch":
            value = 0.5  # what null means there, and what an old checkpoint holds
        if key == "accumulate" and value == 1:
            continue  # every run before the key existed: old checkpoints still load
        flat[f"trainer.{key}"] = value
    return flat
