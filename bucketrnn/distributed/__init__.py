"""Data-parallel training over MXNet's kvstore: create it, take a shard, agree on the plan.

Every worker of a job builds the same :class:`~bucketrnn.data.loader.BucketLoader` plan and takes
the shard ``kv.rank`` of ``kv.num_workers``. The schedule (invariant 4 in
``tests/test_invariants.py``) then gives all workers the same number of steps and, at each
step, a batch of the same bucket, so every worker runs the same graph at the same time and
``dist_sync`` never waits on an uneven tail.

What a training loop calls, in this order::

    kv = distributed.create_kvstore("dist_sync")          # or "local", "device", "dist_async"
    shard = distributed.shard_of(kv)
    loader = BucketLoader(..., num_shards=shard.num_shards, shard_index=shard.shard_index)
    distributed.check_same_plan(kv, distributed.plan_fingerprint(loader, model=..., lr=...))
    distributed.check_shards(loader)
    trainer = gluon.Trainer(params, ..., kvstore=kv,
                            update_on_kvstore=distributed.update_on_kvstore(kv))
    for batch in loader:
        ...
        distributed.step(trainer, 1)     # not trainer.step: see ready()
        if distributed.is_checkpoint_writer(kv):
            save_checkpoint(...)

:func:`check_same_plan` must run before the ``Trainer`` takes its first step: once the Trainer
has given its optimizer to the servers (``dist_async``), every pushed value is an update.

Modules: :mod:`~bucketrnn.distributed.kvstore` (the store, shards, steps, threads),
:mod:`~bucketrnn.distributed.agreement` (every rank holds the same plan), and
:mod:`~bucketrnn.distributed.launch` (``bucketrnn-launch``: a job's processes on one machine;
by hand across machines, ``docs/distributed.md``).
"""

from bucketrnn.distributed.agreement import (
    PlanMismatchError,
    check_same_plan,
    check_shards,
    plan_fingerprint,
)
from bucketrnn.distributed.kvstore import (
    KVSTORES,
    Shard,
    allreduce_grads,
    check_threads,
    create_kvstore,
    default_threads,
    exit_on_error,
    is_checkpoint_writer,
    kvstore_for_training,
    ready,
    shard_of,
    step,
    update_on_kvstore,
)

__all__ = [
    "KVSTORES",
    "PlanMismatchError",
    "Shard",
    "allreduce_grads",
    "check_same_plan",
    "check_shards",
    "check_threads",
    "create_kvstore",
    "default_threads",
    "exit_on_error",
    "is_checkpoint_writer",
    "kvstore_for_training",
    "plan_fingerprint",
    "ready",
    "shard_of",
    "step",
    "update_on_kvstore",
]
