"""metrics: tallies and the metrics.jsonl log (strict JSON, fsync offsets, cut back on resume)."""

import json
import math

import pytest

from bucketrnn.errors import CheckpointError
from bucketrnn.tasks import LM, get_task
from bucketrnn.training.metrics import DIVERGED_FACTOR, MetricsLog, diverged, tally


def test_a_tally_has_only_its_fields():
    assert tally(loss=1.5)["loss"] == 1.5 and tally()["count"] == 0
    with pytest.raises(KeyError, match="not a tally field"):
        tally(losss=1.0)


def test_perplexity_is_the_exponential_of_the_loss_never_capped():
    assert LM.figures(tally(loss=60.0, count=1))["perplexity"] == pytest.approx(math.exp(60))
    assert get_task("seq2seq").figures(tally(loss=800.0, count=1))["perplexity"] == math.inf
    assert LM.figures(tally(loss=5.6e30, count=1))["perplexity"] == math.inf
    assert math.isnan(LM.figures(tally(loss=math.nan, count=1))["perplexity"])


def test_a_loss_far_beyond_a_uniform_guess_is_divergence():
    uniform = math.log(20)
    assert diverged(uniform * 1.5, 20) is None  # worse than guessing, but not a blow-up
    assert diverged(0.1, 2) is None
    limit = DIVERGED_FACTOR * uniform
    assert diverged(limit, 20) is None
    why = diverged(5.6e30, 20)
    assert why.startswith("loss 5.6e+30 is more than 10 times the loss of a uniform guess among "
                          "20 (ln 20 = 3.00)")
    assert diverged(math.inf, 20).startswith("loss inf is not finite")
    assert diverged(math.nan, 2).startswith("loss nan is not finite")
    with pytest.raises(ValueError, match="outcomes must be an int >= 2, got outcomes=1"):
        diverged(1.0, 1)


def test_the_log_is_strict_json_and_resumes_at_a_line_end(tmp_path):
    log = MetricsLog(str(tmp_path / "run" / "metrics.jsonl"))
    log.open()
    log.write({"kind": "step", "loss": 1.0})
    offset = log.sync()
    log.write({"kind": "step", "loss": float("nan")})  # written after the "checkpoint"
    log.close()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [1.0, None]
    log.open(offset)  # a resume cuts the steps that will run again
    log.write({"kind": "step", "loss": 3.0})
    log.close()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [1.0, 3.0]
    for bad in (offset + 1000, offset - 1):
        with pytest.raises(CheckpointError, match="metrics_offset"):
            log.open(bad)


def test_a_planted_link_is_never_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    log = MetricsLog(str(tmp_path / "metrics.jsonl"))
    for offset in (None, 0):
        with pytest.raises(OSError, match="metrics.jsonl"):
            log.open(offset)
    assert victim.read_text() == "precious\n"
