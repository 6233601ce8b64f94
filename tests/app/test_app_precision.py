"""``trainer.precision`` in the app: bf16 runs, is refused where it cannot, resumes either way."""

import json
import os

import numpy as np
import pytest
from _app import compose_config
from hydra import compose, initialize_config_dir

from bucketrnn.app.config import CONF_DIR, Precision
from bucketrnn.app.run import run
from bucketrnn.graphs import precision
from bucketrnn.training import checkpoint as ckpt

TINY = ["dataset.limit=60", "dataset.valid_limit=20", "dataset.test_limit=20",
        "model.hidden_size=12", "model.num_layers=1", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.epochs=2", "trainer.checkpoint_every=3",
        "trainer.log_every=2", "trainer.progress=false", "plots=false"]
needs_bf16 = pytest.mark.skipif(not precision.cpu_has_bf16(), reason="CPU lacks AVX512_BF16")


def _compose(*overrides):
    return compose_config(*TINY, *overrides)


def test_the_config_choices_are_the_library_choices_and_fp32_is_the_default():
    assert {p.value for p in Precision} == set(precision.PRECISIONS)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        assert compose(config_name="config").trainer.precision == Precision.fp32


@pytest.mark.parametrize("overrides, flag, match", [
    (["trainer.precision=bf16"], False,
     r"trainer.precision='bf16' needs a CPU with AVX512_BF16 instructions"),
    (["trainer.precision=bf16", "memory=static"], True,
     r"trainer.precision needs memory.policy=shared .*got memory.policy=static, got "
     r"trainer.precision='bf16'"),
])
def test_bf16_is_refused_before_anything_is_written(tmp_path, monkeypatch, overrides, flag,
                                                    match):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: flag)
    with pytest.raises(ValueError, match=match):
        run(_compose(*overrides), str(tmp_path))
    assert not os.listdir(tmp_path)


@needs_bf16
def test_a_bf16_run_tracks_fp32_and_a_run_resumes_in_the_other_precision(tmp_path):
    fp32 = run(_compose(), str(tmp_path / "fp32"))
    bf16 = run(_compose("trainer.precision=bf16"), str(tmp_path / "bf16"))
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert "precision      bf16" in (tmp_path / "bf16" / "bucketrnn.log").read_text()
    assert bf16["valid"]["perplexity"] == pytest.approx(fp32["valid"]["perplexity"], rel=0.02)
    assert bf16["valid"]["perplexity"] != fp32["valid"]["perplexity"]
    params = ckpt.load(str(tmp_path / "bf16" / "checkpoint.npz")).params
    assert {np.asarray(v).dtype for v in params.values()} == {np.dtype(np.float32)}
    # Started in fp32, continued in bf16: the checkpoint is the same float32 either way.
    cut = tmp_path / "cut"
    run(_compose("trainer.max_steps=3"), str(cut), overrides=TINY + ["trainer.max_steps=3"])
    more = ["trainer.max_steps=6", "trainer.precision=bf16", f"resume={cut}"]
    summary = run(_compose(*more), str(tmp_path / "elsewhere"), overrides=more)
    assert summary["steps"] == 6 and summary["precision"] == "bf16" and summary["resumed"]
    assert json.loads((cut / "config.json").read_text())["trainer"]["precision"] == "fp32"
