"""Plan quality and planning cost on Penn Treebank, beside the tools users have today.

    .venv/bin/python -m benchmarks.plan            # full: PTB train + 10 million synthetic lengths
    .venv/bin/python -m benchmarks.plan --tiny     # seconds; what the smoke test runs

Computed-slot waste is ``1 - real tokens / computed slots``, where computed slots count every
(row, time step) a graph computes: time padding plus rows that fill a partial batch.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
import warnings

import numpy as np

from benchmarks.common import write_json
from bucketrnn.data.plan import plan_buckets


def ptb_lengths(limit=None) -> np.ndarray:
    """Lengths of Penn Treebank train sentences counted with <eos> (words + 1)."""
    import treebank

    lines = [ln for ln in treebank.penn["train"].split("\n") if ln.strip()]
    if limit:
        lines = lines[:limit]
    return np.array([len(ln.split()) + 1 for ln in lines], dtype=np.int64)


def row(name, real, computed, shapes, used, total, seconds=None):
    return {
        "method": name,
        "waste_pct": round(100 * (1 - real / computed), 2),
        "shapes": int(shapes),
        "sentences_used": int(used),
        "sentences_lost": int(total - used),
        **({"plan_seconds": round(seconds, 3)} if seconds is not None else {}),
    }


def bucketrnn_rows(lengths, batch_size, ks):
    rows = []
    for strategy in ("optimal", "quantile", "exp"):
        for k in ks:
            k = min(k, len(np.unique(lengths)))
            t = time.perf_counter()
            plan = plan_buckets(lengths, num_buckets=k, strategy=strategy, batch_size=batch_size)
            dt = time.perf_counter() - t
            # last_batch="fill": one shape per bucket, every sentence used.
            rows.append(row(f"bucketrnn {strategy} K={k}", plan.real_tokens, plan.computed_slots,
                            plan.num_buckets, plan.num_examples, len(lengths), dt))
    return rows


def gluonnlp_rows(lengths, batch_size, ks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gluonnlp

    rows = []
    for scheme_name, scheme in (("ExpWidth", gluonnlp.data.ExpWidthBucket()),
                                ("ConstWidth", gluonnlp.data.ConstWidthBucket())):
        for k in ks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sampler = gluonnlp.data.FixedBucketSampler(
                    lengths.tolist(), batch_size=batch_size, num_buckets=k, bucket_scheme=scheme)
            computed, shapes, used = 0, set(), 0
            for batch in sampler:  # batchify.Pad pads each batch to its own longest sentence
                longest = int(lengths[batch].max())
                computed += len(batch) * longest
                shapes.add((len(batch), longest))
                used += len(batch)
            rows.append(row(f"GluonNLP FixedBucketSampler {scheme_name} K={k} + Pad",
                            int(lengths.sum()), computed, len(shapes), used, len(lengths)))
    return rows


def bucket_sentence_iter_row(lengths, batch_size):
    import mxnet as mx

    sentences = [[1] * int(n) for n in lengths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = mx.rnn.BucketSentenceIter(sentences, batch_size, invalid_label=0)
    computed, real, used = 0, 0, 0
    for b, start in it.idx:  # only full batches; the rest of each bucket is never served
        key = it.buckets[b]
        rows_ = it.data[b][start:start + batch_size]
        computed += batch_size * key
        real += int((rows_ != 0).sum())
        used += batch_size
    return row("MXNet BucketSentenceIter (default buckets)", real, computed, len(it.buckets),
               used, len(lengths))


def pad_to_longest_row(lengths, batch_size):
    longest = int(lengths.max())
    n = len(lengths)
    # keras pad_sequences(maxlen=longest): every row padded; the last batch is smaller.
    shapes = 1 + (n % batch_size != 0)
    return row("pad to the longest (keras-mxnet)", int(lengths.sum()), n * longest, shapes, n, n)


def synthetic_scale(n, num_buckets=32, batch_size=64, seed=0):
    """Planning time and peak traced memory for n synthetic lengths (log-normal, 1..1000)."""
    from bucketrnn.data.sampler import BucketBatchSampler

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(3.0, 0.7, size=n).astype(np.int64) + 1, 1, 1000)
    tracemalloc.start()
    t = time.perf_counter()
    plan = plan_buckets(lengths, num_buckets=num_buckets, batch_size=batch_size)
    t_plan = time.perf_counter() - t
    t = time.perf_counter()
    sampler = BucketBatchSampler(lengths, plan, seed=0)
    steps = sum(1 for _ in sampler)
    t_epoch = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"synthetic_lengths": n, "distinct_lengths": int(len(np.unique(lengths))),
            "plan_seconds": round(t_plan, 3), "plan_waste_pct": round(100 * plan.waste, 2),
            "sampler_build_and_epoch_seconds": round(t_epoch, 3), "steps": steps,
            "peak_traced_MB_beyond_input": round(peak / 2**20, 1)}


def distinct_scale(d=10_000, num_buckets=64, n=2_000_000, seed=0):
    """Exact optimal planning time when there are d distinct lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, d + 1, size=n)
    t = time.perf_counter()
    plan = plan_buckets(lengths, num_buckets=num_buckets, batch_size=64)
    return {"distinct_lengths": int(len(np.unique(lengths))), "num_buckets": num_buckets,
            "optimal_plan_seconds": round(time.perf_counter() - t, 2),
            "waste_pct": round(100 * plan.waste, 2)}


