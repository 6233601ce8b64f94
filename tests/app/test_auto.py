"""The app's automatic plan, bucketing.num_buckets=auto: probe, plan, fix the plan for resume."""

import json
import sys

import numpy as np
import pytest
from _app import compose_config
from hydra import compose, initialize_config_dir

from bucketrnn.app import auto
from bucketrnn.app.config import CONF_DIR, validate
from bucketrnn.app.run import run
from bucketrnn.autoplan import costmodel
from bucketrnn.training import checkpoint as ckpt

TINY = ["bucketing.num_buckets=auto", "dataset.limit=60", "dataset.valid_limit=20",
        "dataset.test_limit=20",
        "model.hidden_size=12", "model.num_layers=1", "bucketing.batch_size=8",
        "trainer.epochs=2", "trainer.checkpoint_every=3", "trainer.log_every=2",
        "trainer.progress=false", "trainer.lr=0.01", "plots=false"]


@pytest.fixture(autouse=True)
def _tolerant_fit(monkeypatch):
    # A tiny model's steps take milliseconds, which other jobs on a shared machine can bend
    # past the 25% fit limit: these tests are about the app's flow, and the limit has tests of
    # its own (tests/autoplan/test_costmodel.py), so here any fit is taken.
    monkeypatch.setattr(costmodel, "MAX_FIT_ERROR", 1e9)


def _compose(*overrides):
    return compose_config(*TINY, *overrides)


def test_auto_composes_and_is_not_the_default():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config")
    assert cfg.bucketing.num_buckets == 8 and cfg.bucketing.auto_boundaries is None
    cfg = _compose()
    assert cfg.bucketing.num_buckets == "auto" and cfg.bucketing.auto_boundaries is None
    validate(cfg)
    assert _compose("bucketing.num_buckets=5").bucketing.num_buckets == 5


def test_tiny_auto_run_trains_and_says_why(tmp_path, capsys):
    summary = run(_compose(), str(tmp_path), stream=sys.stdout)
    assert summary["valid"]["perplexity"] > 1 and summary["steps"] > 0
    chosen = summary["auto_plan"]
    assert chosen["chosen"] and chosen["num_buckets"] == len(summary["plan"]["keys"])
    assert 0 <= chosen["compile_share"] < 1 and chosen["predicted_tokens_per_s"] > 0
    assert chosen["cost_model"]["probe_seconds"] > 0 and 0 < chosen["probe_share"] < 1
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["bucketing"]["num_buckets"] == "auto"
    assert saved["bucketing"]["auto_boundaries"] == summary["plan"]["boundaries"]
    assert json.loads((tmp_path / "summary.json").read_text())["auto_plan"]["chosen"]
    out = capsys.readouterr().out
    assert "BucketPlan(strategy='auto'" in out and "<- chosen" in out
    assert f"auto plan: {chosen['num_buckets']} buckets, predicted" in out
    assert "runner-up K=" in out and "probe took" in out and "auto plan      K=" in out


def test_resume_reuses_the_first_sessions_plan_without_probing(tmp_path, monkeypatch):
    first = TINY + ["trainer.max_steps=4"]
    run(_compose("trainer.max_steps=4"), str(tmp_path), overrides=first)
    bounds = json.loads((tmp_path / "config.json").read_text())["bucketing"]["auto_boundaries"]

    def no_probe(*args, **kwargs):
        raise AssertionError("a resumed auto run probed again")

    monkeypatch.setattr(auto, "probe_run", no_probe)
    again = ["trainer.max_steps=6", f"resume={tmp_path}"]
    summary = run(_compose(*again), str(tmp_path / "elsewhere"), overrides=TINY + again)
    assert summary["resumed"] and summary["steps"] == 6
    assert summary["plan"]["boundaries"] == bounds
    assert summary["auto_plan"] == {"chosen": False, "num_buckets": len(bounds),
                                    "boundaries": bounds,
                                    "why": "fixed by the run's first session"}
    # run() without the command line's overrides: the composed cfg lacks the boundaries,
    # which come back from the run's config.json (the fingerprint would refuse otherwise).
    summary = run(_compose("trainer.max_steps=8", f"resume={tmp_path}"), str(tmp_path / "x"))
    assert summary["steps"] == 8 and summary["plan"]["boundaries"] == bounds


def test_the_probe_does_not_change_the_training(tmp_path):
    """An auto run trains exactly as the same plan given as fixed boundaries: the probe's
    parameters, updates and random draws are its own."""
    a = run(_compose("trainer.max_steps=5"), str(tmp_path / "auto"))
    bounds = a["plan"]["boundaries"]
    run(_compose("trainer.max_steps=5", "bucketing.strategy=fixed",
                 f"bucketing.boundaries=[{','.join(map(str, bounds))}]"),
        str(tmp_path / "fixed"))
    pa = ckpt.load(str(tmp_path / "auto" / "checkpoint.npz")).params
    pb = ckpt.load(str(tmp_path / "fixed" / "checkpoint.npz")).params
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


