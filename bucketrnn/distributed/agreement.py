"""Do all workers of a distributed job train on the same plan? Checked once, at start.

Every worker sends a flat fingerprint of its plan and configuration
(:func:`plan_fingerprint`) through the kvstore and receives everybody's
(:func:`exchange_fingerprints`); :func:`check_same_plan` raises on every worker, naming the
fields that differ, if any worker differs. :func:`check_shards` refuses more shards than
batches. Used through :mod:`bucketrnn.distributed`, which re-exports all of it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from bucketrnn import compat
from bucketrnn.distributed.kvstore import shard_of
from bucketrnn.validation import differences

__all__ = ["FINGERPRINT_KEY", "MAX_FINGERPRINT_BYTES", "PlanMismatchError", "check_same_plan",
           "check_shards", "exchange_fingerprints", "plan_fingerprint"]

# Above any key gluon.Trainer uses (it numbers the parameters 0..n-1) and small enough that
# ps-lite's server choice, ``key * 9973 % num_servers`` in a C int, does not overflow.
FINGERPRINT_KEY = 100_000
# Fingerprints longer than this are exchanged as one digest per field.
MAX_FINGERPRINT_BYTES = 4096


class PlanMismatchError(ValueError):
    """The workers of a distributed job built different plans or configurations."""


def plan_fingerprint(loader, **extra) -> dict:
    """A flat, JSON-able description of what every worker must agree on.

    Holds the loader's data and plan fingerprint, its seed, its position ``(epoch, step)``
    (a resumed rank must resume where the others do), the number of steps of the current
    epoch and a digest of its bucket order (the same on every rank, invariant 4), plus
    ``extra`` (model and optimizer settings). The shard index is left out: it is the one
    thing that differs between ranks.

    Parameters
    ----------
    loader : BucketLoader
    **extra
        JSON-able values, e.g. ``model="lstm-2x200"``, ``learning_rate=0.1``.
    """
    state = loader.state_dict()
    plan = loader.plan
    buckets = np.ascontiguousarray(loader.buckets(state["epoch"]), dtype=np.int64)
    fp = {f"loader.{k}": v for k, v in state["fingerprint"].items()}
    fp.update({
        "loader.seed": state["seed"],
        "loader.position": [state["epoch"], state["step"]],
        "plan.keys": [list(k) if isinstance(k, tuple) else k for k in plan.keys],
        "plan.batch_sizes": [int(b) for b in plan.batch_sizes],
        "schedule.steps": int(buckets.size),
        "schedule.buckets": hashlib.blake2b(buckets.tobytes(), digest_size=8).hexdigest(),
    })
    fp.update(extra)
    return fp


def _encode(fingerprint: dict) -> bytes:
    text = json.dumps(fingerprint, sort_keys=True, default=repr).encode()
    if len(text) <= MAX_FINGERPRINT_BYTES:
        return text
    short = {k: "digest:" + hashlib.blake2b(json.dumps(v, sort_keys=True, default=repr).encode(),
                                            digest_size=8).hexdigest()
             for k, v in fingerprint.items()}
    text = json.dumps(short, sort_keys=True).encode()
    if len(text) > MAX_FINGERPRINT_BYTES:
        raise ValueError(f"fingerprint has too many fields ({len(fingerprint)}) to exchange; "
                         f"keep it under {MAX_FINGERPRINT_BYTES} bytes of JSON digests")
    return text


def _decode(row: np.ndarray) -> dict:
    size = int(round(float(row[0])))
    return json.loads(bytes(np.rint(row[1:1 + size]).astype(np.uint8)).decode())


def exchange_fingerprints(kv, fingerprint: dict) -> list:
    """Every worker's ``fingerprint``, by rank (a collective call: all workers make it).

    Each worker writes its JSON bytes, one byte per number, into its own row of a
    ``(num_workers, 1 + MAX_FINGERPRINT_BYTES)`` array. Under ``dist_sync`` the rows are pushed
    to one key, where the servers sum them (the other rows are zeros, so the sum is exact);
    under ``dist_async`` pushes are not summed, so each rank pushes to a key of its own and a
    barrier waits for all before anyone pulls (the servers get a stand-in optimizer first).
    """
    num, rank = shard_of(kv)
    if num == 1:
        return [json.loads(_encode(fingerprint).decode())]
    import mxnet as mx

    text = np.frombuffer(_encode(fingerprint), dtype=np.uint8)
    width = 1 + MAX_FINGERPRINT_BYTES
    row = np.zeros(width, dtype=np.float32)
    row[0], row[1:1 + text.size] = text.size, text
    if "async" in kv.type:
        # Async servers refuse pushes until they have an updater; mx.optimizer.Test adds the
        # pushed value to the stored zeros. The Trainer's own optimizer replaces it later.
        kv.set_optimizer(mx.optimizer.Test(rescale_grad=1.0))
        keys = [FINGERPRINT_KEY + 1 + r for r in range(num)]
        kv.init(keys, [mx.nd.zeros((width,)) for _ in keys])
        kv.push(keys[rank], mx.nd.array(row))
        mx.nd.waitall()  # the push must have reached its server before the barrier
        compat.kvstore_barrier(kv)
        outs = [mx.nd.zeros((width,)) for _ in keys]
        kv.pull(keys, out=outs)
        table = np.stack([o.asnumpy() for o in outs])
    else:
        mine = np.zeros((num, width), dtype=np.float32)
        mine[rank] = row
        kv.init(FINGERPRINT_KEY, mx.nd.zeros((num, width)))
        kv.push(FINGERPRINT_KEY, mx.nd.array(mine))
        out = mx.nd.zeros((num, width))
        kv.pull(FINGERPRINT_KEY, out=out)
        table = out.asnumpy()
    try:
        return [_decode(r) for r in table]
    except (ValueError, UnicodeDecodeError) as e:
        raise PlanMismatchError(
            f"the fingerprint exchange on {kv.type} returned garbage ({e}): a worker pushed "
            f"to kvstore key {FINGERPRINT_KEY} twice or out of turn; call check_same_plan once, "
            "on every worker, before the Trainer's first step") from e


def check_same_plan(kv, fingerprint: dict) -> list:
    """Raise :class:`PlanMismatchError` on every worker unless all sent the same fingerprint.

    A collective call: every worker of the job must make it, at the same point, before the
    ``Trainer`` takes its first step. All workers see the same table, so they all raise (no
    worker is left waiting on the others). A no-op for one process.

    Parameters
    ----------
    kv : mxnet.kvstore.KVStore or None
    fingerprint : dict
        From :func:`plan_fingerprint`, or any JSON-able flat dict.

    Returns
    -------
    list of dict
        Every rank's fingerprint, by rank.
    """
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict, got {type(fingerprint).__name__}")
    table = exchange_fingerprints(kv, fingerprint)
    ref = table[0]
    problems = []
    for rank, other in enumerate(table[1:], start=1):
        diff = differences(ref, other, "rank 0", f"rank {rank}")
        if diff:
            problems.append(f"rank {rank} differs from rank 0 in " + "; ".join(diff))
    if problems:
        raise PlanMismatchError(
            f"the {len(table)} workers of this {kv.type} job built different plans or "
            f"configurations: {' | '.join(problems)}. Every worker must run the same command "
            "on the same data (only the rank may differ)")
    return table


def check_shards(loader) -> None:
    """Raise ``ValueError`` if there are more shards than batches in the current epoch.

    With more ranks than batches, ``last_batch='fill'`` hands ranks batches made mostly or
    only of fill rows (weight 0): they run but learn little or nothing. Also raised if any
    rank would get no real example. Computed from the plan, the same on every rank, so every
    rank raises.
    """
    shards = loader.num_shards
    if shards == 1:
        return
    epoch = loader.epoch
    real = loader.real_rows_per_rank(epoch)
    single = int(sum(-(-n // b) for n, b in zip(loader.bucket_sizes, loader.plan.batch_sizes)))
    idle = np.flatnonzero(real == 0)
    if single < shards or idle.size:
        why = (f"rank(s) {', '.join(map(str, idle.tolist()))} would get no real example"
               if idle.size else "every rank's batches would be mostly fill rows")
        raise ValueError(
            f"num_shards={shards} is more than the {single} batches of epoch {epoch} on one "
            f"worker (last_batch={loader.last_batch!r}): {why}. Use fewer workers, a "
            "smaller batch_size, or more data")
