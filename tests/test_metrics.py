"""metrics: tallies and the metrics.jsonl log (strict JSON, fsync offsets, cut back on resume)."""

import json
import math

import pytest

from bucketrnn.errors import CheckpointError
from bucketrnn.training.metrics import MetricsLog, figures, tally


def test_figures_of_a_tally():
    assert figures("lm", tally(loss=6.0, count=3)) == {"loss": 2.0,
                                                       "perplexity": pytest.approx(math.e ** 2)}
    assert figures("classify", tally(loss=1.0, count=2, correct=3, rows=4)) == {
        "loss": 0.5, "accuracy": 0.75}
    assert math.isnan(figures("lm", tally(skipped=2))["loss"])  # every step skipped
    with pytest.raises(KeyError, match="not a tally field"):
        tally(losss=1.0)


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
