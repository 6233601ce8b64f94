"""The app on a prepared directory: dataset=prepared (or a file dataset naming one),
bucketrnn-plan, a short run, and the bucketrnn-prepare command."""

import os
import sys

import numpy as np
import pytest
from _app import compose_config

from bucketrnn.app.config import validate
from bucketrnn.app.experiment import load_data, make_loaders
from bucketrnn.app.plan import describe
from bucketrnn.app.prepare import main as prepare_main
from bucketrnn.app.run import run

SMALL = ["model.hidden_size=8", "model.num_layers=1", "bucketing.batch_size=16",
         "bucketing.num_buckets=3", "trainer.epochs=1", "trainer.progress=false", "plots=false"]


def _compose(*overrides):
    return compose_config(*SMALL, *overrides)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    tmp = tmp_path_factory.mktemp("corpus")
    path = tmp / "corpus.txt"
    lines = [" ".join(rng.choice(words, size=n)) for n in rng.integers(2, 30, size=400)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp / "corpus.prepared"
    assert prepare_main([str(path), str(out), "--quiet", "--chunk-mb", "0.002"]) == 0
    labelled = tmp / "labelled.txt"
    labelled.write_text("".join(f"{'pos' if i % 3 else 'neg'} {ln}\n"
                                for i, ln in enumerate(lines)), encoding="utf-8")
    assert prepare_main([str(labelled), str(tmp / "labelled.prepared"), "--quiet",
                         "--label", "first_token"]) == 0
    return path, out, tmp / "labelled.prepared"


def test_splits_are_the_in_memory_splits_on_memory_maps(corpus):
    path, out, _ = corpus
    mem = load_data(_compose("dataset=text", f"dataset.path={path}").dataset)
    prep = load_data(_compose("dataset=prepared", f"dataset.path={out}").dataset)
    for a, b in ((mem.train, prep.train), (mem.valid, prep.valid), (mem.test, prep.test)):
        assert b.line_numbers.tolist() == a.line_numbers.tolist()
        assert b.lengths().tolist() == a.lengths().tolist()
    assert "prepared from" in prep.description
    # The same plan: bucketrnn-plan on the prepared directory prints what it prints on the file.
    plan_mem = describe(_compose("dataset=text", f"dataset.path={path}")).splitlines()
    plan_prep = describe(_compose("dataset=prepared", f"dataset.path={out}")).splitlines()
    assert plan_prep[1:] == plan_mem[1:] and "prepared from" in plan_prep[0]
    # A text dataset whose path is a prepared directory reads it too.
    again = load_data(_compose("dataset=text", f"dataset.path={out}").dataset)
    assert again.train.line_numbers.tolist() == prep.train.line_numbers.tolist()


def test_a_short_run_trains_on_it_with_loader_workers(corpus, tmp_path):
    _, out, _ = corpus
    summary = run(_compose("dataset=prepared", f"dataset.path={out}", "trainer.max_steps=3",
                           "bucketing.num_workers=1"), str(tmp_path / "run"),
                  stream=sys.stdout)
    assert summary["steps"] == 3 and "prepared from" in summary["dataset"]
    assert summary["train_sequences"] == 320  # 400 sequences less 10% valid, 10% test
    assert os.path.isfile(tmp_path / "run" / "vocab.json")


def test_a_labelled_corpus_trains_a_classifier(corpus):
    _, _, labelled = corpus
    cfg = _compose("dataset=prepared", f"dataset.path={labelled}", "model=classifier",
                   "dataset.label=first_token")
    validate(cfg)
    data = load_data(cfg.dataset)
    assert data.classes == ["neg", "pos"] and data.num_classes == 2
    train, _, _ = make_loaders(data, cfg.bucketing)
    batch = next(iter(train))
    assert batch.label.shape[0] == batch.data.shape[0]


@pytest.mark.parametrize("overrides, match", [
    (["dataset.label=first_token", "model=classifier"],
     r"dataset.label must say what dataset.path=.* holds \(label=None"),
    (["dataset.tokens=char"], r"dataset.tokens must say .*set dataset.tokens=whitespace"),
    (["dataset.max_length=5"], "dataset.max_length must be null for a prepared"),
    (["model=tagger"], "must be prepared or text"),
])
def test_what_the_directory_fixed_is_checked(corpus, overrides, match):
    _, out, _ = corpus
    name = "dataset=tagged" if "model=tagger" in overrides else "dataset=prepared"
    with pytest.raises(ValueError, match=match):
        validate(_compose(name, f"dataset.path={out}", *overrides))


def test_a_missing_or_unprepared_directory_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"dataset.path=.*nowhere.*not found"):
        validate(_compose("dataset=prepared", f"dataset.path={tmp_path / 'nowhere'}"))
    with pytest.raises(ValueError, match="has no manifest.json"):
        validate(_compose("dataset=prepared", f"dataset.path={tmp_path}"))


def test_a_changed_source_is_refused_by_the_app(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"a b c{i % 5}\n" for i in range(50)))
    out = tmp_path / "c.prepared"
    assert prepare_main([str(path), str(out), "--quiet"]) == 0
    with open(path, "a") as f:
        f.write("more\n")
    with pytest.raises(ValueError, match=r"changed since .*bucketrnn-prepare .* --force"):
        load_data(_compose("dataset=prepared", f"dataset.path={out}").dataset)


def test_the_command_reports_and_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\nbad \xff\n")
    assert prepare_main([str(bad), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not valid UTF-8: line 2, byte offset 9" in err
    good = tmp_path / "good.txt"
    good.write_text("a b\nc\n")
    assert prepare_main([str(good), str(tmp_path / "out"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 sequences, 7 tokens, vocabulary 5" in out
    assert "bucketrnn dataset=prepared dataset.path=" in out


def test_a_large_text_file_gets_a_note_saying_how_to_prepare_it(corpus, monkeypatch, capsys):
    import bucketrnn.app.experiment as experiment

    path, _, _ = corpus
    load_data(_compose("dataset=text", f"dataset.path={path}").dataset)
    assert "bucketrnn-prepare" not in capsys.readouterr().err
    monkeypatch.setattr(experiment, "PREPARE_HINT_BYTES", 1000)
    load_data(_compose("dataset=text", f"dataset.path={path}").dataset)
    assert f"bucketrnn-prepare {path} {path}.prepared" in capsys.readouterr().err
