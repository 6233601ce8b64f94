"""benchmarks/graphs.py: every configuration runs at a tiny size, and its loss comparison can fail.

The figures in docs/concepts.md come from the full run.
"""

from benchmarks import graphs

TINY = ["--steps", "6", "--bucket-counts", "3", "--hidden", "8", "--vocab", "60", "--layers",
        "1", "--batch-size", "4"]


def test_graphs_benchmark_tiny(capsys):
    result = graphs.main(TINY)
    policies = result["policies"][3]
    for name in ("single", "tiny_single", "fused_single"):
        assert policies[name]["graphs"] == 1, name
    for name in ("shared", "static", "dynamic", "tiny_shared", "fused_shared", "fused_dynamic"):
        assert policies[name]["graphs"] == len(policies[name]["keys"]) == 3, name
    assert policies["tiny_shared"]["steps_per_s"] > 0 and "structure_mb" in policies
    assert set(result["cells"]) == {60, 100}
    for cells in result["cells"].values():
        assert cells["unrolled"]["tokens_per_s"] > 0 and cells["fused"]["tokens_per_s"] > 0
    out = capsys.readouterr().out
    for line in ("shared peak RSS =", "graph structure:", "fused layers: shared =",
                 "largest per-step gap", "fused = "):
        assert line in out


def test_fused_and_unrolled_losses_agree_and_the_check_can_tell_models_apart():
    def losses(**override):
        args = graphs.parse_args(TINY + ["--policy", "static", "--buckets", "3"])
        for name, value in override.items():
            setattr(args, name, value)
        return graphs.worker(args)["losses"]

    unrolled, fused = losses(cell="unrolled"), losses(cell="fused")
    other_init = losses(cell="fused", init_seed=1)
    same = max(abs(a - b) for a, b in zip(unrolled, fused))
    different = max(abs(a - b) for a, b in zip(fused, other_init))
    assert same < 1e-5
    # The same comparison tells two different parameter sets apart on these batches.
    assert different > 100 * max(same, 1e-7)
