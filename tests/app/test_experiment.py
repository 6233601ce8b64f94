"""The app's text data path: outlier lines, max_length + on_overflow, invalid UTF-8."""

import json
import sys
import time

import numpy as np
import pytest
from _app import compose_config
from hydra import compose, initialize_config_dir

from bucketrnn.app.config import CONF_DIR
from bucketrnn.app.experiment import load_data, make_loaders
from bucketrnn.app.run import run

SMALL = ["dataset=text", "model.hidden_size=8", "model.num_layers=1", "bucketing.batch_size=16",
         "trainer.epochs=1", "trainer.progress=false", "plots=false"]
HUGE_LINE = 157  # 1-based line number of the pathological line


def _compose(*overrides):
    return compose_config(*SMALL, *overrides)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """300 ordinary lines of 3..39 words and, at line 157, one line of 10**6 tokens."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    lines = [" ".join(rng.choice(words, size=n)) for n in rng.integers(3, 40, size=300)]
    lines.insert(HUGE_LINE - 1, " ".join(["tok"] * 10**6))
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rest = max(len(ln.split()) for i, ln in enumerate(lines) if i != HUGE_LINE - 1)
    return path, rest


def test_one_huge_line_fails_fast_naming_file_line_length_and_fix(corpus, tmp_path):
    path, rest = corpus
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        run(_compose(f"dataset.path={path}"), str(tmp_path / "run"))
    assert time.perf_counter() - start < 10
    msg = str(info.value)
    assert f"dataset.path={str(path)!r} line {HUGE_LINE} has 1000000 tokens" in msg
    assert f"rest of the data needs ({rest} at most" in msg
    assert f"dataset.max_length={rest} with dataset.on_overflow=truncate" in msg
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("policy", ["truncate", "drop"])
def test_max_length_cuts_or_drops_the_line_and_counts_it(corpus, policy):
    path, rest = corpus
    cfg = _compose(f"dataset.path={path}", f"dataset.max_length={rest}",
                   f"dataset.on_overflow={policy}", "bucketing.num_buckets=2")
    data = load_data(cfg.dataset, seed=0)
    cut = {"truncate": (0, 1, 10**6 - rest), "drop": (1, 0, 10**6)}[policy]
    names = ("lines_dropped", "lines_truncated", "tokens_cut")
    assert data.overflow == dict(zip(names, cut, strict=True))
    assert f"max_length={rest} ({policy}: {cut[0]} line(s) dropped, {cut[1]} truncated " \
           f"({cut[2]} tokens cut))" in data.description
    train, valid, test = make_loaders(data, cfg.bucketing, seed=0)
    longest = max(loader.plan.keys[-1] for loader in (train, valid, test))
    assert longest <= rest + 1  # the language-model length: words + <eos>


def test_a_run_prints_and_stores_the_overflow_counts(corpus, tmp_path, capsys):
    path, rest = corpus
    summary = run(_compose(f"dataset.path={path}", f"dataset.max_length={rest}",
                           "dataset.on_overflow=truncate", "dataset.limit=40",
                           "dataset.valid_limit=8", "dataset.test_limit=8",
                           "bucketing.num_buckets=2", "trainer.max_steps=2"),
                  str(tmp_path / "run"), stream=sys.stdout)
    counts = {"lines_dropped": 0, "lines_truncated": 1, "tokens_cut": 10**6 - rest}
    assert summary["dataset_overflow"] == counts
    with open(tmp_path / "run" / "summary.json") as f:
        assert json.load(f)["dataset_overflow"] == counts
    out = capsys.readouterr().out
    assert f"(truncate: 0 line(s) dropped, 1 truncated ({10**6 - rest} tokens cut))" in out


def test_a_long_line_is_an_error_by_default(corpus, tmp_path):
    path, rest = corpus
    with pytest.raises(ValueError, match=rf"dataset.path=.*corpus.txt': text file .* line "
                                         rf"{HUGE_LINE} has 1000000 tokens, more than "
                                         rf"max_length={rest}"):
        run(_compose(f"dataset.path={path}", f"dataset.max_length={rest}"), str(tmp_path / "r"))


@pytest.mark.parametrize("key", ["path", "valid_path"])
def test_invalid_utf8_is_a_value_error_naming_the_line_and_byte(tmp_path, key):
    good = tmp_path / "good.txt"
    good.write_text("".join(f"a b c{i % 7}\n" for i in range(30)), encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"one two\nthree \xff four\n")
    files = {"path": good, "valid_path": good, key: bad}
    with pytest.raises(ValueError) as info:  # was TypeError: function takes exactly 5 arguments
        run(_compose(*(f"dataset.{k}={v}" for k, v in files.items())), str(tmp_path / "run"))
    msg = str(info.value)
    assert msg.startswith(f"dataset.{key}={str(bad)!r}: ")
    assert "is not valid UTF-8: line 2, byte offset 14 of the file" in msg
    assert "re-encode the file as UTF-8" in msg


@pytest.mark.parametrize("overrides, match", [
    (["dataset.on_overflow=truncate"], "dataset.on_overflow needs dataset.max_length"),
    (["dataset=ptb", "dataset.max_length=50"],
     "dataset.max_length is only used with dataset=text"),
])
def test_dataset_overflow_keys_are_checked(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        run(_compose(f"dataset.path={tmp_path}/x.txt", *overrides), str(tmp_path / "run"))


def test_an_outlier_in_a_valid_file_names_that_file_and_line(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("".join(f"a b c{i % 9}" + " d" * (i % 13) + "\n" for i in range(60)))
    valid = tmp_path / "valid.txt"
    valid.write_text("a b\n\nc d e\n" + "x " * 20_000 + "\nb c\n")
    with pytest.raises(ValueError, match=rf"dataset.valid_path={str(valid)!r} line 4 has 20000 "
                                         r"tokens, far more than the rest of the data needs "
                                         r"\(15 at most"):
        load_data(_compose(f"dataset.path={train}", f"dataset.valid_path={valid}").dataset)


def test_ptb_sentences_labelled_by_contains():
    # dataset.label on Penn Treebank: does a sentence hold a number (the token N)?
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "model=classifier", "dataset.label=contains:N", "dataset.limit=500",
            "dataset.valid_limit=100"])
    data = load_data(cfg.dataset, seed=0)
    assert data.classes == ["0", "1"] and data.num_classes == 2
    assert (len(data.train), len(data.valid)) == (500, 100)
    number = data.vocab["N"]
    for ds in (data.train, data.valid, data.test):
        for i in range(0, len(ds), 7):
            tokens, label = ds[i]
            assert label == int(number in tokens.tolist())
    assert "label contains:N (2 classes)" in data.description


def test_an_outlier_pair_in_a_valid_file_names_that_file_and_line(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"a b{i % 7}\tx y{i % 5}" + " z" * (i % 9) + "\n" for i in range(60)))
    valid = tmp_path / "valid.tsv"
    valid.write_text("a b\tx y\nc d e\tx\n" + "a " * 20_000 + "\tx\nb c\ty\n")
    with pytest.raises(ValueError, match=rf"dataset.valid_path={str(valid)!r} line 3 has a side "
                                         r"of 20000 tokens, far more than the rest of the data"):
        load_data(_compose("dataset=pairs", f"dataset.path={train}",
                           f"dataset.valid_path={valid}").dataset)
