"""A trained sequence-pair run as a user meets it: evaluate a file, translate with a beam, one
definition of each waste figure, BLEU on sacrebleu's 0-100 scale."""

import io
import json

import pytest
from _app import compose_config, pairs_file

import bucketrnn
from bucketrnn.app import commands
from bucketrnn.app.plan import describe
from bucketrnn.app.run import format_summary, run
from bucketrnn.data.plan import pad_to_max_waste
from bucketrnn.inference.translate import translate

TINY = ["model=seq2seq", "dataset=pairs", "model.hidden_size=12", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.epochs=1", "trainer.progress=false", "plots=false"]


def _compose(*overrides):
    return compose_config(*TINY, *overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pairs")
    path = pairs_file(tmp, 80)
    run_dir = str(tmp / "run")
    # Whole epochs (no max_steps): the waste measured over the steps is the plan's.
    summary = run(_compose(f"dataset.path={path}"), run_dir,
                  stream=io.StringIO())
    return {"tmp": tmp, "path": path, "run_dir": run_dir, "summary": summary}


def _held_out_file(trained, split):
    """The run's held-out split written back as a source<TAB>target file."""
    from bucketrnn.app.experiment import load_data

    run = bucketrnn.load_run(trained["run_dir"])
    data = load_data(run.config.dataset, seed=run.config.seed)
    part = data.valid if split == "valid" else data.test
    lines = [" ".join(run.vocab.itos[i] for i in src) + "\t"
             + " ".join(run.tgt_vocab.itos[i] for i in tgt[:-1]) for src, tgt in part]
    path = trained["tmp"] / f"{split}.tsv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_evaluate_a_pairs_file_gives_what_the_split_gives(trained):
    path = _held_out_file(trained, "valid")
    loaded = bucketrnn.load_run(trained["run_dir"])
    split = loaded.evaluate("valid")
    got = loaded.evaluate(path)
    for key in ("loss", "perplexity", "exact_match", "bleu"):
        assert got[key] == pytest.approx(split[key], rel=1e-5, abs=1e-7), key
    assert got["examples"] == split["examples"] and got["overflow"]["lines_dropped"] == 0
    out = io.StringIO()
    assert commands.main(["evaluate", trained["run_dir"], path], out=out) == 0
    text = out.getvalue()
    assert text.startswith(f"{path}: loss ") and "exact match " in text
    assert "BLEU " in text and "(0-100)" in text and "pairs," in text


def test_evaluate_names_a_bad_line_of_apairs_file(trained, capsys):
    bad = trained["tmp"] / "bad.tsv"
    bad.write_text("a b\tB A\nc d e\n")
    assert commands.main(["evaluate", trained["run_dir"], str(bad)]) == 2
    assert "line 2 has 0 tabs" in capsys.readouterr().err


def test_translate_with_a_beam_and_a_length_limit(trained):
    sources = ["a b c d e f", "", "f e d"]
    src = trained["tmp"] / "src.txt"
    src.write_text("\n".join(sources) + "\n")
    out = io.StringIO()
    argv = ["translate", trained["run_dir"], str(src), "--beam", "3", "--max-length", "4"]
    assert commands.main(argv, out=out) == 0
    lines = out.getvalue().split("\n")[:len(sources)]
    loaded = bucketrnn.load_run(trained["run_dir"])
    model = loaded.graphs.block((1, 1))
    for line, text in zip(lines, sources):
        if text:
            want = translate(model, loaded.vocab, loaded.tgt_vocab, [text.split()],
                             beam_size=3, max_length=4)[0]
            assert line == want
            assert len(line.split()) <= 4


@pytest.mark.parametrize("option, value", [("--beam", "0"), ("--max-length", "-1"),
                                           ("--beam", "two")])
def test_translate_options_are_checked_by_name(trained, capsys, option, value):
    with pytest.raises(SystemExit) as e:
        commands.main(["translate", trained["run_dir"], trained["path"], option, value])
    assert e.value.code == 2
    assert f"{option} must be an integer >= 1, got '{value}'" in capsys.readouterr().err


def test_one_definition_of_each_waste_figure(trained):
    s = trained["summary"]
    saved = json.loads((trained["tmp"] / "run" / "summary.json").read_text())
    # Both sides, fill rows included: measured over whole epochs it is the plan's waste.
    assert saved["padded_fraction"] == pytest.approx(saved["plan"]["waste"], abs=1e-12)
    loaded = bucketrnn.load_run(trained["run_dir"])
    lengths = loaded.loader(_training_pairs(trained)).lengths
    assert saved["longest_key"] == [int(lengths[:, 0].max()), int(lengths[:, 1].max())]
    assert saved["pad_to_max_waste"] == pytest.approx(pad_to_max_waste(lengths))
    text = format_summary(s)
    w, key = 100 * s["plan"]["waste"], tuple(saved["longest_key"])
    assert (f"(waste {w:.1f}% of computed slots, source + target steps, vs "
            f"{100 * s['pad_to_max_waste']:.1f}% padding to the longest key {key})") in text
    assert "BLEU " in text and "(0-100)" in text


def _training_pairs(trained):
    from bucketrnn.app.experiment import load_data

    run = bucketrnn.load_run(trained["run_dir"])
    return load_data(run.config.dataset, seed=run.config.seed).train


def test_plan_names_the_longest_key_of_both_sides(trained):
    text = describe(_compose(f"dataset.path={trained['path']}"))
    saved = json.loads((trained["tmp"] / "run" / "summary.json").read_text())
    key = tuple(saved["longest_key"])
    assert f"padding to the longest key {key}: {100 * saved['pad_to_max_waste']:.2f}% of " \
           in text
    slots = saved["plan"]["computed_slots"]
    assert (f"{100 * saved['plan']['waste']:.2f}% of {slots} computed slots (source + target "
            "steps) are not real tokens") in text


def test_compare_shows_exact_match_and_bleu_of_pairs_runs(trained, capsys):
    from bucketrnn.app.compare import main

    assert main([str(trained["tmp"])]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    assert "plan waste%" in head and "valid BLEU" in head and "test exact" in head
    s = trained["summary"]
    assert f"{s['valid']['bleu']:.2f}" in out.splitlines()[2]
    assert f"{s['test']['exact_match']:.3f}" in out.splitlines()[2]
