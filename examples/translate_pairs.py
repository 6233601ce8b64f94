"""Sequence pairs with your own training loop: an attention encoder-decoder on 2-D buckets.

The task is synthetic (bucketrnn.data.pairs.toy_pairs): read letters, write them reversed and
upper-cased with vowels doubled (``"b a" -> "A A B"``), so source and target lengths differ.
Lengths spread from 3 to 40 (most are short): the loader plans ``(src_len, tgt_len)`` buckets,
GraphCache keeps one graph per key, the loss is averaged over real target tokens. After
training, greedy and beam-search decoding reuse compiled graphs (an encoder graph per source
bucket, one decoder step graph) and are scored by exact match and BLEU-4.

    python examples/translate_pairs.py      # 3.7 min on 2 busy cores (load 6), 1 thread
    python examples/translate_pairs.py --pairs 300 --epochs 1 --hidden 16   # seconds
"""

import argparse
import time

import mxnet as mx
from mxnet import autograd, gluon

from bucketrnn.data.datasets import EOS
from bucketrnn.data.loader import BucketLoader
from bucketrnn.data.pairs import encode_pairs, pair_vocabularies, toy_pairs
from bucketrnn.graphs.cache import GraphCache
from bucketrnn.inference.translate import score_pairs, translate
from bucketrnn.models import Seq2Seq, loss_normalizer
from bucketrnn.models.decode import Seq2SeqDecoder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--test-pairs", type=int, default=200)
    parser.add_argument("--max-length", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--buckets", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mx.random.seed(args.seed)

    train_pairs = toy_pairs(args.pairs, "translit", max_length=args.max_length, seed=args.seed)
    test_pairs = toy_pairs(args.test_pairs, "translit", max_length=args.max_length,
                           seed=args.seed + 1)
    src_vocab, tgt_vocab = pair_vocabularies(train_pairs)
    train = encode_pairs(train_pairs, src_vocab, tgt_vocab)
    test = encode_pairs(test_pairs, src_vocab, tgt_vocab)
    loader = BucketLoader(train, batch_size=args.batch_size, num_buckets=args.buckets,
                          shuffle=True, seed=args.seed)
    print(loader.plan)
    eos = tgt_vocab[EOS]
    build = Seq2Seq.factory(src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab),
                            bos_id=eos, hidden_size=args.hidden, embed_size=args.hidden // 2,
                            bidirectional=True, attention="mlp")
    graphs = GraphCache(build, keys=loader.plan.keys)
    graphs.initialize(mx.init.Xavier())
    trainer = gluon.Trainer(graphs.collect_params(), "adam", {"learning_rate": 0.01})
    for epoch in range(args.epochs):
        started, total, tokens = time.perf_counter(), 0.0, 0.0
        for batch in loader:
            n = loss_normalizer(batch)  # real target tokens (fill rows have weight 0)
            with autograd.record():
                loss = graphs(batch).sum()
                mean = loss / n
            mean.backward()
            grads = [p.grad() for p in graphs.collect_params().values() if p.grad_req != "null"]
            gluon.utils.clip_global_norm(grads, 1.0)
            trainer.step(1)
            total += float(loss.asscalar())
            tokens += n
        seconds = time.perf_counter() - started
        print(f"epoch {epoch + 1}: train loss {total / tokens:.3f} per target token, "
              f"{tokens / seconds:,.0f} real target tokens/s, {graphs.compiled} graphs compiled")

    decoder = Seq2SeqDecoder(graphs.block(loader.plan.keys[0]), eos_id=eos)
    for name, beam in (("greedy", 1), (f"beam {args.beam}", args.beam)):
        started = time.perf_counter()
        s = score_pairs(decoder, test, beam_size=beam, batch_size=args.batch_size,
                        num_buckets=args.buckets)
        print(f"{name:<8} exact match {s['exact_match']:.3f}, BLEU {s['bleu']:.1f} (0-100) on "
              f"{s['pairs']} test pairs ({time.perf_counter() - started:.1f} s)")
    print(f"decoding graphs: {len(decoder.encoders)} encoder (one per source bucket) + 1 step")
    sample = " ".join(test_pairs[0][0])
    out = translate(graphs.block(loader.plan.keys[0]), src_vocab, tgt_vocab, [sample],
                    beam_size=args.beam, decoder=decoder)[0]
    print(f"sample: {sample!r} -> {out!r} (reference {' '.join(test_pairs[0][1])!r})")


if __name__ == "__main__":
    main()