def assembly_throughput(limit=None, batch_size=64, repeats=3):
    """Batch assembly speed on PTB (task='lm') against a plain numpy copy of the same bytes.

    ``padder`` times PadToBucket alone (numpy output: the padding work itself); ``loader`` times
    a full BucketLoader epoch with num_workers=0 (sampling, padding, NDArray creation).
    """
    from bucketrnn.data.batchify import PadToBucket, SlotDataset
    from bucketrnn.data.datasets import penn_treebank
    from bucketrnn.data.loader import BucketLoader

    ds, _ = penn_treebank("train", limit=limit)
    loader = BucketLoader(ds, batch_size=batch_size, num_buckets=32, task="lm", seed=0)
    slots_ds = SlotDataset(ds, loader.sampler.bucket_ids)
    pad = PadToBucket(loader.plan.keys, task="lm", output="numpy")
    batches = list(loader.sampler.batches(0, 0))

    def best_of(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    t_pad, slots = best_of(lambda: sum(pad([slots_ds[s] for s in b]).data.size for b in batches))
    t_loader, _ = best_of(lambda: sum(b.data.size for b in loader))
    # The same number of bytes moved by one numpy copy (data and label, int32).
    src = np.resize(ds.tokens.astype(np.int32), 2 * slots)
    dst = np.empty_like(src)
    t_copy, _ = best_of(lambda: np.copyto(dst, src))
    real = loader.plan.real_tokens
    return {
        "batches": len(batches), "real_tokens": int(real), "slots": int(slots),
        "padder_real_tokens_per_s": round(real / t_pad),
        "loader_real_tokens_per_s": round(real / t_loader),
        "numpy_copy_tokens_per_s": round(real / t_copy),
        "padder_over_copy_time": round(t_pad / t_copy, 1),
        "loader_seconds_per_batch": round(t_loader / len(batches), 6),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true",
                    help="a 2,000-sentence slice and small scale tests")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    lengths = ptb_lengths(2000 if args.tiny else None)
    ks = (8, 16, 32)
    print(f"Penn Treebank train: {len(lengths)} sentences (with <eos>), "
          f"{int(lengths.sum())} tokens, "
          f"lengths {int(lengths.min())}..{int(lengths.max())}, batch size {args.batch_size}\n")
    rows = bucketrnn_rows(lengths, args.batch_size, ks)
    rows += gluonnlp_rows(lengths, args.batch_size, ks)
    rows.append(bucket_sentence_iter_row(lengths, args.batch_size))
    rows.append(pad_to_longest_row(lengths, args.batch_size))
    print(f"{'method':<52} {'waste %':>8} {'shapes':>7} {'used':>7} {'lost':>6}")
    for r in rows:
        print(f"{r['method']:<52} {r['waste_pct']:>8.2f} {r['shapes']:>7} "
              f"{r['sentences_used']:>7} {r['sentences_lost']:>6}")

    scale = synthetic_scale(100_000 if args.tiny else 10_000_000)
    print("\nscale:", json.dumps(scale))
    distinct = distinct_scale(d=500 if args.tiny else 10_000, num_buckets=16 if args.tiny else 64,
                              n=50_000 if args.tiny else 2_000_000)
    print("distinct lengths:", json.dumps(distinct))
    assembly = assembly_throughput(2000 if args.tiny else None, args.batch_size,
                                    repeats=1 if args.tiny else 3)
    print("batch assembly:", json.dumps(assembly))
    result = {"ptb": rows, "scale": scale, "distinct": distinct, "assembly": assembly}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
