"""Checkpoint files: round trip, strict fingerprint, atomic writes, unreadable files."""

import os

import numpy as np
import pytest

from bucketrnn import StateMismatchError
from bucketrnn import checkpoint as ckpt


def test_round_trip(tmp_path):
    path = str(tmp_path / "c.npz")
    params = {"a_weight": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(1)}
    ckpt.save(path, params, b"\x00opt\xff", {"step": 7, "nested": {"x": [1, 2]}},
              fingerprint={"model.hidden_size": 8})
    got = ckpt.load(path, fingerprint={"model.hidden_size": 8})
    assert got.meta == {"step": 7, "nested": {"x": [1, 2]}}
    assert got.trainer_states == b"\x00opt\xff"
    np.testing.assert_array_equal(got.params["a_weight"], params["a_weight"])
    assert got.params["a_weight"].dtype == np.float32


def test_other_config_is_refused_naming_every_difference(tmp_path):
    path = str(tmp_path / "c.npz")
    ckpt.save(path, {}, b"", {}, fingerprint={"model.hidden_size": 8, "seed": 0, "lr": 0.1})
    with pytest.raises(StateMismatchError, match=r"model\.hidden_size: checkpoint 8, now 16") as e:
        ckpt.load(path, fingerprint={"model.hidden_size": 16, "seed": 0, "lr": 0.2})
    assert "lr: checkpoint 0.1, now 0.2" in str(e.value)
    assert "seed" not in str(e.value)


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "c.npz")
    ckpt.save(path, {"w": np.zeros(3)}, b"", {"step": 1})
    before = open(path, "rb").read()

    def crash(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        ckpt.save(path, {"w": np.ones(3)}, b"", {"step": 2})
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind
    assert ckpt.load(path).meta["step"] == 1


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(StateMismatchError, match="not a readable bucketrnn checkpoint"):
        ckpt.load(str(bad))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ckpt.load(str(tmp_path / "absent.npz"))


def test_params_must_be_a_dict(tmp_path):
    with pytest.raises(TypeError, match="params must be a dict"):
        ckpt.save(str(tmp_path / "c.npz"), [np.zeros(1)], b"", {})
