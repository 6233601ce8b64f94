"""A sentence classifier with its own training loop on BucketLoader and GraphCache.

The task, made from Penn Treebank: does a sentence contain a number? PTB writes every number as
the token ``N``, so the label is 1 when ``N`` occurs in the sentence (the token stays in the
input; the LSTM has to notice it anywhere in a sentence of up to 80 words). The majority class
is printed as the baseline to beat.

    python examples/classify_sentences.py                    # 8000 sentences, 2 epochs
    python examples/classify_sentences.py --limit 300 --epochs 1 --hidden 16   # seconds
"""

import argparse
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from bucketrnn.data.datasets import FlatSequences, penn_treebank
from bucketrnn.data.loader import BucketLoader, evaluation_loader
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import SequenceClassifier


def contains_number(ds, vocab):
    """The same sentences, labelled 1 if the token ``N`` occurs in them."""
    hits = np.add.reduceat((ds.tokens == vocab["N"]).astype(np.int64), ds.offsets[:-1])
    return FlatSequences(ds.tokens, ds.offsets, (hits > 0).astype(np.int32))


def accuracy(graphs, loader):
    correct = total = 0
    loader.set_epoch(0)
    for batch in loader:
        _, logits = graphs(batch)  # no autograd.record(): inference
        real = batch.indices >= 0
        pred = logits.argmax(axis=1).asnumpy().astype(np.int64)
        correct += int((pred == batch.label.asnumpy())[real].sum())
        total += int(real.sum())
    return correct / total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=8000, help="training sentences")
    p.add_argument("--eval-limit", type=int, default=2000, help="validation sentences")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--memory", default="static", choices=["shared", "static", "dynamic"])
    args = p.parse_args(argv)

    train, vocab = penn_treebank("train", limit=args.limit)
    valid, _ = penn_treebank("valid", vocab=vocab, limit=args.eval_limit)
    train, valid = contains_number(train, vocab), contains_number(valid, vocab)
    share = float(valid.labels.mean())
    print(f"{len(train)} training sentences; {100 * share:.1f}% of validation sentences contain "
          f"a number: majority baseline {100 * max(share, 1 - share):.1f}%")

    loader = BucketLoader(train, batch_size=args.batch_size, num_buckets=args.buckets, seed=0)
    valid_loader = evaluation_loader(loader, valid, batch_size=args.batch_size)
    print(loader.plan)

    mx.random.seed(0)
    build = SequenceClassifier.factory(num_classes=2, vocab_size=len(vocab),
                                       hidden_size=args.hidden, outputs=("loss", "logits"))
    graphs = GraphCache(build, ctx=mx.cpu(), memory=args.memory, keys=loader.plan.keys)
    graphs.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 0.005})

    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        for batch in loader:
            rows = batch.num_real  # fill rows have weight 0: they add nothing to the loss
            with autograd.record():
                loss, _ = graphs(batch)
                mean = loss.sum() / rows
            mean.backward()
            trainer.step(1)
            total_loss += float(mean.asscalar()) * rows
            seen += rows
        seconds = time.perf_counter() - started
        print(f"epoch {epoch + 1}: train loss {total_loss / seen:.4f}, {seen / seconds:,.0f} "
              f"sentences/s, valid accuracy {100 * accuracy(graphs, valid_loader):.1f}%, "
              f"{graphs.compiled} graphs")


if __name__ == "__main__":
    main()
