"""A sequence tagger with its own training loop: BucketLoader(task="tag") + SequenceTagger.

Reads a tagged text file (one ``token/TAG token/TAG ...`` sentence a line) with
``bucketrnn.data.datasets.labelled_text_file`` (seeded train/valid split, class map), trains a
bidirectional LSTM tagger on bucketed batches (one graph per bucket, ``GraphCache``) and reports
the token accuracy over valid tokens (``bucketrnn.training.metrics.token_counts``).

Without ``--file`` it writes a tagged file from Penn Treebank sentences (the ``treebank``
package, no network), tagged by rules that need both directions of a sentence: ``NUM`` for the
number token ``N``, ``PRE`` for a word just before a number, ``REP`` for a word already seen in
the sentence, ``O`` otherwise. The majority tag is printed as the baseline to beat.

    python examples/tag_sentences.py                       # 6000 sentences, 2 epochs
    python examples/tag_sentences.py --limit 300 --epochs 1 --hidden 16   # seconds
    python examples/tag_sentences.py --file my_tagged.txt  # your own token/TAG file
    python examples/tag_sentences.py --write ptb_tagged.txt   # only write the PTB file
"""

import argparse
import os
import tempfile
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from bucketrnn.data.datasets import FlatSequences, Vocabulary, labelled_text_file
from bucketrnn.data.loader import BucketLoader, evaluation_loader
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.models import SequenceTagger, loss_normalizer, tag_batch
from bucketrnn.training.metrics import token_counts


def rule_tags(words):
    """NUM / PRE / REP / O for one sentence (see the module docstring)."""
    seen, tags = set(), []
    for i, w in enumerate(words):
        if w == "N":
            tags.append("NUM")
        elif i + 1 < len(words) and words[i + 1] == "N":
            tags.append("PRE")
        elif w in seen:
            tags.append("REP")
        else:
            tags.append("O")
        seen.add(w)
    return tags


def write_ptb_tagged(path, limit):
    import treebank

    lines = [ln.split() for ln in treebank.penn["train"].split("\n") if ln.strip()][:limit]
    with open(path, "w", encoding="utf-8") as f:
        for words in lines:
            f.write(" ".join(f"{w}/{t}" for w, t in zip(words, rule_tags(words))) + "\n")


def encode(text, vocab, classes):
    """Token ids and tag ids of a LabelledText, as a FlatSequences with tags."""
    return FlatSequences.from_sequences([vocab.encode(s) for s in text.sentences],
                                        tags=text.label_ids(classes))


def token_accuracy(graphs, loader):
    correct = total = 0
    loader.set_epoch(0)
    for batch in loader:
        _, logits = graphs(batch)  # no autograd.record(): inference
        c, n = token_counts(logits, batch.label, batch.valid_length, batch.weight)
        correct, total = correct + c, total + n
    return correct / total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", help="a tagged file (default: rule-tagged PTB sentences)")
    p.add_argument("--limit", type=int, default=6000, help="PTB sentences written (no --file)")
    p.add_argument("--write", metavar="PATH", help="write the rule-tagged PTB file and exit")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--buckets", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    if args.write:
        write_ptb_tagged(args.write, args.limit)
        print(f"wrote {args.limit} tagged sentences to {args.write}")
        return
    path = args.file
    if path is None:
        path = os.path.join(tempfile.mkdtemp(), "ptb_tagged.txt")
        write_ptb_tagged(path, args.limit)
    splits = labelled_text_file(path, "tags", valid_fraction=0.1, seed=0)
    classes = splits.classes
    vocab = Vocabulary.build(splits.train.sentences)
    train, valid = encode(splits.train, vocab, classes), encode(splits.valid, vocab, classes)
    counts = np.bincount(valid.tags, minlength=len(classes))
    print(f"{len(train)} training sentences, tags {classes}; majority baseline "
          f"{100 * counts.max() / counts.sum():.1f}% of validation tokens "
          f"({classes[int(counts.argmax())]})")

    loader = BucketLoader(train, batch_size=args.batch_size, num_buckets=args.buckets, seed=0,
                          task="tag", vocab_size=len(vocab), num_classes=len(classes))
    valid_loader = evaluation_loader(loader, valid, batch_size=args.batch_size)
    print(loader.plan)

    mx.random.seed(0)
    build = SequenceTagger.factory(num_classes=len(classes), vocab_size=len(vocab),
                                   hidden_size=args.hidden, bidirectional=True,
                                   outputs=("loss", "logits"))
    graphs = GraphCache(build, ctx=mx.cpu(), keys=loader.plan.keys)
    graphs.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 0.01})

    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        started, seen, total_loss = time.perf_counter(), 0, 0.0
        for batch in loader:
            tokens = loss_normalizer(batch)  # real tokens: fill rows and padding add nothing
            with autograd.record():
                loss, _ = graphs(batch)
                mean = loss.sum() / tokens
            mean.backward()
            trainer.step(1)
            total_loss += float(mean.asscalar()) * tokens
            seen += tokens
        seconds = time.perf_counter() - started
        print(f"epoch {epoch + 1}: train loss {total_loss / seen:.4f} per token, "
              f"{seen / seconds:,.0f} tokens/s, valid token accuracy "
              f"{100 * token_accuracy(graphs, valid_loader):.1f}%, {graphs.compiled} graphs")

    batch = next(iter(valid_loader))
    first = int(batch.indices[0])
    words = splits.valid.sentences[first]
    predicted = [classes[t] for t in tag_batch(graphs, batch)[0]]
    print("tagged: " + " ".join(f"{w}/{t}" for w, t in zip(words, predicted)))


if __name__ == "__main__":
    main()