def test_a_probe_without_a_usable_fit_falls_back_and_says_so(tmp_path, monkeypatch, capsys):
    def noisy(*args, **kwargs):
        raise costmodel.CostModelError("the step times do not fit (test)")

    monkeypatch.setattr(costmodel, "probe", noisy)
    summary = run(_compose("trainer.max_steps=2"), str(tmp_path), stream=sys.stdout)
    assert summary["auto_plan"]["why"] == "fallback"
    assert summary["plan"]["strategy"] == "optimal"
    assert len(summary["plan"]["keys"]) <= auto.FALLBACK_BUCKETS
    out = capsys.readouterr().out
    assert "the probe's timings gave no usable cost model, so 8 buckets are used" in out
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["bucketing"]["auto_boundaries"] == summary["plan"]["boundaries"]


@pytest.mark.parametrize("overrides, match", [
    (["bucketing.num_buckets=many"], r"bucketing\.num_buckets must be an integer >= 1 or auto, "
                                     r"got bucketing\.num_buckets='many'"),
    (["bucketing.num_buckets=0"], r"bucketing\.num_buckets must be >= 1"),
    (["bucketing.strategy=quantile"], r"bucketing\.strategy needs an integer "
                                      r"bucketing\.num_buckets"),
    (["bucketing.num_buckets=3", "bucketing.auto_boundaries=[5,9]"],
     r"bucketing\.auto_boundaries is set by bucketing\.num_buckets=auto"),
    (["bucketing.auto_boundaries=[9,5]"], r"bucketing\.auto_boundaries must be strictly "
                                          r"increasing"),
    # a crafted config.json of a resumed run: a nested value raised a bare TypeError
    (["bucketing.auto_boundaries=[[5],9]"], r"bucketing\.auto_boundaries must be strictly "
                                            r"increasing integers >= 1, got .*\[\[5\], 9\]"),
])
def test_bad_auto_settings_name_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        validate(_compose(*overrides))


def test_plan_command_probes_and_explains_the_auto_plan():
    from bucketrnn.app.plan import describe

    text = describe(_compose())
    assert "BucketPlan(strategy='auto'" in text and "<- chosen" in text
    assert "probe took" in text and "runner-up K=" in text


def test_a_classifier_plans_auto_too(tmp_path):
    lines = [("pos " if i % 2 else "neg ") + " ".join("abcdefgh"[: 2 + i % 6]) for i in range(60)]
    corpus = tmp_path / "labelled.txt"
    corpus.write_text("\n".join(lines) + "\n")
    summary = run(_compose("dataset=text", f"dataset.path={corpus}", "model=classifier",
                           "dataset.label=first_token", "model.hidden_size=8"),
                  str(tmp_path / "run"))
    assert summary["auto_plan"]["chosen"] and 0.0 <= summary["valid"]["accuracy"] <= 1.0


@pytest.mark.parametrize("reason", ["probe", "one length"])
def test_the_fallback_never_asks_for_more_buckets_than_distinct_lengths(tmp_path, monkeypatch,
                                                                         capsys, reason):
    # 6 distinct lengths (lm: 2..7 steps), or 1: the fallback's 8 buckets were refused by the
    # planner's own rule ("8 is more than the 6 distinct lengths") on a valid dataset.
    words = "abcdefgh"
    sizes = range(3, 9) if reason == "probe" else [5]
    lines = [" ".join(words[:n]) for _ in range(10) for n in sizes]
    corpus = tmp_path / "small.txt"
    corpus.write_text("\n".join(lines) + "\n")
    if reason == "probe":
        def noisy(*args, **kwargs):
            raise costmodel.CostModelError("the step times do not fit (test)")

        monkeypatch.setattr(costmodel, "probe", noisy)
    summary = run(_compose("dataset=text", f"dataset.path={corpus}", "trainer.max_steps=2",
                           "dataset.valid_fraction=0", "dataset.test_fraction=0"),
                  str(tmp_path / "run"), stream=sys.stdout)
    distinct = len(sizes)
    assert summary["auto_plan"]["why"] == "fallback"
    # optimal planning takes num_buckets as an upper bound
    assert summary["auto_plan"]["num_buckets"] == len(summary["plan"]["keys"]) <= distinct
    assert auto.fallback_buckets(np.array(list(sizes) * 3)) == min(auto.FALLBACK_BUCKETS,
                                                                  distinct)
    if reason == "probe":
        assert f"so {distinct} buckets are used" in capsys.readouterr().out
