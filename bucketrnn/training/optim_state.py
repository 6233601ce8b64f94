"""Optimizer state as named arrays plus JSON: what a checkpoint stores instead of a pickle.

``gluon.Trainer.save_states`` pickles the updater (and ``load_states`` unpickles it, which runs
whatever code the file names). This module reads the same state and writes it as data:

- per parameter, the optimizer's state (``None``, an array, or a tuple/list of them, nested for
  ``multi_precision``'s ``(weight32, state)``), keyed by the parameter's *name*; every array is
  ``optim/<parameter name>/s[.i[.j]]`` and the structure is JSON;
- the optimizer's counters (``num_update``, ``begin_num_update``, the per-parameter update
  counts Adam and FTML take their bias correction from) and, for the few optimizers that keep
  another scalar between updates (Nadam's ``m_schedule``, LARS's last learning rates), those.

:func:`restore` checks the optimizer's class and every state's structure, shape and dtype
against what the current model's optimizer would create, and refuses a mismatch before it
changes anything; a restored run updates bit for bit as the original would have.

Examples
--------
>>> import mxnet as mx
>>> from mxnet import autograd, gluon
>>> net = gluon.nn.Dense(2, in_units=3, prefix="d_")
>>> net.initialize()
>>> trainer = gluon.Trainer(net.collect_params(), "adam")
>>> with autograd.record():
...     loss = net(mx.nd.ones((1, 3))).sum()
>>> loss.backward(); trainer.step(1)
>>> state = capture(trainer)
>>> sorted(state.arrays)[:2], state.doc["num_update"]
(['optim/d_bias/s.0', 'optim/d_bias/s.1'], 1)
>>> restore(trainer, state, "example")
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bucketrnn import compat
from bucketrnn.errors import CheckpointError, StateMismatchError
from bucketrnn.validation import is_int

__all__ = ["PREFIX", "SUPPORTED", "OptimizerState", "capture", "check", "check_supported",
           "restore"]

PREFIX = "optim/"

# Optimizer classes whose whole evolving state is the per-parameter states plus the counters,
# and the extra scalar attributes a few of them change at every update. LBSGD (dicts of
# accumulated gradients) and the Test optimizer are not listed: they cannot be restored exactly.
SUPPORTED = {
    "AdaDelta": (), "AdaGrad": (), "Adam": (), "Adamax": (), "ccSGD": (), "DCASGD": (),
    "FTML": (), "Ftrl": (), "LAMB": (), "LARS": ("last_lr", "cur_lr"), "Nadam": ("m_schedule",),
    "NAG": (), "RMSProp": (), "SGD": (), "SGLD": (), "Signum": (),
}


@dataclass
class OptimizerState:
    """Arrays (``optim/<param>/<path>`` -> numpy array) and the JSON document describing them."""

    arrays: dict
    doc: dict


# ---------------------------------------------------------------- the Trainer, by name
# (the MXNet private attributes behind these are in bucketrnn.compat)

def _param_names(trainer) -> list:
    """Parameter names in the Trainer's index order (the updater keys states by index)."""
    return [p.name for p in compat.trainer_params(trainer)]


def _trainable(trainer) -> dict:
    return {p.name: i for i, p in enumerate(compat.trainer_params(trainer))
            if p.grad_req != "null"}


def _weight(trainer, index, ctx_pos=0):
    return compat.trainer_params(trainer)[index].list_data()[ctx_pos]


def _device_ids(trainer) -> list:
    return [ctx.device_id for ctx in compat.trainer_contexts(trainer)]


# ---------------------------------------------------------------- checks
def check_supported(trainer) -> None:
    """Raise ``ValueError`` if the Trainer's optimizer state cannot be checkpointed exactly."""
    opt = trainer.optimizer
    name = type(opt).__name__
    if name not in SUPPORTED:
        raise ValueError(f"optimizer {name} cannot be checkpointed without pickle; use one of "
                         f"{sorted(n.lower() for n in SUPPORTED)}")
    if opt.lr_scheduler is not None:
        raise ValueError("an optimizer with an lr_scheduler cannot be checkpointed exactly (the "
                         "scheduler's state is code); use TrainLoop's lr_schedule instead")


