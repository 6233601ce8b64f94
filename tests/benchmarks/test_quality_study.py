"""benchmarks.quality: the generated tagging task, one run per arm, and the summary's arithmetic
(time to the padded arm's final quality, the waste bound, the targets)."""

import numpy as np
import pytest

from benchmarks.quality import markdown, merge, run_one, summarise, toy_tags


def test_toy_tags_add_the_first_token_modulo_the_classes():
    data = toy_tags(200, vocab=5, classes=3, max_length=20, seed=2)
    for tokens, tags in data:
        assert tokens.dtype == np.int32 and tags.dtype == np.int32 and 2 <= len(tokens) <= 20
        assert (tokens >= 1).all() and (tokens < 5).all()
        assert tags.tolist() == [(t + tokens[0]) % 3 for t in tokens.tolist()]
    assert len({len(t) for t, _ in data}) > 5  # a spread of lengths to bucket


@pytest.mark.parametrize("arm", ["padded", "bucketed", "tokens", "constant"])
def test_one_tiny_tagging_run_per_arm(arm):
    r = run_one("tag", arm, seed=0, epochs=1, tiny=True)
    assert len(r["plan"]["keys"]) == (1 if arm == "padded" else len(r["plan"]["keys"]))
    (e,) = r["epochs"]
    assert e["steps"] == r["plan"]["steps_per_epoch"] and e["seconds"] > 0
    assert e["cpu_seconds"] > 0 and 0 <= e["accuracy"] <= 1
    if arm == "tokens":  # a token budget: rows differ by bucket length
        assert len(set(r["plan"]["batch_sizes"])) > 1 or len(r["plan"]["keys"]) == 1


def test_the_bucketed_batches_padded_to_the_longest_key_train_the_bucketed_model():
    """The control of the pairs gap: only the padding differs from the bucketed arm, and
    padding changes no value, so the training losses agree (the gap is the batch mix)."""
    bucketed = run_one("tag", "bucketed", seed=0, epochs=1, tiny=True)
    control = run_one("tag", "bucket-batches-padded", seed=0, epochs=1, tiny=True)
    keys = bucketed["plan"]["keys"]
    assert control["plan"]["keys"] == keys and len(keys) > 1
    assert sorted(bucketed["graph_keys"]) == sorted(keys)
    assert control["graph_keys"] == [max(keys)]  # every batch padded to the longest
    assert control["epochs"][0]["train_loss"] == pytest.approx(
        bucketed["epochs"][0]["train_loss"], rel=1e-5)
    assert control["epochs"][0]["accuracy"] == pytest.approx(
        bucketed["epochs"][0]["accuracy"], abs=1e-3)


def test_the_mixed_arm_updates_once_per_group_of_batches():
    r = run_one("tag", "mixed", seed=0, epochs=1, tiny=True)
    (e,) = r["epochs"]
    assert r["arm_settings"]["accumulate"] == 4 and set(r["plan"]["batch_sizes"]) == {8}
    assert e["steps"] == r["plan"]["steps_per_epoch"] and 0 <= e["accuracy"] <= 1


def _run(arm, seed, qualities, seconds, waste):
    return {"task": "pairs", "arm": arm, "seed": seed, "plan": {"keys": [1], "waste": waste},
            "compile_seconds": 0.0,
            "epochs": [{"exact_match": q, "seconds": s, "cpu_seconds": s, "steps": 10,
                        "load": 1.0} for q, s in zip(qualities, seconds)]}


def test_summary_times_to_the_padded_final_quality_and_the_waste_bound(tmp_path):
    runs = [_run("padded", 0, [0.2, 0.6], [10, 10], 0.75),
            _run("padded", 1, [0.4, 0.8], [10, 10], 0.75),
            _run("bucketed", 0, [0.5, 0.7], [3, 3], 0.25),
            _run("bucketed", 1, [0.7, 0.8], [3, 3], 0.25)]
    r = summarise({"config": {"tasks": ["pairs"], "arms": ["padded", "bucketed"],
                              "seeds": [0, 1], "epochs": 2, "jobs": 1, "tiny": False},
                   "runs": runs})
    arms = r["summary"]["pairs"]["arms"]
    assert arms["padded"]["epochs"][-1]["quality"]["mean"] == pytest.approx(0.7)
    # Bucketed's mean 0.6 after epoch 1 misses 0.7; 0.75 after epoch 2 reaches it, at 6 s.
    hit = arms["bucketed"]["to_padded_final"]
    assert hit["epoch"] == 2 and hit["cpu_seconds"] == 6 and hit["cpu_ratio"] == pytest.approx(0.3)
    # Padded 20 s x (1 - 0.75) / (1 - 0.25) = 6.67 s.
    assert arms["bucketed"]["waste_bound"]["cpu_seconds"] == pytest.approx(20 / 3)
    t = r["summary"]["pairs"]["targets"]["bucketed"]
    assert t["per_epoch"]["met"] and t["time"]["met_0.4x"] and t["time"]["met_1.15x_bound"]
    table = markdown(r)
    assert "| bucketed | 2 | 1 | 25.0% | 0.600 (0.500-0.700) | 0.750 (0.700-0.800) |" in table
    # A longer run of the default plan is compared on time only: its schedule differs.
    longer = [_run("bucketed-6", s, [0.1, 0.3, 0.5, 0.6, 0.7, 0.8], [3] * 6, 0.25)
              for s in (0, 1)]
    r6 = summarise({"config": {"tasks": ["pairs"], "arms": ["padded", "bucketed-6"],
                               "seeds": [0, 1], "epochs": None, "jobs": 1, "tiny": False},
                    "runs": runs[:2] + longer})
    t6 = r6["summary"]["pairs"]["targets"]["bucketed-6"]
    assert t6["per_epoch"] is None and t6["time"]["cpu_ratio"] == pytest.approx(15 / 20)
    assert "bucketed-6: time 0.75x padded CPU" in markdown(r6)
    # Two files of separate invocations merge into one result.
    import json

    for name, part in (("a", runs[:2]), ("b", runs[2:])):
        (tmp_path / f"{name}.json").write_text(json.dumps(
            {"config": {"tasks": ["pairs"], "arms": [part[0]["arm"]], "seeds": [0, 1],
                        "jobs": 2}, "runs": part, "machine": {"command": name}}))
    m = merge([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert m["config"]["arms"] == ["padded", "bucketed"] and len(m["runs"]) == 4
    assert summarise(m)["summary"]["pairs"]["arms"]["bucketed"]["to_padded_final"] == hit


def test_the_study_runs_as_make_bench_runs_it(tmp_path):
    """Registered in benchmarks/studies.py: its smoke size runs in fresh processes (one run
    per task, arm and seed) and renders a section with both tasks and the targets."""
    from benchmarks import studies

    got = studies.run("quality", str(tmp_path), timeout=600, tiny=True)
    assert "error" not in got, got
    runs = got["result"]["runs"]
    assert sorted((r["task"], r["arm"]) for r in runs) == [
        ("pairs", "bucketed"), ("pairs", "padded"), ("tag", "bucketed"), ("tag", "padded")]
    assert all("error" not in r and len(r["epochs"]) == 2 for r in runs)
    section = studies.markdown("quality", got)
    for text in ("## Study: quality", "### pairs: exact_match", "### tag: accuracy",
                 "| padded | 1 | 1 |", "Targets: bucketed"):
        assert text in section
