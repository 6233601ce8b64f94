"""Every private attribute of MXNet 1.9.1 that bucketrnn reads or writes, in one place.

MXNet's public API has no way to ask whether a Parameter holds data, to tie a block's parameters
to another's after construction, to read a Trainer's optimizer state without pickling it, to wait
for a kvstore barrier, or to reach a DataLoader's worker pool. Each function below wraps one such
private attribute so that an MXNet upgrade has one module to check. Nothing else in the package
touches a private MXNet attribute.
"""

from __future__ import annotations

__all__ = [
    "MAX_ARRAY_ELEMENTS",
    "collect_params_with_prefix",
    "dataloader_pool",
    "finish_deferred_init",
    "forget_dataloader_pool",
    "get_index_update_counts",
    "grad_is_fresh",
    "is_deferred",
    "is_initialized",
    "kvstore_barrier",
    "pool_processes",
    "replace_parameter",
    "set_grad_fresh",
    "set_index_update_counts",
    "trainer_contexts",
    "trainer_kvstore",
    "trainer_params",
    "trainer_prepare",
    "trainer_updaters",
    "trainer_updates_on_kvstore",
]

# MXNet 1.9.1 (built without large-tensor support) indexes an array's elements with int32: an
# array of more than 2**31 - 1 elements is refused when an operator makes it ("larger than 2^31
# elements"). Every check of an array's size, a batch's, a model's or a key's, uses this one.
MAX_ARRAY_ELEMENTS = 2**31 - 1

# ------------------------------------------------------------------ gluon.Parameter / Block


def is_initialized(param) -> bool:
    """Whether ``param`` holds data (initialized, not only deferred)."""
    return param._data is not None


def is_deferred(param) -> bool:
    """Whether ``param`` waits for its first forward to know its shape."""
    return bool(param._deferred_init)


def finish_deferred_init(param) -> None:
    """Allocate a deferred parameter once its shape is known."""
    param._finish_deferred_init()


def grad_is_fresh(data) -> bool:
    """Whether the gradient of ``data`` (an NDArray of a Parameter) is new since the last
    update (gluon.Trainer warns of stale gradients with it)."""
    return data._fresh_grad


def set_grad_fresh(data, fresh: bool) -> None:
    data._fresh_grad = fresh


def collect_params_with_prefix(block) -> dict:
    """``{"encoder.l0_i2h_weight": Parameter, ...}``: a block's parameters by structure."""
    return block._collect_params_with_prefix()


def replace_parameter(block, path: str, param) -> None:
    """Make the parameter at ``path`` (as from :func:`collect_params_with_prefix`) of ``block``
    be ``param``. ``Block.__setattr__`` refuses to replace a Parameter; this does it on purpose
    (to share one Parameter between blocks built independently)."""
    owner = block
    *parents, attr = path.split(".")
    for part in parents:
        owner = owner._children[part]
    old = owner._reg_params.get(attr)
    owner._reg_params[attr] = param
    object.__setattr__(owner, attr, param)
    table = owner._params._params
    if old is not None:
        table.pop(old.name, None)
    table[param.name] = param


# ------------------------------------------------------------------ gluon.Trainer / optimizer


def trainer_params(trainer) -> list:
    """The Trainer's parameters in its index order (updater states are keyed by index)."""
    return list(trainer._params)


def trainer_updaters(trainer) -> list:
    """One ``mx.optimizer.Updater`` per context (``states``: index -> state)."""
    return list(trainer._updaters)


def trainer_contexts(trainer) -> list:
    return list(trainer._contexts)


def get_index_update_counts(optimizer) -> dict:
    """device id -> {index: update count} (Adam and FTML take their bias correction from it)."""
    return optimizer._all_index_update_counts


def set_index_update_counts(optimizer, counts: dict, current: int) -> None:
    optimizer._all_index_update_counts = counts
    optimizer._index_update_count = counts[current]


def trainer_prepare(trainer) -> bool:
    """Create the Trainer's kvstore and push its parameters now (gluon does both lazily at the
    first step). Returns True the first time it is called for ``trainer``."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    first = not getattr(trainer, "_bucketrnn_ready", False)
    trainer._bucketrnn_ready = True
    return first


def trainer_kvstore(trainer):
    """The store the Trainer uses (None for one context without a store)."""
    return trainer._kvstore


def trainer_updates_on_kvstore(trainer) -> bool:
    return bool(trainer._update_on_kvstore)


# ------------------------------------------------------------------ kvstore


def kvstore_barrier(kv) -> None:
    """Wait until every worker of the job reaches this point."""
    kv._barrier()


# ------------------------------------------------------------------ gluon.data.DataLoader


def dataloader_pool(dataloader):
    """The DataLoader's ``multiprocessing`` worker pool (None without workers)."""
    return getattr(dataloader, "_worker_pool", None)


def forget_dataloader_pool(dataloader) -> None:
    dataloader._worker_pool = None


def pool_processes(pool):
    """The worker processes of a ``multiprocessing.Pool`` (None if this Python hides them)."""
    procs = getattr(pool, "_pool", None)
    return procs if isinstance(procs, list) else None
