"""The kvstore side of data-parallel training: create the store, take a shard, step, threads.

Used through :mod:`bucketrnn.distributed`, which re-exports it with the plan agreement
(:mod:`bucketrnn.distributed.agreement`); the processes of a job are started by
:mod:`bucketrnn.distributed.launch`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from typing import NamedTuple

import mxnet as mx

from bucketrnn import compat
from bucketrnn.cores import physical_cores
from bucketrnn.errors import BucketRNNWarning
from bucketrnn.validation import check_int

__all__ = [
    "KVSTORES",
    "Shard",
    "allreduce_grads",
    "check_threads",
    "create_kvstore",
    "default_threads",
    "exit_on_error",
    "is_checkpoint_writer",
    "kvstore_for_training",
    "ready",
    "shard_of",
    "step",
    "update_on_kvstore",
]

KVSTORES = ("local", "device", "dist_sync", "dist_async")
# What ps-lite needs in every process of a job; DMLC_ROLE says which process this is.
DIST_ENV = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER",
            "DMLC_NUM_WORKER")
class Shard(NamedTuple):
    """Which part of the data this process trains on: pass both to ``BucketLoader``."""

    num_shards: int
    shard_index: int


def _is_store(kv) -> bool:
    """A ready kvstore, as opposed to None or a name: the one name-or-store test."""
    return hasattr(kv, "push")


def _kv_type(kv) -> str:
    """A store's ``type``, a name as given, ``'none'`` for None."""
    if _is_store(kv):
        return kv.type
    return "none" if kv is None else kv


def create_kvstore(kvstore="local"):
    """Create the kvstore named ``kvstore``, after checking this process can join it.

    Parameters
    ----------
    kvstore : {'local', 'device', 'dist_sync', 'dist_async'} or mxnet.kvstore.KVStore or None
        ``'local'``/``'device'``: one process (gradients summed over its contexts).
        ``'dist_sync'``: workers sum gradients every step and all apply the same update.
        ``'dist_async'``: servers apply each worker's update as it comes (the optimizer runs
        on the servers; see :func:`update_on_kvstore`). A ready ``KVStore`` or None is
        returned as is.

    Returns
    -------
    mxnet.kvstore.KVStore or None

    Raises
    ------
    ValueError
        Unknown name, or a ``dist_*`` store in a process that was not started as a worker of
        a job (the message lists the missing ``DMLC_*`` variables).
    RuntimeError
        MXNet could not create or join the store.

    Examples
    --------
    >>> kv = create_kvstore("local")
    >>> kv.type, shard_of(kv), is_checkpoint_writer(kv)
    ('local', Shard(num_shards=1, shard_index=0), True)
    """
    if kvstore is None or _is_store(kvstore):
        return kvstore
    _check_name(kvstore)
    if kvstore.startswith("dist"):
        missing = [name for name in DIST_ENV if not os.environ.get(name)]
        if missing:
            raise ValueError(
                f"kvstore={kvstore!r} needs a distributed job, but {', '.join(missing)} "
                "is not set in this process. Start the job with "
                "`bucketrnn-launch --workers N --servers 1 -- <command>`, or set the "
                "DMLC_* variables by hand (docs/distributed.md); use kvstore='local' for one "
                "process")
        role = os.environ["DMLC_ROLE"]
        if role != "worker":
            raise ValueError(f"kvstore={kvstore!r} is created by workers only, but this "
                             f"process has DMLC_ROLE={role!r}")
        check_threads()
    try:
        kv = mx.kv.create(kvstore)
    except mx.base.MXNetError as e:
        raise RuntimeError(f"MXNet could not create kvstore={kvstore!r}: {e}") from e
    if kvstore.startswith("dist"):
        _install_excepthook()
    return kv


def kvstore_for_training(kvstore="device"):
    """What a training loop hands ``gluon.Trainer``: a ``dist_*`` name becomes its store (this
    process joins the job and learns its rank); ``local``/``device`` stay names (one process:
    gluon needs no store for one context); a ready store or None is returned as is.

    Raises ``ValueError`` for any other name: gluon would silently train without a store.
    """
    if kvstore is None or _is_store(kvstore):
        return kvstore
    _check_name(kvstore)
    return create_kvstore(kvstore) if kvstore.startswith("dist") else kvstore


def _check_name(kvstore) -> None:
    if kvstore not in KVSTORES:
        raise ValueError(f"kvstore must be one of {', '.join(map(repr, KVSTORES))}, got "
                         f"kvstore={kvstore!r}")


def _die(code: int) -> None:
    """Print the exception being handled, then leave without finalizing the kvstore."""
    traceback.print_exc()
    _flush()
    os._exit(code)


