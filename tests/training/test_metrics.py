"""metrics: tallies and the metrics.jsonl log (strict JSON, fsync offsets, cut back on resume)."""

import json

import pytest

from bucketrnn.errors import CheckpointError
from bucketrnn.training.metrics import MetricsLog, tally


def test_a_tally_has_only_its_fields():
    assert tally(loss=1.5)["loss"] == 1.5 and tally()["count"] == 0
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
