"""A tiny data-parallel training script on the library API, for tests/distributed/test_launch.py.

Run it under ``bucketrnn-launch ... -- python tests/distributed/dist_worker.py --out DIR ...``
(or alone with ``--kvstore local``). Each worker trains a small LSTM language model on its shard
of a synthetic dataset and writes ``DIR/worker-<rank>.json``: the example indices it saw per
epoch, the bucket of every step, its step count and a digest of its final parameters. Rank 0
writes ``checkpoint.npz`` into ``--run-dir`` every ``--checkpoint-every`` steps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bucketrnn import distributed  # noqa: E402
from bucketrnn.models import loss_normalizer  # noqa: E402
from bucketrnn.training import checkpoint as ckpt  # noqa: E402
from bucketrnn.training import optim_state  # noqa: E402

VOCAB = 20


def make_data(num_examples: int, seed: int = 0) -> list:
    """Token-id sequences of 2..14 tokens (a few buckets' worth of lengths)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 15, size=num_examples)
    return [rng.integers(1, VOCAB, size=int(n)).tolist() for n in lengths]


def param_digest(params) -> tuple[str, dict]:
    h = hashlib.blake2b(digest_size=16)
    sums = {}
    for name in sorted(params.keys()):
        arr = params[name].data().asnumpy()
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
        sums[name] = float(arr.astype(np.float64).sum())
    return h.hexdigest(), sums


def parse(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True, help="directory for worker-<rank>.json")
    p.add_argument("--kvstore", default="dist_sync")
    p.add_argument("--examples", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--odd-batch-size", type=int, default=None,
                   help="batch size of rank 1 (to make the plans differ)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--die-at-step", type=int, default=None,
                   help="os._exit(3) on --die-rank once this many steps are done")
    p.add_argument("--die-rank", type=int, default=1)
    p.add_argument("--num-shards", type=int, default=None, help="local kvstore only")
    p.add_argument("--shard-index", type=int, default=None, help="local kvstore only")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    kv = distributed.create_kvstore(args.kvstore)
    with distributed.exit_on_error(kv):
        train(args, kv)


def train(args, kv):
    import mxnet as mx
    from mxnet import autograd, gluon

    from bucketrnn.data.loader import BucketLoader
    from bucketrnn.graphs.cache import GraphCache
    from bucketrnn.models import LanguageModel

    num_shards, rank = distributed.shard_of(kv)
    if args.num_shards is not None:
        if num_shards != 1:
            raise ValueError("--num-shards is for a single process (--kvstore local)")
        num_shards, rank = args.num_shards, args.shard_index or 0
    batch_size = args.odd_batch_size if (rank == 1 and args.odd_batch_size) else args.batch_size
    loader = BucketLoader(make_data(args.examples, args.seed), batch_size=batch_size,
                          num_buckets=3, shuffle=True, seed=args.seed, num_shards=num_shards,
                          shard_index=rank)
    config = {"model": f"lstm-1x8-v{VOCAB}", "optimizer": "sgd", "lr": args.lr,
              "seed": args.seed}
    path = os.path.join(args.run_dir, ckpt.FILENAME) if args.run_dir else None
    os.makedirs(args.out, exist_ok=True)
    if args.run_dir:
        os.makedirs(args.run_dir, exist_ok=True)
    state, step = None, 0
    if args.resume and path and os.path.isfile(path):
        state = ckpt.load(path, fingerprint=config)
        loader.load_state_dict(state.meta["loader"])
        step = state.meta["global_step"]
    # Collective and before the Trainer's first step: every rank must agree on the plan,
    # including where it resumes.
    distributed.check_same_plan(kv, distributed.plan_fingerprint(loader, **config))
    distributed.check_shards(loader)

    mx.random.seed(args.seed)
    # memory="static": chosen when the "shared" policy still stalled in this loop (since fixed
    # in graphs.py); kept so the figures recorded in docs/distributed.md stay comparable.
    graphs = GraphCache(LanguageModel.factory(vocab_size=VOCAB, hidden_size=8),
                        keys=loader.plan.keys, memory="static")
    graphs.initialize(mx.init.Xavier())
    params = graphs.collect_params()
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": args.lr}, kvstore=kv,
                            update_on_kvstore=distributed.update_on_kvstore(kv))
    # Under dist_async the optimizer runs on the servers and MXNet cannot save or load its
    # state from a worker: the checkpoint then holds the parameters only.
    worker_states = not distributed.update_on_kvstore(kv)
    if state is not None:
        for name, p in params.items():
            p.set_data(mx.nd.array(state.params[name], dtype=p.dtype))
    if state is not None and worker_states:
        optim_state.restore(trainer, state.optimizer, path)

    def save():
        if path is None or not distributed.is_checkpoint_writer(kv):
            return
        states = optim_state.capture(trainer) if worker_states else None
        ckpt.save(path, {n: p.data().asnumpy() for n, p in params.items()}, states,
                  {"global_step": step, "loader": loader.state_dict()}, fingerprint=config)

    seen, buckets, start_step, trace = {}, [], step, []
    done = False
    while loader.epoch < args.epochs and not done:
        epoch = loader.epoch
        for batch in loader:
            if args.die_at_step is not None and step == args.die_at_step \
                    and rank == args.die_rank:
                print(f"rank {rank}: dying at step {step} as asked", flush=True)
                os._exit(3)
            real = np.asarray(batch.indices)
            real = real[real >= 0]
            count = loss_normalizer(batch)
            with autograd.record():
                loss = graphs(batch)
                # dist_sync sums the workers' gradients: dividing by the worker count makes the
                # update the mean of the workers' per-token means.
                objective = loss.sum() / max(count, 1.0) / num_shards
            objective.backward()
            # Not trainer.step: distributed.step waits for the Trainer's initial parameter
            # broadcast first (see distributed.ready).
            distributed.step(trainer, 1)
            # Wait for the step's exchange and update: MXNet runs ahead asynchronously, and a
            # rank told to die at step S must have finished S steps (so rank 0 has pushed step
            # S, after writing its checkpoint of step S - 1).
            mx.nd.waitall()
            step += 1
            trace.append(param_digest(params)[0][:12])  # parameters after every step
            seen.setdefault(str(epoch), []).extend(int(i) for i in real)
            buckets.append(int(batch.bucket_key))
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                save()
            if args.max_steps is not None and step >= args.max_steps:
                done = True
                break
    mx.nd.waitall()
    digest, sums = param_digest(params)
    result = {"rank": rank, "num_workers": num_shards, "kvstore": args.kvstore,
              "steps": step, "steps_this_run": step - start_step, "resumed_at": start_step,
              "seen": seen, "buckets": buckets, "trace": trace, "param_digest": digest,
              "param_sums": sums, "examples": args.examples}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"worker-{rank}.json"), "w") as f:
        json.dump(result, f)
    print(f"rank {rank}: {step} steps, params {digest}", flush=True)


if __name__ == "__main__":
    main()