def _describe(value, key: str, arrays: dict):
    import mxnet as mx

    if value is None:
        return None
    if isinstance(value, mx.nd.NDArray):
        arrays[key] = value.asnumpy()
        return {"array": key, "shape": list(value.shape), "dtype": np.dtype(value.dtype).name,
                "stype": value.stype}
    if isinstance(value, (tuple, list)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return {kind: [_describe(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]}
    raise TypeError(f"optimizer state {key} is a {type(value).__name__}; only arrays, None and "
                    "tuples/lists of them can be checkpointed")


def capture(trainer) -> OptimizerState:
    """The Trainer's optimizer state as arrays and JSON (copies on the host)."""
    check_supported(trainer)
    opt = trainer.optimizer
    names = _param_names(trainer)
    arrays: dict = {}
    states = {names[i]: _describe(s, f"{PREFIX}{names[i]}/s", arrays)
              for i, s in sorted(compat.trainer_updaters(trainer)[0].states.items())}
    counts = compat.get_index_update_counts(opt)
    doc = {"optimizer": type(opt).__name__, "num_update": int(opt.num_update),
           "begin_num_update": int(opt.begin_num_update),
           # One dict per context, in the Trainer's context order (device ids may differ on
           # resume: cpu(0) then cpu(1)).
           "update_counts": [{names[i]: int(c) for i, c in sorted(counts.get(dev, {}).items())}
                             for dev in _device_ids(trainer)],
           "extra": {a: getattr(opt, a) for a in SUPPORTED[type(opt).__name__]},
           "states": states}
    return OptimizerState(arrays=arrays, doc=doc)


def _counter(value, what: str, where: str) -> int:
    if not is_int(value) or value < 0:
        raise CheckpointError(f"{where}: {what} must be a non-negative integer, got {value!r}")
    return value


def _kind(saved):
    """``"array"``, ``"tuple"`` or ``"list"`` for a well-formed node of a state tree."""
    if isinstance(saved, dict):
        if "array" in saved and saved.get("stype", "default") in ("default", "row_sparse"):
            return "array"
        if len(saved) == 1 and next(iter(saved)) in ("tuple", "list"):
            return next(iter(saved))
    return None


def _match(saved, template, key: str, arrays: dict, where: str):
    """Compare a saved state tree with the one the current optimizer would create."""
    import mxnet as mx

    if template is None or saved is None:
        if template is not None or saved is not None:
            raise StateMismatchError(
                f"{where}: optimizer state {key} is {'absent' if saved is None else 'present'} "
                f"but this model's optimizer {'has one' if template is not None else 'has none'}"
                " (other optimizer settings, e.g. momentum?)")
        return
    kind = _kind(saved)
    if kind is None:
        raise CheckpointError(f"{where}: optimizer state {key} is malformed: {saved!r:.80}")
    body = saved[kind]
    if isinstance(template, mx.nd.NDArray):
        if kind != "array":
            raise StateMismatchError(f"{where}: optimizer state {key} is a {kind}, this "
                                     "model's optimizer holds an array there")
        if body != key or key not in arrays:
            raise CheckpointError(f"{where}: optimizer state array {key} is missing")
        a, want = arrays[key], (tuple(template.shape), np.dtype(template.dtype))
        if (a.shape, a.dtype) != want or tuple(saved.get("shape", ())) != a.shape:
            raise StateMismatchError(f"{where}: optimizer state {key} has shape {a.shape} "
                                     f"{a.dtype}, this model's optimizer {want[0]} {want[1]}")
        return
    want_kind = "tuple" if isinstance(template, tuple) else "list"
    if kind != want_kind or not isinstance(body, list) or len(body) != len(template):
        raise StateMismatchError(f"{where}: optimizer state {key} has another structure than "
                                 f"this model's optimizer creates ({want_kind} of "
                                 f"{len(template)})")
    for i, (s, t) in enumerate(zip(body, template, strict=True)):
        _match(s, t, f"{key}.{i}", arrays, where)


def check(trainer, state: OptimizerState, where: str) -> None:
    """Refuse (``StateMismatchError`` / ``CheckpointError``) a state this Trainer cannot take.

    Checks the optimizer class, the parameter names, every counter's type and every state's
    structure, shape and dtype. Changes nothing.
    """
    check_supported(trainer)
    doc, opt = state.doc, trainer.optimizer
    if not isinstance(doc, dict) or not isinstance(doc.get("states"), dict):
        raise CheckpointError(f"{where}: the optimizer state is malformed (no 'states')")
    if doc.get("optimizer") != type(opt).__name__:
        raise StateMismatchError(f"{where}: the optimizer state is {doc.get('optimizer')!r}'s, "
                                 f"this run uses {type(opt).__name__}")
    for key in ("num_update", "begin_num_update"):
        _counter(doc.get(key), key, where)
    counts, extra = doc.get("update_counts"), doc.get("extra")
    if not isinstance(counts, list) or len(counts) != len(_device_ids(trainer)) or not all(
            isinstance(c, dict) for c in counts):
        raise StateMismatchError(f"{where}: the optimizer state has update counts for "
                                 f"{len(counts) if isinstance(counts, list) else '?'} "
                                 f"context(s), this run has {len(_device_ids(trainer))}")
    wanted = SUPPORTED[type(opt).__name__]
    if not isinstance(extra, dict) or sorted(extra) != sorted(wanted) or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            for v in extra.values()):
        raise CheckpointError(f"{where}: the optimizer state must hold the scalars {wanted}, "
                              f"got {extra!r:.80}")
    trainable, states = _trainable(trainer), doc["states"]
    named = set(states) | {n for c in counts for n in c}
    unknown = sorted(named - set(trainable))
    if unknown:
        raise StateMismatchError(f"{where}: optimizer state for parameters this model does "
                                 f"not train: {unknown[:5]}")
    for c in counts:
        for name, value in c.items():
            _counter(value, f"update count of {name}", where)
    # A state for every trained parameter, or none at all (saved before the first update):
    # anything between would resume some parameters with fresh moments.
    if states and set(states) != set(trainable):
        raise CheckpointError(f"{where}: the optimizer state lacks parameters "
                              f"{sorted(set(trainable) - set(states))[:5]}")
    if any(set(c) != set(states) for c in counts) or (
            not states and doc["num_update"] != doc["begin_num_update"]):
        raise CheckpointError(f"{where}: the optimizer's update counts do not match its "
                              f"states ({len(states)} states, counts for "
                              f"{[len(c) for c in counts]} parameters)")
    expected = {f"{PREFIX}{name}/s" for name in states}
    stray = sorted(k for k in state.arrays if k.rsplit("/", 1)[0] + "/s" not in expected)
    if stray:
        raise CheckpointError(f"{where}: unexpected optimizer arrays {stray[:5]}")
    for name, saved in states.items():
        index = trainable[name]
        template = opt.create_state_multi_precision(index, _weight(trainer, index))
        _match(saved, template, f"{PREFIX}{name}/s", state.arrays, where)


def _build(saved, arrays: dict, ctx):
    import mxnet as mx

    if saved is None:
        return None
    kind = _kind(saved)
    body = saved[kind]
    if kind == "array":
        value = mx.nd.array(arrays[body], ctx=ctx, dtype=arrays[body].dtype)
        return value if saved.get("stype", "default") == "default" else value.tostype(
            saved["stype"])
    items = [_build(s, arrays, ctx) for s in body]
    return tuple(items) if kind == "tuple" else items


def restore(trainer, state: OptimizerState, where: str) -> None:
    """Put ``state`` into the Trainer (after :func:`check`); the next update continues exactly."""
    check(trainer, state, where)
    doc, opt = state.doc, trainer.optimizer
    trainable = _trainable(trainer)
    for pos, upd in enumerate(compat.trainer_updaters(trainer)):
        states = {}
        for name, saved in doc["states"].items():
            ctx = _weight(trainer, trainable[name], pos).context
            states[trainable[name]] = _build(saved, state.arrays, ctx)
        upd.states = states
        upd.states_synced = dict.fromkeys(states, True)  # built on the weight's context
    devices = _device_ids(trainer)
    counts = {dev: {trainable[n]: c for n, c in doc["update_counts"][pos].items()}
              for pos, dev in enumerate(devices)}
    compat.set_index_update_counts(opt, counts, devices[0])
    opt.num_update, opt.begin_num_update = doc["num_update"], doc["begin_num_update"]
    for attr, value in doc["extra"].items():
        setattr(opt, attr, value)
