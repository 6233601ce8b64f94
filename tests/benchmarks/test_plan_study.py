"""Smoke test: benchmarks/plan.py runs end to end at a tiny size (figures: the full run)."""

from benchmarks import plan


def test_plan_benchmark_tiny(tmp_path, capsys):
    result = plan.main(["--tiny", "--json", str(tmp_path / "plan.json")])
    rows = {r["method"]: r for r in result["ptb"]}
    optimal = rows["bucketrnn optimal K=32"]
    assert optimal["sentences_lost"] == 0 and optimal["shapes"] <= 32
    # Exact optimum: never worse than the other strategies at the same K.
    for k in (8, 16, 32):
        optimal = rows[f"bucketrnn optimal K={k}"]["waste_pct"]
        assert optimal <= rows[f"bucketrnn quantile K={k}"]["waste_pct"]
    assert rows["MXNet BucketSentenceIter (default buckets)"]["sentences_lost"] > 0
    assert (tmp_path / "plan.json").exists()
    assert "waste %" in capsys.readouterr().out
