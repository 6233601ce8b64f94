"""Language modelling on Penn Treebank from the library API alone (no Hydra).

    python examples/ptb_lm.py                # the sizes of `python -m bucketrnn`'s default run
    python examples/ptb_lm.py --limit 500 --hidden 32 --epochs 1   # a smoke run, seconds

Steps: load PTB sentences as token ids (``<eos> w1 ... wn <eos>``), plan length buckets, train one
unrolled graph per bucket with :class:`bucketrnn.training.loop.TrainLoop`, and evaluate perplexity
on the validation and test sentences padded to the training buckets.
"""

import argparse
import time

import mxnet as mx

from bucketrnn.data.datasets import penn_treebank
from bucketrnn.data.loader import BucketLoader, evaluation_loader
from bucketrnn.models import LanguageModel
from bucketrnn.training.loop import TrainLoop


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=21000, help="training sentences (0: all)")
    p.add_argument("--eval-limit", type=int, default=None, help="valid/test sentences")
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--lr-schedule", default="warmdown", choices=["warmdown", "cosine", "epoch"],
                   help="warmdown/cosine: down to zero over the run's steps; epoch: * lr-decay")
    p.add_argument("--lr-warmdown", type=float, default=None,
                   help="share of the steps warmdown falls over (default 0.5)")
    p.add_argument("--lr-decay", type=float, default=None,
                   help="per-epoch factor of --lr-schedule epoch (default 0.5)")
    p.add_argument("--run-dir", default=None, help="write metrics and checkpoints here")
    args = p.parse_args(argv)

    started = time.time()
    train, vocab = penn_treebank("train", limit=args.limit or None)
    valid, _ = penn_treebank("valid", vocab=vocab, limit=args.eval_limit)
    test, _ = penn_treebank("test", vocab=vocab, limit=args.eval_limit)

    loader = BucketLoader(train, batch_size=args.batch_size, num_buckets=args.buckets, seed=0)
    print(loader.plan)
    # Evaluate on the training boundaries: the same graphs serve (plus one if a sentence is longer).
    def eval_loader(ds):
        return evaluation_loader(loader, ds, batch_size=args.batch_size)

    build = LanguageModel.factory(vocab_size=len(vocab), hidden_size=args.hidden,
                                  num_layers=args.layers, tie_weights=True)
    loop = TrainLoop(build, loader, ctx=mx.cpu(), optimizer="adam",
                     optimizer_params={"learning_rate": args.lr}, clip_norm=1.0,
                     lr_schedule=args.lr_schedule, warmdown=args.lr_warmdown,
                     lr_decay=args.lr_decay,
                     epochs=args.epochs, run_dir=args.run_dir, seed=0)
    loop.fit(eval_loader(valid))
    for name, ds in (("valid", valid), ("test", test)):
        result = loop.evaluate(eval_loader(ds))
        print(f"{name} perplexity {result['perplexity']:.1f}")
    print(f"{loop.graphs.compiled} graphs compiled, {time.time() - started:.0f} s in total")


if __name__ == "__main__":
    main()
