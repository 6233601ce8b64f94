"""benchmarks/foreach.py: one worker in-process on a tiny model, and the table."""

import numpy as np


def test_foreach_benchmark_worker_runs_one_graph_for_every_bucket(tmp_path):
    from benchmarks import foreach

    tokens, offsets = foreach.heavy_tailed(n=80, vocab_size=30, longest=24)
    lengths = np.diff(offsets)
    assert lengths.max() == 24 and np.median(lengths) < 8  # heavy tail: most short, one long
    path = str(tmp_path / "heavy.npz")
    np.savez(path, tokens=tokens, offsets=offsets)
    spec = {"data": path, "name": "heavy", "buckets": 4, "cell": "foreach", "steps": 2,
            "batch_size": 8, "memory": "dynamic", "vocab_size": 30,
            "model": dict(embed_size=8, hidden_size=8, num_layers=1, tie_weights=True)}
    row = foreach.worker(spec)
    assert row["graphs"] == 1 and row["keys"] == 4 and row["tokens"] > 0
    assert row["tokens_per_cpu_s"] > 0 and row["peak_rss_mb"] > 0
    result = {"config": {"rounds": 1, "steps": 2, "limit": 80, "batch_size": 8,
                         "memory": "dynamic", **spec["model"], "vocab_size": 30,
                         "sequences": {"ptb": 0, "heavy": 80}},
              "load": [0.5, 0.5],
              "summary": [dict(row, spread=[1.0, 2.0], x_unrolled=1.0, longest=24)]}
    table = foreach.markdown(result)
    assert "| heavy-tailed | K=4 | foreach |" in table and "| 1 (4) |" in table
