"""The app's tagging path: model=tagger dataset=tagged, its tag map, its errors."""

import json
import sys

import numpy as np
import pytest
from _app import compose_config

from bucketrnn.app.experiment import load_data
from bucketrnn.app.run import run
from bucketrnn.training.runfiles import load_tags

TINY = ["model=tagger", "dataset=tagged", "model.hidden_size=12", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.epochs=2", "trainer.progress=false",
        "trainer.checkpoint_every=0", "plots=false"]
WORDS = {"DT": ["the", "a"], "NN": ["cat", "dog", "1/2"], "VB": ["sat", "ran"]}


def _compose(*overrides):
    return compose_config(*TINY, *overrides)


@pytest.fixture
def tagged(tmp_path):
    """80 sentences of 2..8 items, tags cycling DT NN VB (one token, 1/2, holds a '/')."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(80):
        tags = [("DT", "NN", "VB")[j % 3] for j in range(2 + i % 7)]
        lines.append(" ".join(f"{rng.choice(WORDS[t])}/{t}" for t in tags))
    path = tmp_path / "tagged.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tiny_tagger_run_reports_token_accuracy_and_saves_its_tags(tagged, tmp_path, capsys):
    summary = run(_compose(f"dataset.path={tagged}"), str(tmp_path / "run"), stream=sys.stdout)
    for split in ("valid", "test"):
        assert 0.0 <= summary[split]["accuracy"] <= 1.0 and summary[split]["loss"] > 0
    assert summary["graphs_compiled"] == 3
    assert load_tags(str(tmp_path / "run" / "tags.json")) == ["DT", "NN", "VB"]
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())
    assert "1/2" in vocab and "1/2/NN" not in vocab
    out = capsys.readouterr().out
    assert "3 tags (accuracy is per token)" in out and "valid accuracy" in out
    # The figures are per token: the loss is averaged over real tokens, not sentences.
    records = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(r["loss"] < 5 for r in records if r["kind"] == "step")


def test_the_data_is_aligned_tokens_and_tags(tagged):
    data = load_data(_compose(f"dataset.path={tagged}").dataset, seed=0)
    assert data.classes == ["DT", "NN", "VB"] and data.num_classes == 3
    assert len(data.train) + len(data.valid) + len(data.test) == 80
    lines = tagged.read_text().splitlines()
    for ds in (data.train, data.valid):
        for i in range(len(ds)):
            tokens, tags = ds[i]
            items = lines[int(ds.line_numbers[i]) - 1].split()
            assert [data.vocab.itos[t] for t in tokens] == [x.rpartition("/")[0] for x in items]
            assert [data.classes[t] for t in tags] == [x.rpartition("/")[2] for x in items]


def test_an_item_without_a_tag_names_the_file_line_and_item(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the/DT cat/NN\na/DT dog sat/VB\n")
    with pytest.raises(ValueError, match=rf"dataset.path={str(path)!r}: tagged file "
                                         rf"{str(path)!r} line 2: item 'dog' has no tag"):
        run(_compose(f"dataset.path={path}"), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_missing_file_and_one_tag_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.path=.*missing.txt"):
        run(_compose(f"dataset.path={tmp_path}/missing.txt"), str(tmp_path / "run"))
    one = tmp_path / "one.txt"
    one.write_text("a/X b/X\n" * 20)
    with pytest.raises(ValueError, match=r"has 1 tag \(\['X'\]\): a tagger needs at least 2"):
        run(_compose(f"dataset.path={one}"), str(tmp_path / "run"))


@pytest.mark.parametrize("overrides, match", [
    (["model=lstm_lm"], "model must be tagger exactly when dataset=tagged"),
    (["dataset=text"], "model must be tagger exactly when dataset=tagged"),
    (["dataset.tokens=char"], "dataset.tokens must be whitespace for dataset=tagged"),
    (["dataset.label=first_token"], "dataset.label must be null for dataset=tagged"),
    (["dataset.path=null"], "dataset.path is required for dataset=tagged"),
])
def test_config_combinations_are_named(tagged, tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        run(_compose(f"dataset.path={tagged}", *overrides), str(tmp_path / "run"))


def test_resume_refuses_a_changed_tag_map(tagged, tmp_path):
    work = tmp_path / "run"
    run(_compose(f"dataset.path={tagged}", "trainer.max_steps=2"), str(work))
    (work / "tags.json").write_text('["DT", "VB", "NN"]')
    with pytest.raises(ValueError, match="tags.json' does not match the tags of the data now"):
        run(_compose(f"dataset.path={tagged}", f"resume={work}"), str(tmp_path / "other"))
    (work / "tags.json").write_text('{"DT": 0}')
    with pytest.raises(ValueError, match="is not a tag map written by bucketrnn"):
        load_tags(str(work / "tags.json"))


def test_a_trained_tagger_is_loaded_evaluated_and_tags_files_in_input_order(tagged, tmp_path):
    import io

    import bucketrnn
    from bucketrnn.app import commands
    from bucketrnn.models import tag_sentences

    run_dir = str(tmp_path / "run")
    summary = run(_compose(f"dataset.path={tagged}"), run_dir, stream=io.StringIO())
    trained = bucketrnn.load_run(run_dir)
    assert trained.task == "tag" and trained.classes == ["DT", "NN", "VB"]
    got = trained.evaluate("valid")
    assert got["loss"] == pytest.approx(summary["valid"]["loss"], rel=1e-6)
    assert got["accuracy"] == pytest.approx(summary["valid"]["accuracy"], rel=1e-6)
    # evaluate FILE takes a tagged file; predict FILE plain tokens, one answer per line in order
    # (lines of different lengths go to different buckets), each as the line tagged alone.
    out = io.StringIO()
    assert commands.main(["evaluate", run_dir, str(tagged), "--json"], out=out) == 0
    assert 0.0 <= json.loads(out.getvalue())["accuracy"] <= 1.0
    plain = ["the cat sat the dog ran a", "a dog", "", "the 1/2 ran"]
    (tmp_path / "plain.txt").write_text("\n".join(plain) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert commands.main(["predict", run_dir, str(tmp_path / "plain.txt")], out=out) == 0
    lines = out.getvalue().split("\n")[:len(plain)]
    for line, text in zip(lines, plain):
        alone = tag_sentences(trained.graphs, [text.split()], trained.vocab, trained.classes)[0]
        assert line == " ".join(f"{w}/{t}" for w, t in zip(text.split(), alone))


@pytest.mark.parametrize("bad, why", [
    ('["DT", "N N"]', "empty or holds whitespace"), ('["DT", ""]', "empty or holds whitespace"),
    ('["DT", "NN\\n"]', "empty or holds whitespace"),
    # predict writes tags to the terminal: no escape sequence may get there
    ('["DT", "\\u001b[31mNN"]', "holds an unprintable character"),
    ('["DT", "N\\u202eN"]', "holds an unprintable character")])
def test_a_tag_map_with_blank_or_spaced_tags_is_refused(tmp_path, bad, why):
    # predict prints token/TAG items separated by spaces: such a tag would break its lines.
    path = tmp_path / "tags.json"
    path.write_text(bad)
    with pytest.raises(ValueError, match=why):
        load_tags(str(path))


def test_a_tag_map_of_another_size_is_named_as_tags_json(tagged, tmp_path):
    # The shape error named classes.json, a file a tagger's run does not have.
    import bucketrnn
    from bucketrnn.training.checkpoint import CheckpointError

    work = tmp_path / "run"
    run(_compose(f"dataset.path={tagged}", "trainer.max_steps=1", "trainer.epochs=1"),
        str(work))
    (work / "tags.json").write_text('["DT", "NN", "VB", "JJ"]')
    with pytest.raises(CheckpointError, match=r"holds sequencetagger_out_weight shaped \(3, "
                                              r"\d+\), but the model of .*config.json with "
                                              r"vocab.json \(\d+ tokens\) and tags.json \(4 "
                                              r"classes\) needs \(4, \d+\)"):
        bucketrnn.load_run(str(work))


def test_a_tag_map_in_another_order_is_refused_naming_it(tagged, tmp_path):
    import bucketrnn
    from bucketrnn.errors import StateMismatchError

    work = tmp_path / "run"
    run(_compose(f"dataset.path={tagged}", "trainer.max_steps=1", "trainer.epochs=1"),
        str(work))
    (work / "tags.json").write_text('["DT", "VB", "NN"]')  # NN and VB swapped: same size
    with pytest.raises(StateMismatchError, match="tags.json' is not the file the checkpoint"):
        bucketrnn.load_run(str(work))


def test_a_resume_writes_a_missing_tag_map_again(tagged, tmp_path):
    # It stopped with "no tag map ...: not the run directory of a tagger" on its own run.
    work = tmp_path / "run"
    run(_compose(f"dataset.path={tagged}", "trainer.max_steps=2"), str(work))
    (work / "tags.json").unlink()
    summary = run(_compose(f"dataset.path={tagged}", f"resume={work}"), str(tmp_path / "x"))
    assert summary["resumed"] and load_tags(str(work / "tags.json")) == ["DT", "NN", "VB"]


def test_predict_on_a_tagged_file_says_to_use_evaluate(tagged, tmp_path, capsys):
    # Every token/TAG item was read as one unknown word; only the <unk> count was noted.
    import io

    from bucketrnn.app import commands

    run_dir = str(tmp_path / "run")
    run(_compose(f"dataset.path={tagged}", "trainer.max_steps=1", "trainer.epochs=1"), run_dir)
    capsys.readouterr()
    assert commands.main(["predict", run_dir, str(tagged)], out=io.StringIO()) == 0
    assert "every item is token/TAG with one of the run's tags" in capsys.readouterr().err
    plain = tmp_path / "plain.txt"
    plain.write_text("the cat sat\na 1/2\n")
    assert commands.main(["predict", run_dir, str(plain)], out=io.StringIO()) == 0
    assert "token/TAG" not in capsys.readouterr().err
