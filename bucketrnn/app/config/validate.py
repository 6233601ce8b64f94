"""Checks of a composed config that types cannot express, each naming its key and value.

:func:`validate` runs before a run writes anything; :func:`check_vocab_size` once the data's
vocabulary is known; :func:`parse_context` reads ``trainer.context``.
"""

from __future__ import annotations

import re

import mxnet as mx

from bucketrnn.app.config.schema import to_dict
from bucketrnn.compat import MAX_ARRAY_ELEMENTS
from bucketrnn.data.prepared import is_prepared, read_manifest
from bucketrnn.distributed import KVSTORES
from bucketrnn.graphs.precision import check_precision
from bucketrnn.training.loop import ON_NONFINITE
from bucketrnn.validation import is_int

__all__ = ["OPTIMIZERS", "check_vocab_size", "parse_context", "validate"]

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
    params = t["optimizer_params"]
    for key, value in params.items():
        need(key not in _OPTIMIZER_OWN, f"trainer.optimizer_params.{key}", value,
             f"is set by {_OPTIMIZER_OWN.get(key)}: give that key instead")
        need(key not in _OPTIMIZER_REFUSED, f"trainer.optimizer_params.{key}", value,
             f"cannot be given: a checkpoint cannot hold it (refused: "
             f"{', '.join(_OPTIMIZER_REFUSED)}); use trainer.lr_schedule for a schedule")
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
    need(t["lr_decay"] is None or t["lr_schedule"] == "epoch", "trainer.lr_decay", t["lr_decay"],
         f"is the per-epoch factor of trainer.lr_schedule=epoch; trainer.lr_schedule="
         f"{t['lr_schedule']} follows the run's planned steps and would ignore it: add "
         "trainer.lr_schedule=epoch, or leave trainer.lr_decay out")
    need(t["lr_decay"] is None or 0 < t["lr_decay"] <= 1, "trainer.lr_decay", t["lr_decay"],
         "must be null or in (0, 1]")
    need(t["lr_warmdown"] is None or t["lr_schedule"] == "warmdown", "trainer.lr_warmdown",
         t["lr_warmdown"], f"is the falling share of trainer.lr_schedule=warmdown; "
         f"trainer.lr_schedule={t['lr_schedule']} would ignore it: leave it out")
    need(t["lr_warmdown"] is None or 0 < t["lr_warmdown"] <= 1, "trainer.lr_warmdown",
         t["lr_warmdown"], "must be null or in (0, 1] (the share of the planned steps the rate "
         "falls over)")
    need(t["epochs"] >= 1, "trainer.epochs", t["epochs"], "must be >= 1")
    need(t["max_steps"] is None or t["max_steps"] >= 1, "trainer.max_steps", t["max_steps"],
         "must be null or >= 1")
    need(is_int(t["accumulate"]) and t["accumulate"] >= 1, "trainer.accumulate",
         t["accumulate"], "must be an integer >= 1 (batches per optimizer update; 1: every "
         "batch)")
    need(t["clip_norm"] is None or 0 < t["clip_norm"] < float("inf"), "trainer.clip_norm",
         t["clip_norm"], "must be null or a finite number > 0 (the largest gradient norm)")
    need(t["checkpoint_every"] >= 0, "trainer.checkpoint_every", t["checkpoint_every"],
         "must be >= 0 (0: only at epoch ends)")
    need(t["log_every"] >= 1, "trainer.log_every", t["log_every"], "must be >= 1")
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
    need(t["kvstore"] in KVSTORES, "trainer.kvstore", t["kvstore"],
         f"must be one of {', '.join(KVSTORES)}")
    need(t["precision"] == "fp32" or d["memory"]["policy"] == "shared", "trainer.precision",
         t["precision"], f"needs memory.policy=shared (the casts are placed in the symbols "
         f"the shared policy binds), got memory.policy={d['memory']['policy']}")
    ctx = parse_context(t["context"])
    if ctx.device_type == "gpu":
        gpus = mx.context.num_gpus()
        need(ctx.device_id < gpus, "trainer.context", t["context"],
             f"names a GPU this machine does not have (MXNet sees {gpus} GPU(s)); use "
             "trainer.context=cpu")
    check_precision(t["precision"], ctx, name="trainer.precision")