def _flush() -> None:
    """Flush stdout and stderr before ``os._exit``, which skips Python's own flushing."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _install_excepthook():
    # A dist worker that ends on an uncaught exception would hang at exit: deleting the
    # kvstore waits in a barrier for the other workers, which wait for this one's gradients.
    # Leaving with os._exit skips that, so the launcher sees the failure at once.
    previous = sys.excepthook
    if getattr(previous, "_bucketrnn", False):
        return

    def hook(kind, value, tb):
        previous(kind, value, tb)
        _flush()
        os._exit(1)

    hook._bucketrnn = True
    sys.excepthook = hook


@contextlib.contextmanager
def exit_on_error(kv=None):
    """In a ``dist_*`` worker, end the process at once on an exception from the block.

    Uncaught exceptions already do (:func:`create_kvstore` installs a ``sys.excepthook``);
    this also covers code run by a framework that catches exceptions and exits normally
    (Hydra, or an app turning errors into ``sys.exit(2)``), where the exit would wait forever
    for the other workers. Exit code 1, or the code of a ``SystemExit``.

    Parameters
    ----------
    kv : mxnet.kvstore.KVStore, optional
        Acts for a ``dist_*`` store; without one, for a process started as a worker of a job
        (``DMLC_ROLE=worker``), so it can wrap code that creates the store itself. A no-op
        otherwise.

    Examples
    --------
    >>> with exit_on_error(None):
    ...     pass
    """
    if kv is None:
        active = os.environ.get("DMLC_ROLE") == "worker"
    else:
        active = _is_store(kv) and "dist" in kv.type
    if not active:
        yield
        return
    try:
        yield
    except SystemExit as e:
        if e.code not in (None, 0):
            _flush()
            os._exit(e.code if isinstance(e.code, int) else 1)
        raise
    except BaseException:
        _die(1)


def shard_of(kv) -> Shard:
    """``Shard(num_workers, rank)`` of ``kv``; ``Shard(1, 0)`` for None or a local store (or
    the name ``'local'``/``'device'``).

    The rank is the one ps-lite assigned, which need not be the launch order.
    """
    if _is_store(kv):
        return Shard(int(kv.num_workers), int(kv.rank))
    if _kv_type(kv).startswith("dist"):
        raise ValueError(f"kvstore={kv!r} is a name: create the store with "
                         "distributed.create_kvstore first, to know this worker's rank")
    return Shard(1, 0)


def is_checkpoint_writer(kv) -> bool:
    """True in the one process that writes checkpoints: rank 0 (or a single process).

    All ranks hold the same parameters and the same sampler state ``(epoch, step)`` under
    ``dist_sync``, so rank 0's checkpoint restores every rank.
    """
    return shard_of(kv).shard_index == 0


def update_on_kvstore(kv) -> bool:
    """The ``update_on_kvstore`` to give ``gluon.Trainer`` for ``kv``.

    False (each worker applies the summed gradient itself; the workers' parameters stay
    identical and optimizer states can be saved by rank 0) except for ``dist_async``, where
    MXNet requires the servers to run the optimizer.
    """
    return "async" in _kv_type(kv)


def ready(trainer) -> None:
    """Create ``trainer``'s kvstore and wait for rank 0's parameters to arrive (idempotent).

    The ``Trainer`` broadcasts rank 0's parameters on first use (or when loading optimizer
    states) with an asynchronous pull into the parameters. Under ``dist_sync`` with MXNet
    1.9.1, a first gradient exchange that starts while that pull is in flight can race it, and
    a worker's parameters then differ from the others' from step 1 on, for good; waiting once
    for the broadcast rules the race out (``docs/distributed.md``, *In a training loop*, has the
    runs). :func:`step` and :func:`allreduce_grads` call this; call it yourself if you drive
    the Trainer otherwise.
    """
    if compat.trainer_prepare(trainer):
        kv = compat.trainer_kvstore(trainer)
        if kv is not None and "dist" in kv.type:
            mx.nd.waitall()


def step(trainer, batch_size) -> None:
    """``trainer.step(batch_size)`` after :func:`ready`: use it instead of ``trainer.step``."""
    ready(trainer)
    trainer.step(batch_size)


def allreduce_grads(trainer) -> None:
    """``trainer.allreduce_grads()`` after :func:`ready` (then clip, then ``trainer.update``).

    Raises
    ------
    ValueError
        Under ``dist_async``: the servers apply the updates, so the workers never hold the
        summed gradients (no gradient clipping); use :func:`step`.
    """
    ready(trainer)
    if compat.trainer_updates_on_kvstore(trainer):
        raise ValueError(f"the summed gradients are not available with kvstore="
                         f"{compat.trainer_kvstore(trainer).type!r}: its servers update the "
                         "parameters. Use "
                         "distributed.step(trainer, batch_size), without gradient clipping")
    trainer.allreduce_grads()


def check_threads(environ=None) -> None:
    """Warn (``BucketRNNWarning``) if ``OMP_NUM_THREADS`` is not set in a worker's environment.

    Unset, every worker of a machine starts one OpenMP thread per core and the workers fight
    over the cores. It must be set before MXNet is imported, so this can only warn:
    ``bucketrnn-launch`` sets it; by hand, set it to :func:`default_threads` of the workers
    on the machine.
    """
    env = os.environ if environ is None else environ
    if not env.get("OMP_NUM_THREADS"):
        warnings.warn("OMP_NUM_THREADS is not set in this distributed worker: every worker on "
                      "this machine uses all its cores. Set it to cores // workers per machine "
                      f"(here {default_threads(int(env.get('DMLC_NUM_WORKER') or 1))} if all "
                      "workers share this machine); python -m bucketrnn.distributed.launch does",
                      BucketRNNWarning, stacklevel=3)


def default_threads(workers_on_host: int, cores: int | None = None) -> int:
    """OpenMP threads per worker so that the workers of one machine share its cores.

    Parameters
    ----------
    workers_on_host : int
        Worker processes started on this machine.
    cores : int, optional
        Default: the physical cores this process may run on
        (:func:`bucketrnn.cores.physical_cores`).

    Examples
    --------
    >>> default_threads(2, cores=8), default_threads(4, cores=2)
    (4, 1)
    """
    workers_on_host = check_int("workers_on_host", workers_on_host, low=1)
    if cores is None:
        cores = physical_cores()
    return max(1, int(cores) // workers_on_host)
