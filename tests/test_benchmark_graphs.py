"""Smoke test: benchmarks/graphs.py runs every configuration at a tiny size.

The figures in docs/concepts.md come from the full run; here the report's parts must exist and
the unrolled and fused models must compute the same losses on the same batches.
"""

from benchmarks import graphs


def test_graphs_benchmark_tiny(capsys):
    result = graphs.main(["--steps", "2", "--bucket-counts", "3", "--hidden", "8", "--vocab",
                          "60", "--layers", "1", "--batch-size", "4"])
    policies = result["policies"][3]
    assert policies["single"]["graphs"] == 1
    for name in ("shared", "static", "dynamic", "tiny_shared", "fused_shared"):
        assert policies[name]["graphs"] == len(policies[name]["keys"]) == 3, name
    for vocab, cells in result["cells"].items():
        unrolled, fused = cells["unrolled"], cells["fused"]
        assert unrolled["tokens_per_s"] > 0 and fused["tokens_per_s"] > 0
        # Same initial values, same batches: fused layers and unrolled cells compute the same loss.
        assert unrolled["first_losses"] == fused["first_losses"], vocab
        assert abs(unrolled["mean_loss"] - fused["mean_loss"]) < 1e-3, vocab
    out = capsys.readouterr().out
    for line in ("shared peak RSS =", "graph structure:", "fused cells: shared =",
                 "fused = "):
        assert line in out
