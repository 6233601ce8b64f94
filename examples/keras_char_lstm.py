"""keras-mxnet's character-level LSTM text generator, padded to one length, then bucketed.

The keras-mxnet documentation trains recurrent layers on variable-length input by padding every
sequence to one ``maxlen`` (``pad_sequences``) and unrolling one graph for it. This example
trains the same model (an LSTM of 128 units over characters, a softmax over the next character,
RMSprop) on Penn Treebank sentences written as characters, twice:

1. as the documentation writes it: every sentence padded to the longest, one unrolled graph;
2. with ``BucketLoader`` + ``GraphCache``: each sentence padded to its bucket only.

Both runs see the same sentences in the same order of epochs and use the same loss (summed over
real characters, so padding adds no loss), and print their speed, loss and a generated sample.

    python examples/keras_char_lstm.py     # 2000 sentences, 2 epochs each way (docs/keras-mxnet.md)
    python examples/keras_char_lstm.py --limit 100 --epochs 1 --hidden 16 --generate 20
"""

import argparse
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from bucketrnn.data.batchify import Batch
from bucketrnn.data.datasets import FlatSequences, Vocabulary, penn_treebank
from bucketrnn.data.loader import BucketLoader
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import LanguageModel, loss_normalizer


def char_corpus(limit):
    """PTB sentences as characters: ``<eos> c1 ... cn <eos>`` ids, and the character vocabulary."""
    words, vocab = penn_treebank("train", limit=limit)
    text = [" ".join(vocab.itos[i] for i in words[k][1:-1]).replace("<unk>", "?")
            for k in range(len(words))]
    chars = Vocabulary.build([list(t) for t in text])
    eos = chars["<eos>"]
    seqs = [np.concatenate([[eos], chars.encode(list(t)), [eos]]) for t in text]
    return FlatSequences.from_sequences(seqs), chars


def padded_batches(ds, batch_size, maxlen, rng):
    """The keras way: every batch padded to ``maxlen``, shuffled once per epoch."""
    order = rng.permutation(len(ds))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        data = np.zeros((batch_size, maxlen), np.int32)
        label = np.zeros((batch_size, maxlen), np.int32)
        length = np.ones(batch_size, np.int32)
        weight = np.zeros(batch_size, np.float32)
        for r, i in enumerate(rows):
            seq = ds[i]
            data[r, :len(seq) - 1], label[r, :len(seq) - 1] = seq[:-1], seq[1:]
            length[r], weight[r] = len(seq) - 1, 1.0
        yield Batch(maxlen, mx.nd.array(data, dtype="int32"),
                    mx.nd.array(length, dtype="int32"), mx.nd.array(label, dtype="int32"),
                    mx.nd.array(weight), np.where(weight > 0, np.arange(batch_size), -1))


def train(graphs, batches_of_epoch, epochs, lr):
    trainer = gluon.Trainer(graphs.collect_params(), "rmsprop", {"learning_rate": lr})
    history = []
    for epoch in range(epochs):
        started, chars, total = time.perf_counter(), 0, 0.0
        for batch in batches_of_epoch(epoch):
            n = loss_normalizer(batch)
            with autograd.record():
                loss = graphs(batch).sum() / n
            loss.backward()
            trainer.step(1)
            total += float(loss.asscalar()) * n
            chars += n
        seconds = time.perf_counter() - started
        history.append((total / chars, chars / seconds, seconds))
        print(f"  epoch {epoch + 1}: loss {total / chars:.3f} per char, {chars / seconds:,.0f} "
              f"chars/s, {seconds:.1f} s, {graphs.compiled} graph(s)")
    return history


def generate(params, chars, hidden, length, seed_text, n, rng, temperature=0.5):
    """Sample ``n`` characters after ``seed_text`` with a graph of ``length`` steps."""
    net = LanguageModel(length, vocab_size=len(chars), hidden_size=hidden, num_layers=1,
                        outputs=("logits",), prefix="languagemodel_", params=params)
    text = list(seed_text)
    for _ in range(n):
        ids = [chars["<eos>"]] + [chars[c] for c in text][-(length - 1):]
        data = np.zeros((1, length), np.int32)
        data[0, :len(ids)] = ids
        logits = net(mx.nd.array(data, dtype="int32"), mx.nd.array([len(ids)], dtype="int32"),
                     mx.nd.array(data, dtype="int32"), mx.nd.ones(1))
        scores = logits[0, len(ids) - 1].asnumpy().astype(np.float64) / temperature
        prob = np.exp(scores - scores.max())
        prob /= prob.sum()
        c = chars.itos[int(rng.choice(len(prob), p=prob))]
        if c == "<eos>":
            break
        text.append(c if len(c) == 1 else "?")
    return "".join(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=2000, help="PTB sentences to train on")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--generate", type=int, default=80, help="characters to sample")
    args = p.parse_args(argv)

    ds, chars = char_corpus(args.limit)
    lengths = ds.lengths() - 1
    maxlen = int(lengths.max())
    print(f"{len(ds)} sentences, {int(lengths.sum()):,} characters, {len(chars)} symbols, "
          f"longest {maxlen}: padding to it wastes {100 * (1 - lengths.mean() / maxlen):.1f}%")
    build = LanguageModel.factory(vocab_size=len(chars), hidden_size=args.hidden, num_layers=1)
    results = {}

    print(f"1) keras-mxnet way: pad_sequences(maxlen={maxlen}), one unrolled graph")
    mx.random.seed(0)
    graphs = GraphCache(build, ctx=mx.cpu(), memory="static", keys=[maxlen])
    graphs.initialize(mx.init.Xavier())
    rng = np.random.default_rng(0)
    results["padded"] = train(graphs, lambda e: padded_batches(ds, args.batch_size, maxlen, rng),
                              args.epochs, args.lr)
    padded_params = graphs.collect_params()

    loader = BucketLoader(ds, batch_size=args.batch_size, num_buckets=args.buckets, seed=0)
    print(f"2) bucketrnn: {loader.plan.num_buckets} buckets {list(loader.plan.keys)}, "
          f"waste {100 * loader.plan.waste:.1f}%, one graph per bucket")
    mx.random.seed(0)
    build = LanguageModel.factory(vocab_size=len(chars), hidden_size=args.hidden, num_layers=1)
    graphs = GraphCache(build, ctx=mx.cpu(), memory="static", keys=loader.plan.keys)
    graphs.initialize(mx.init.Xavier())

    def bucketed(epoch):
        loader.set_epoch(epoch)
        return iter(loader)

    results["bucketed"] = train(graphs, bucketed, args.epochs, args.lr)

    print("\nmethod     final loss/char   chars/s   seconds (all epochs)")
    for name, hist in results.items():
        print(f"{name:<10} {hist[-1][0]:>15.3f} {hist[-1][1]:>9,.0f} "
              f"{sum(h[2] for h in hist):>9.1f}")
    speedup = sum(h[2] for h in results["padded"]) / sum(h[2] for h in results["bucketed"])
    print(f"bucketing is {speedup:.1f}x faster per epoch here")
    if args.generate:
        rng = np.random.default_rng(1)
        for name, params in (("padded", padded_params), ("bucketed", graphs.collect_params())):
            sample = generate(params, chars, args.hidden, 120, "the ", args.generate, rng)
            print(f"sample ({name}): {sample!r}")


if __name__ == "__main__":
    main()
