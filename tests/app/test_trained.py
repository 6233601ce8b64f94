"""Using a trained run: load_run, evaluate, generate, predict, the commands, bad input."""

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import bucketrnn
from bucketrnn import CheckpointError, StateMismatchError
from bucketrnn.app import commands
from bucketrnn.app.config import CONF_DIR
from bucketrnn.app.run import run
from bucketrnn.app.tasks import tasks_for
from bucketrnn.data.datasets import encode_lines, read_lines
from bucketrnn.inference.generation import feed, generate

ROOT = os.path.dirname(CONF_DIR)
WORDS = [f"w{i}" for i in range(30)]
TINY = ["dataset=text", "model.hidden_size=8", "model.num_layers=1", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.progress=false", "plots=false", "trainer.lr=0.02"]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _lines(rng, n, labelled=False):
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 15))
        if not labelled:
            out.append(" ".join(rng.choice(WORDS, size=k)))
            continue
        label = str(rng.choice(["pos", "neg"]))
        pool = WORDS[:15] if label == "pos" else WORDS[15:]
        out.append(label + " " + " ".join(rng.choice(pool, size=k)))
    return out


def _train(root, name, labelled, *extra):
    rng = np.random.default_rng(0 if labelled else 1)
    files = {split: _write(root / f"{name}_{split}.txt", _lines(rng, n, labelled))
             for split, n in (("train", 120), ("valid", 30), ("test", 30))}
    overrides = TINY + [f"dataset.path={files['train']}", f"dataset.valid_path={files['valid']}",
                        f"dataset.test_path={files['test']}", *extra]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run(cfg, str(root / name))
    return str(root / name), summary, files


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("lm"), "lm", False, "trainer.epochs=1")


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("clf"), "clf", True, "model=classifier",
                  "dataset.label=first_token", "trainer.epochs=2")


def _command(*argv):
    """``bucketrnn <argv>`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved, sys.stderr = sys.stderr, err
    try:
        status = commands.main(list(argv), out=out)
    finally:
        sys.stderr = saved
    return status, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------- load_run
def test_load_run_gives_the_losses_training_ended_with(lm):
    run_dir, summary, _ = lm
    trained = bucketrnn.load_run(run_dir)
    assert trained.task == "lm" and trained.classes is None
    assert trained.vocab.itos == json.loads(open(os.path.join(run_dir, "vocab.json")).read())
    assert trained.meta["global_step"] == summary["steps"]
    for split in ("valid", "test"):
        got = trained.evaluate(split)
        assert got["loss"] == pytest.approx(summary[split]["loss"], rel=1e-6), split
        assert got["perplexity"] == pytest.approx(summary[split]["perplexity"], rel=1e-6)
        assert got["examples"] == 30


def test_classifier_run_saves_its_class_map_and_round_trips(clf):
    run_dir, summary, files = clf
    saved = json.loads(open(os.path.join(run_dir, "classes.json")).read())
    assert saved == {"label": "first_token", "classes": ["neg", "pos"]}
    trained = bucketrnn.load_run(run_dir, ctx="cpu")
    assert trained.task == "classify" and trained.classes == ["neg", "pos"]
    got = trained.evaluate("test")
    assert got["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    assert got["accuracy"] == summary["test"]["accuracy"]
    # The same lines as a file, planned into buckets of their own: the same figures (padding
    # never changes a result).
    again = trained.evaluate(files["test"])
    assert again["loss"] == pytest.approx(got["loss"], rel=1e-5)
    assert again["accuracy"] == got["accuracy"]
    assert again["overflow"] == {"lines_dropped": 0, "lines_truncated": 0, "tokens_cut": 0}


def test_evaluate_helper_is_the_training_loops_evaluation(lm):
    from bucketrnn.app.experiment import load_data, make_loaders
    from bucketrnn.training.loop import TrainLoop

    trained = bucketrnn.load_run(lm[0])
    data = load_data(trained.config.dataset)
    train, valid, _ = make_loaders(data, trained.config.bucketing)
    loop = TrainLoop(trained.graphs, train, progress=False,
                     optimizer_params={"learning_rate": 0.01})
    mine = bucketrnn.evaluate(trained.graphs, valid)
    theirs = loop.evaluate(valid)
    assert mine["loss"] == theirs["loss"] and mine["perplexity"] == theirs["perplexity"]


def _first_array_end(path):
    """Offset just past the first stored array of an ``.npz``: a flip before it damages the
    checkpoint. (The middle of the file can land in a zip header field the loader rightly
    ignores, and where it lands moves with the length of the run directory's path.)"""
    with zipfile.ZipFile(path) as z:
        member = z.infolist()[0]
    with open(path, "rb") as f:
        f.seek(member.header_offset + 26)
        name, extra = struct.unpack("<HH", f.read(4))
    return member.header_offset + 30 + name + extra + member.compress_size


def test_load_run_refuses_missing_and_damaged_runs(lm, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"run directory '{missing}' does not exist"):
        bucketrnn.load_run(str(missing))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is not a bucketrnn run directory: it has no "
                                                "config.json"):
        bucketrnn.load_run(str(empty))
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "vocab.json"):
        (broken / name).write_bytes(open(os.path.join(lm[0], name), "rb").read())
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*checkpoint.npz.*before its "
                                                "first checkpoint"):
        bucketrnn.load_run(str(broken))
    data = bytearray(open(os.path.join(lm[0], "checkpoint.npz"), "rb").read())
    data[_first_array_end(os.path.join(lm[0], "checkpoint.npz")) - 1] ^= 0xFF
    (broken / "checkpoint.npz").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checkpoint.npz"):
        bucketrnn.load_run(str(broken))
    (broken / "vocab.json").write_text("[\"<unk>\", ")
    with pytest.raises(ValueError, match="vocab.json' is not a vocabulary written by bucketrnn"):
        bucketrnn.load_run(str(broken))


def test_load_run_refuses_a_checkpoint_of_another_run(lm, clf):
    with pytest.raises(StateMismatchError):
        bucketrnn.load_run(lm[0], checkpoint=os.path.join(clf[0], "checkpoint.npz"))


def test_classifier_without_class_map_is_refused_naming_the_file(clf, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "vocab.json", "checkpoint.npz"):
        (copy / name).write_bytes(open(os.path.join(clf[0], name), "rb").read())
    with pytest.raises(FileNotFoundError, match="classes.json' is missing") as info:
        bucketrnn.load_run(str(copy))
    # Written by hand, the class order would be a guess: the message never asks for it.
    assert "write" not in str(info.value) and "restore" in str(info.value)


# ---------------------------------------------------------------------------- generate
def test_generation_carries_the_state_and_is_seeded(lm):
    trained = bucketrnn.load_run(lm[0])
    step = trained.step_model()
    prompt = [trained.vocab.bos_id] + trained.vocab.encode(["w3", "w7", "w1"]).tolist()
    whole = generate(step, prompt, max_tokens=12, seed=5)
    assert whole == generate(step, prompt, max_tokens=12, seed=5)
    _, states = feed(step, prompt[:2])
    assert generate(step, prompt[2:], max_tokens=12, seed=5, states=states) == whole
    # The step graph's logits are the bucket graph's at every position of the prompt.
    from bucketrnn.app.config import to_dict
    from bucketrnn.models import LanguageModel, build_model

    assert isinstance(step, LanguageModel)
    full = build_model(to_dict(trained.config.model), len(trained.vocab))(len(prompt))
    params = trained.graphs.collect_params()
    full.collect_params().initialize()
    for name, p in full.collect_params().items():
        p.set_data(params[name].data())
    import mxnet as mx

    ids = mx.nd.array([prompt], dtype="int32")
    full.outputs = ("logits",)
    logits = full(ids, mx.nd.array([len(prompt)], dtype="int32"), ids, mx.nd.ones(1))
    for t in range(len(prompt)):
        got, _ = feed(step, prompt[:t + 1])
        np.testing.assert_allclose(got, logits.asnumpy()[0, t], rtol=1e-5, atol=1e-6)


def test_generate_reads_the_prompt_once_per_token(lm):
    trained = bucketrnn.load_run(lm[0])
    step = trained.step_model()
    calls = []

    class Counting:
        vocab_size = step.vocab_size

        def begin_state(self, *a, **k):
            return step.begin_state(*a, **k)

        def __call__(self, *args):
            calls.append(args[0].asnumpy().tolist())
            return step(*args)

    out = generate(Counting(), [1, 5, 6, 7], max_tokens=6, seed=0, temperature=0)
    # Each prompt token once, then each generated token but the last: no prefix re-run.
    assert calls == [[1], [5], [6], [7]] + [[t] for t in out[:-1]]


def test_generate_command(lm):
    status, out, err = _command("generate", lm[0], "--prompt", "w3 w7", "--seed", "1",
                                "--max-tokens", "8")
    assert status == 0, err
    assert out.startswith("w3 w7") and len(out.split()) <= 2 + 8
    assert _command("generate", lm[0], "--prompt", "w3 w7", "--seed", "1",
                    "--max-tokens", "8")[1] == out
    greedy = _command("generate", lm[0], "--prompt", "w3", "--temperature", "0", "--top-k",
                      "3")
    assert greedy[0] == 0 and greedy[1].startswith("w3")


def test_generate_refuses_bad_prompts_and_notes_unknown_words(lm):
    status, _, err = _command("generate", lm[0], "--prompt", "  ")
    assert status == 2 and "error: prompt must hold at least one token, got prompt='  '" in err
    status, out, err = _command("generate", lm[0], "--prompt", "w3 zebra qq", "--seed", "0",
                                "--max-tokens", "3")
    assert status == 0 and out.startswith("w3 zebra qq")
    assert "note: not in the run's vocabulary, read as <unk>: 'zebra', 'qq'" in err
    result = bucketrnn.load_run(lm[0]).generate("w3 zebra", max_tokens=0, seed=0)
    assert result["unknown"] == ["zebra"] and result["ids"] == []
    status, _, err = _command("generate", lm[0], "--prompt", "w3", "--temperature", "-1")
    assert status == 2 and "temperature must be a finite number >= 0" in err


def test_a_prompt_longer_than_the_command_line_allows_is_refused_naming_both(lm):
    # The command line caps one argument at 128 KiB; load_run(...).generate() had no cap and
    # fed a prompt of any length, token by token.
    from bucketrnn.app.infer import MAX_PROMPT_CHARACTERS

    run_ = bucketrnn.load_run(lm[0])
    prompt = "w1 " * (MAX_PROMPT_CHARACTERS // 3 + 1)
    with pytest.raises(ValueError, match=rf"prompt is {len(prompt):,} characters long, more than "
                                         rf"the {MAX_PROMPT_CHARACTERS:,} a prompt may hold"):
        run_.generate(prompt, max_tokens=1)
    assert run_._step is None  # refused before the step graph was built
    fits = "w1 " * (MAX_PROMPT_CHARACTERS // 3)
    assert run_.generate(fits[:2000], max_tokens=0, seed=0)["ids"] == []


def test_a_huge_unknown_token_is_shortened_in_every_note(lm, clf, tmp_path):
    # One 10**6-character word was echoed whole (1 MB) by the unknown-word note.
    huge = "z" * 10**6
    path = _write(tmp_path / "in.txt", [f"w1 {huge} w2", "w3 w4"])
    status, _, err = _command("predict", clf[0], path)
    assert status == 0 and len(err) < 500 and "'zzzz" in err
    assert "(1,000,000 characters)" in err
    status, _, err = _command("evaluate", clf[0], _write(tmp_path / "labelled.txt",
                                                         [f"{huge} w1 w2"]))
    assert status == 2 and len(err) < 500 and "label 'zzzz" in err
    status, _, err = _command("generate", lm[0], "--prompt", f"w3 {'y' * 10**5}", "--seed", "0",
                              "--max-tokens", "1")
    assert status == 0 and len(err) < 500 and "(100,000 characters)" in err


# ---------------------------------------------------------------------------- predict
def test_predict_keeps_input_order_across_buckets(clf, tmp_path):
    rng = np.random.default_rng(7)
    lines = [line.split(" ", 1)[1] for line in _lines(rng, 40, labelled=True)]
    lines[3] = " ".join(["w1"] * 60)  # far longer than any training line: a bucket of its own
    path = _write(tmp_path / "in.txt", lines[:20] + [""] + lines[20:])
    trained = bucketrnn.load_run(clf[0])
    ds, _ = trained.read(clf[2]["test"])
    assert trained.loader(ds).plan.num_buckets > 1
    status, out, err = _command("predict", clf[0], path)
    assert status == 0, err
    got = out.split("\n")[:-1]
    assert len(got) == 41 and got[20] == ""
    got = got[:20] + got[21:]
    assert set(got) <= {"pos", "neg"} and len(set(got)) == 2
    for i in (0, 3, 19, 20, 39):  # each line alone gives its own answer
        alone = _write(tmp_path / f"one{i}.txt", [lines[i]])
        assert trained.predict(alone).outputs == [got[i]], i


def test_commands_refuse_the_wrong_task(lm, clf, tmp_path):
    path = _write(tmp_path / "x.txt", ["w1 w2"])
    for argv, words in (
            (("generate", clf[0], "--prompt", "w1"), "`bucketrnn generate` is not available "
                                                     "for this run's task 'classify'"),
            (("predict", lm[0], path), "`bucketrnn predict` is not available for this run's "
                                       "task 'lm'"),
            (("translate", lm[0], path), "`bucketrnn translate` is not available")):
        status, out, err = _command(*argv)
        assert status == 2 and words in err and out == ""
    assert "classify" in tasks_for("predict") and "lm" in tasks_for("generate")


def test_evaluate_command_and_bad_files(lm, clf, tmp_path):
    status, out, err = _command("evaluate", lm[0], "test")
    assert status == 0 and out.startswith("test: loss ") and "perplexity" in out
    status, out, _ = _command("evaluate", clf[0], clf[2]["valid"], "--json")
    figures = json.loads(out)
    assert status == 0 and set(figures) >= {"loss", "accuracy", "examples", "overflow"}
    bad = _write(tmp_path / "bad.txt", ["maybe w1 w2"])
    status, _, err = _command("evaluate", clf[0], bad)
    assert status == 2 and "bad.txt' line 1: label 'maybe' is not one of the 2 classes" in err
    status, _, err = _command("evaluate", lm[0], str(tmp_path / "none.txt"))
    assert status == 2 and "none.txt" in err
    status, _, err = _command("predict", str(tmp_path / "norun"), bad)
    assert status == 2 and "norun' does not exist" in err


def test_console_dispatch_leaves_hydra_alone(lm, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bucketrnn", "evaluate", lm[0], "valid"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("valid: loss ")
    # key=value still goes to Hydra: a misspelt key is its composition error.
    done = subprocess.run([sys.executable, "-m", "bucketrnn", "trainer.nope=1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode != 0 and "nope" in done.stderr


def test_lines_over_max_length_are_counted_on_evaluate_and_predict(tmp_path):
    run_dir, summary, _ = _train(tmp_path, "cut", False, "trainer.max_steps=2",
                                 "dataset.max_length=10", "dataset.on_overflow=drop")
    assert summary["dataset_overflow"]["lines_dropped"] > 0  # the training data had some too
    path = _write(tmp_path / "long.txt", ["w1 w2 w3", " ".join(["w4"] * 12), "w5 w6"])
    status, out, err = _command("evaluate", run_dir, path, "--json")
    figures = json.loads(out)
    assert status == 0 and figures["examples"] == 2
    assert figures["overflow"] == {"lines_dropped": 1, "lines_truncated": 0, "tokens_cut": 12}
    status, out, err = _command("evaluate", run_dir, path)
    assert "note: max_length=10: 1 line(s) dropped, 0 truncated" in err


def test_bad_contexts_are_refused(lm):
    with pytest.raises(ValueError, match="ctx must be 'cpu', 'gpu' or 'gpu:N', got ctx='tpu'"):
        bucketrnn.load_run(lm[0], ctx="tpu")
    with pytest.raises(ValueError, match="names a GPU this machine does not have"):
        bucketrnn.load_run(lm[0], ctx="gpu:7")
    with pytest.raises(TypeError, match="ctx must be an mx.Context"):
        bucketrnn.load_run(lm[0], ctx=3)


def test_an_outlier_input_line_is_refused_naming_the_file_and_line(clf, tmp_path):
    lines = [" ".join(["w1", "w2", "w3"][: 1 + i % 3]) for i in range(40)]
    lines.insert(7, " ".join(["w4"] * 3000))
    path = _write(tmp_path / "outlier.txt", lines)
    status, out, err = _command("predict", clf[0], path)
    assert status == 2 and out == ""
    assert f"error: line 8 of {path!r} is 3002 steps long, far more than the rest needs" in err
    assert "taken for damaged input; split or cut such lines, or give it in a file of its own" \
        in err


def test_a_damaged_class_map_is_refused_naming_it(clf, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "vocab.json", "checkpoint.npz"):
        (copy / name).write_bytes(open(os.path.join(clf[0], name), "rb").read())
    for text in ('{"label": "first_token", "classes": ["neg"]}', "{not json"):
        (copy / "classes.json").write_text(text)
        with pytest.raises(ValueError, match="classes.json' is not a class map written by "
                                             "bucketrnn"):
            bucketrnn.load_run(str(copy))
    # Three names for a two-class checkpoint: the shapes disagree, named.
    (copy / "classes.json").write_text('{"label": "first_token", "classes": ["a", "b", "c"]}')
    with pytest.raises(CheckpointError, match=r"holds sequenceclassifier_out_weight shaped "
                                              r"\(2, 8\), but the model .* needs \(3, 8\)"):
        bucketrnn.load_run(str(copy))


def test_character_runs_generate_characters(tmp_path):
    rng = np.random.default_rng(2)
    lines = ["".join(rng.choice(list("abcde "), size=int(rng.integers(3, 12))))
             for _ in range(80)]
    path = _write(tmp_path / "chars.txt", [ln.strip() or "a" for ln in lines])
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=TINY + [
            f"dataset.path={path}", "dataset.tokens=char", "trainer.max_steps=3"])
    run(cfg, str(tmp_path / "run"))
    result = bucketrnn.load_run(str(tmp_path / "run")).generate("ab c", max_tokens=5, seed=0)
    assert result["prompt"] == ["a", "b", " ", "c"]
    assert result["text"] == "ab c" + "".join(result["tokens"])
    assert all(len(t) == 1 or t == "<unk>" for t in result["tokens"])


# ---------------------------------------------------------------------------- hostile run dirs
def _copy_run(src, dst):
    dst.mkdir()
    for name in os.listdir(src):
        if name.endswith(".json") or name.endswith(".npz"):
            (dst / name).write_bytes(open(os.path.join(src, name), "rb").read())
    return dst


def test_a_config_edited_after_training_is_refused_naming_both_files(lm, tmp_path):
    copy = _copy_run(lm[0], tmp_path / "copy")
    cfg = json.loads((copy / "config.json").read_text())
    cfg["model"]["hidden_size"] = 32
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(StateMismatchError) as info:
        bucketrnn.load_run(str(copy))
    message = str(info.value)
    assert "checkpoint.npz' was not made with the config of" in message
    assert "config.json" in message and "model.hidden_size: checkpoint 8, now 32" in message
    assert "resume=" not in message  # the training hint means nothing to load_run
    status, _, err = _command("evaluate", str(copy))
    assert status == 2 and err.startswith("error: checkpoint ")


def test_checkpoint_argument_and_unreadable_checkpoints_are_named(lm, tmp_path):
    for bad in (None, 5, ""):
        with pytest.raises(TypeError, match=f"checkpoint must be 'latest' or the path of a "
                                            f"checkpoint file, got checkpoint={bad!r}"):
            bucketrnn.load_run(lm[0], checkpoint=bad)
    copy = _copy_run(lm[0], tmp_path / "copy")
    os.remove(copy / "checkpoint.npz")
    os.symlink(tmp_path / "gone.npz", copy / "checkpoint.npz")
    with pytest.raises(FileNotFoundError, match="a symbolic link to the missing .*gone.npz"):
        bucketrnn.load_run(str(copy))
    with pytest.raises(FileNotFoundError, match=r"not a regular file \(a directory\)"):
        bucketrnn.load_run(lm[0], checkpoint=str(tmp_path))
    # A link to a device is no missing file: it says what the link leads to.
    os.remove(copy / "checkpoint.npz")
    os.symlink("/dev/zero", copy / "checkpoint.npz")
    with pytest.raises(FileNotFoundError, match=r"there is a symbolic link to '/dev/zero', not "
                                                r"a regular file \(a character device\)$"):
        bucketrnn.load_run(str(copy))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at '/dev/zero': there is not a "
                                                r"regular file \(a character device\)$"):
        bucketrnn.load_run(lm[0], checkpoint="/dev/zero")


def test_a_checkpoint_with_parameters_of_another_dtype_is_refused_naming_one(lm, tmp_path):
    from bucketrnn.training import checkpoint as ckpt

    copy = _copy_run(lm[0], tmp_path / "copy")
    path = copy / "checkpoint.npz"
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    name = sorted(k for k in arrays if k.startswith("param/"))[0]
    arrays[name] = np.clip(arrays[name] * 100, -128, 127).astype(np.int8)
    arrays["checksum"] = np.frombuffer(ckpt._checksum(arrays).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(CheckpointError, match=f"holds {name[len('param/'):]} as int8, but the "
                                              "model .* needs float32"):
        bucketrnn.load_run(str(copy))


def _rewrite_checkpoint_meta(path, edit):
    """Rewrite a checkpoint's meta as an older bucketrnn (or an attacker) would: valid
    checksum."""
    from bucketrnn.training import checkpoint as ckpt

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(arrays["meta"].tobytes())
    edit(doc["meta"])
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    arrays["checksum"] = np.frombuffer(ckpt._checksum(arrays).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_run_files_in_another_order_are_refused_naming_them(lm, clf, tmp_path):
    copy = _copy_run(clf[0], tmp_path / "clf")
    doc = json.loads((copy / "classes.json").read_text())
    (copy / "classes.json").write_text(json.dumps({**doc, "classes": doc["classes"][::-1]}))
    with pytest.raises(StateMismatchError, match=r"classes.json' is not the file the checkpoint "
                                                 r".*checkpoint.npz' was trained with"):
        bucketrnn.load_run(str(copy))
    status, out, err = _command("predict", str(copy), clf[2]["test"])
    assert status == 2 and out == "" and "classes.json' is not the file" in err
    copy = _copy_run(lm[0], tmp_path / "lm")
    tokens = json.loads((copy / "vocab.json").read_text())
    tokens[-1], tokens[-2] = tokens[-2], tokens[-1]  # the same tokens, in another order
    (copy / "vocab.json").write_text(json.dumps(tokens))
    with pytest.raises(StateMismatchError, match="vocab.json' is not the file the checkpoint"):
        bucketrnn.load_run(str(copy))
    status, out, err = _command("generate", str(copy), "--prompt", "w1 w2", "--max-tokens", "3")
    assert status == 2 and out == "" and "vocab.json' is not the file" in err


def test_a_resume_refuses_run_files_changed_since_its_checkpoint(clf, tmp_path):
    run_dir, _, files = clf
    copy = _copy_run(run_dir, tmp_path / "clf")
    (copy / "metrics.jsonl").write_bytes(open(os.path.join(run_dir, "metrics.jsonl"), "rb").read())
    doc = json.loads((copy / "classes.json").read_text())
    (copy / "classes.json").write_text(json.dumps({**doc, "classes": doc["classes"][::-1]}))
    overrides = TINY + [f"dataset.{key}={files[split]}" for key, split in (
        ("path", "train"), ("valid_path", "valid"), ("test_path", "test"))] + [
        "model=classifier", "dataset.label=first_token", "trainer.epochs=3", f"resume={copy}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with pytest.raises(StateMismatchError, match="classes.json differs from the one the "
                                                 "checkpoint was trained with"):
        run(cfg, str(tmp_path / "x"))


def test_a_checkpoint_without_run_file_digests_loads_with_a_note(clf, tmp_path):
    copy = _copy_run(clf[0], tmp_path / "old")
    _rewrite_checkpoint_meta(copy / "checkpoint.npz", lambda meta: meta.pop("run_files"))
    trained = bucketrnn.load_run(str(copy))
    assert trained.meta["run_files"] is None and trained.classes == ["neg", "pos"]
    status, out, err = _command("predict", str(copy), clf[2]["test"])
    assert status == 0 and out
    assert "note: the checkpoint records no digests of its run files" in err
    fresh = bucketrnn.load_run(clf[0])
    assert sorted(fresh.meta["run_files"]) == ["classes.json", "vocab.json"]


def test_a_vocabulary_with_duplicates_or_without_eos_is_refused_naming_it(lm, tmp_path):
    copy = _copy_run(lm[0], tmp_path / "copy")
    tokens = json.loads((copy / "vocab.json").read_text())
    twice = tokens[:5] + [tokens[4]] + tokens[6:]
    (copy / "vocab.json").write_text(json.dumps(twice))
    with pytest.raises(ValueError, match=f"vocab.json' is not a vocabulary written by bucketrnn: "
                                         f"vocabulary tokens must be unique, got '{tokens[4]}' "
                                         f"at ids 4 and 5"):
        bucketrnn.load_run(str(copy))
    # Without <eos> (same size, so the checkpoint's shapes fit): no sentence could start.
    (copy / "vocab.json").write_text(json.dumps(["<unk>", "<eox>", *tokens[2:]]))
    with pytest.raises(ValueError, match="vocab.json' is not a vocabulary written by bucketrnn: "
                                         "it has no '<eos>' token"):
        bucketrnn.load_run(str(copy))


def test_class_names_that_would_break_line_alignment_are_refused(clf, tmp_path):
    copy = _copy_run(clf[0], tmp_path / "copy")
    for names in (["neg", "p\nos"], ["neg", ""], ["neg", " pos"]):
        (copy / "classes.json").write_text(json.dumps({"label": "first_token",
                                                       "classes": names}))
        with pytest.raises(ValueError, match=re.escape(f"class name {names[1]!r} is blank or "
                                                       "holds a line break")):
            bucketrnn.load_run(str(copy))


def test_class_names_with_terminal_escapes_are_refused(clf, tmp_path):
    # predict writes class names to the terminal: an escape sequence (ESC, the C1 CSI, a
    # right-to-left override) would act on it instead of being read.
    copy = _copy_run(clf[0], tmp_path / "copy")
    for names in (["neg", "\x1b[2Jpos"], ["neg", "p\u202eos"], ["neg", "p\x9bos"]):
        (copy / "classes.json").write_text(json.dumps({"label": "first_token",
                                                       "classes": names}))
        with pytest.raises(ValueError, match=re.escape(f"class name {names[1]!r} holds an "
                                                       "unprintable character")):
            bucketrnn.load_run(str(copy))


def test_evaluate_refuses_what_is_not_a_split_or_a_path(lm):
    run_ = bucketrnn.load_run(lm[0])
    for bad in (None, 5, ""):
        with pytest.raises(TypeError, match=f"what must be 'valid', 'test' or the path of a "
                                            f"file, got what={bad!r}"):
            run_.evaluate(bad)


def test_an_interrupted_command_exits_130_without_a_traceback(lm, monkeypatch):
    from bucketrnn.app import trained

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trained, "load_run", interrupted)
    try:
        result = _command("generate", lm[0], "--prompt", "w1")
    except KeyboardInterrupt:  # escaping would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped commands.main (a traceback for the user)")
    assert result == (130, "", "interrupted\n")


@pytest.fixture
def no_long_unrolled_graph(monkeypatch):
    """Fail at once, never after minutes and gigabytes, if an unrolled encoder of more than
    4,096 steps is built: a test of running or refusing a long line stays cheap when the
    code under test would unroll it (as main did before issue 21)."""
    from bucketrnn.models.encoder import RecurrentEncoder

    built = RecurrentEncoder.__init__

    def guarded(self, length, *args, cell="unrolled", **kwargs):
        assert cell != "unrolled" or length <= 4096, f"an unrolled graph of {length} steps"
        built(self, length, *args, cell=cell, **kwargs)

    monkeypatch.setattr(RecurrentEncoder, "__init__", guarded)


def test_a_lone_25000_token_line_is_answered_in_seconds_not_minutes(clf, tmp_path,
                                                                    no_long_unrolled_graph):
    # Issue 21: one 25,000-token line alone took 132 s and 3.0 GB in `bucketrnn predict` (an
    # unrolled graph of 25,002 steps, bound before it ran). It runs on the same parameters'
    # length-agnostic graph instead (GraphCache unroll_limit).
    line = " ".join(np.random.default_rng(3).choice(WORDS, size=25_000))
    path = _write(tmp_path / "long.txt", [line])
    started = time.perf_counter()
    status, out, err = _command("predict", clf[0], path)
    assert status == 0 and out in ("neg\n", "pos\n") and "error" not in err
    assert time.perf_counter() - started < 60  # 11-18 s at load 9 on 2 cores; main: 126-137 s
    run_ = bucketrnn.load_run(clf[0])
    result = run_.evaluate(_write(tmp_path / "labelled.txt", ["pos " + line]))
    assert np.isfinite(result["loss"]) and result["examples"] == 1
    assert run_.graphs.keys == [] and run_.graphs.long_keys == [25_002]


def test_a_long_line_gets_the_answer_its_unrolled_graph_gives(clf, tmp_path):
    rng = np.random.default_rng(4)
    lines = [" ".join(rng.choice(WORDS, size=n)) for n in [3, 7, 300] + [5, 9, 12] * 10]
    path = _write(tmp_path / "in.txt", lines)
    labelled = _write(tmp_path / "labelled.txt",
                      [f"{['pos', 'neg'][i % 2]} {line}" for i, line in enumerate(lines)])
    twin, unrolled = bucketrnn.load_run(clf[0]), bucketrnn.load_run(clf[0])
    twin.graphs.unroll_limit, unrolled.graphs.unroll_limit = 100, None
    assert twin.predict(path).outputs == unrolled.predict(path).outputs
    a, b = twin.evaluate(labelled), unrolled.evaluate(labelled)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["accuracy"] == b["accuracy"]
    assert twin.graphs.long_keys == [302] and unrolled.graphs.long_keys == []
    assert twin.graphs.keys and max(twin.graphs.keys) <= 100  # the other lines: unrolled
    # A file of ordinary lines runs on the unrolled graphs it always did: the same figures.
    default = bucketrnn.load_run(clf[0])
    assert default.evaluate(clf[2]["test"]) | {"seconds": 0} == \
        unrolled.evaluate(clf[2]["test"]) | {"seconds": 0}
    assert default.graphs.long_keys == []


def test_a_line_over_max_line_steps_is_refused_at_once_naming_the_option(
        clf, tmp_path, no_long_unrolled_graph):
    huge = tmp_path / "huge.txt"
    huge.write_text(" ".join(["w1"] * 10**6) + "\n")
    started = time.perf_counter()
    status, out, err = _command("predict", clf[0], str(huge))
    assert (status, out) == (2, "") and time.perf_counter() - started < 30
    assert err == (f"error: line 1 of {str(huge)!r} is 1,000,002 steps long, more than the "
                   "100,000 steps a line may take (max_line_steps): split or cut such lines, "
                   "or raise the limit (--max-line-steps N; load_run(...).max_line_steps = N)\n")
    path = _write(tmp_path / "in.txt", ["w1 w2", " ".join(["w3"] * 60)])
    labelled = _write(tmp_path / "labelled.txt", ["pos w1 w2", "neg " + " ".join(["w3"] * 60)])
    for argv in (("predict", clf[0], path), ("evaluate", clf[0], labelled)):
        status, out, err = _command(*argv, "--max-line-steps", "61")
        assert (status, out) == (2, "") and err.startswith(
            f"error: line 2 of {argv[2]!r} is 62 steps long, more than the 61 steps"), err
        assert _command(*argv, "--max-line-steps", "62")[0] == 0
    run_ = bucketrnn.load_run(clf[0])  # from Python: the attribute
    run_.max_line_steps = 61
    with pytest.raises(ValueError, match="is 62 steps long, more than the 61 steps"):
        run_.predict(path)
    run_.max_line_steps = None
    assert len(run_.predict(path).outputs) == 2


def test_a_graph_too_large_for_a_file_names_the_file_and_its_longest_line(lm, clf, tmp_path):
    from bucketrnn import GraphTooLargeError

    path = _write(tmp_path / "in.txt", ["w1 w2", "w3 w4 w5 w6 w7 w8 w9", "w2"])
    for run_dir, call in ((lm[0], "evaluate"), (clf[0], "predict")):
        run_ = bucketrnn.load_run(run_dir)
        run_.graphs.memory_limit = 1000  # bytes: every graph is too large
        with pytest.raises(GraphTooLargeError) as info:
            getattr(run_, call)(path)
        message = str(info.value)
        assert message.startswith(f"{path!r} is too long to run here: the graph of bucket_key=")
        assert "its longest line, line 2, is " in message
        assert "pass memory_limit=" not in message and "max_length" not in message  # library hints


def test_a_split_whose_data_is_gone_names_the_run_config_and_the_directory(lm, tmp_path,
                                                                           monkeypatch):
    copy = _copy_run(lm[0], tmp_path / "copy")
    cfg = json.loads((copy / "config.json").read_text())
    monkeypatch.chdir(tmp_path)  # the run's data files are elsewhere
    run_ = bucketrnn.load_run(str(copy))
    run_.config.dataset.path = os.path.basename(cfg["dataset"]["path"])  # as if given relative
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"the valid split cannot be rebuilt from the run's {copy / 'config.json'}: ")
            + ".*" + re.escape(f"relative paths are read from the current directory "
                               f"{str(tmp_path)!r}")):
        run_.evaluate("valid")


def test_predict_on_a_labelled_file_says_the_labels_were_read_as_words(clf, tmp_path):
    status, out, err = _command("predict", clf[0], clf[2]["test"])
    assert status == 0 and len(out.splitlines()) == 30
    assert "note: every line starts with a class name (neg, pos): predict reads unlabelled " \
           "text" in err and "bucketrnn evaluate RUN_DIR FILE" in err
    unlabelled = _write(tmp_path / "u.txt", [line.split(" ", 1)[1] for line in
                                             open(clf[2]["test"]).read().splitlines()])
    assert "class name" not in _command("predict", clf[0], unlabelled)[2]


def test_a_line_over_the_runs_max_length_under_policy_error_names_the_runs_settings(
        lm, tmp_path):
    copy = _copy_run(lm[0], tmp_path / "copy")
    run_ = bucketrnn.load_run(str(copy))
    run_.config.dataset.max_length = 5  # as a run trained with on_overflow=error
    path = _write(tmp_path / "in.txt", ["w1 w2", "w1 w2 w3 w4 w5 w6 w7"])
    for call in (run_.evaluate, run_.read):
        with pytest.raises(ValueError, match=re.escape(
                f"text file {path!r} line 2 has 7 tokens, more than max_length=5 (1 line(s) are "
                "longer): the run's dataset.max_length, with dataset.on_overflow='error'; split "
                "or cut such lines")):
            call(path)


def test_generate_streams_its_text_and_an_interrupt_keeps_what_was_shown(lm, monkeypatch):
    run_ = bucketrnn.load_run(lm[0])
    pieces = []
    result = run_.generate("w3 w7", max_tokens=8, seed=1, on_text=pieces.append)
    assert "".join(pieces) == result["text"] and pieces[0] == "w3 w7"
    assert len(pieces) == 1 + len(result["tokens"])
    pieces.clear()
    assert run_.generate("w3", max_tokens=0, on_text=pieces.append)["text"] == "w3" == \
        "".join(pieces)
    with pytest.raises(ValueError, match="temperature"):  # nothing shown before the checks
        run_.generate("w3", temperature=-1, on_text=pieces.append)
    assert pieces == ["w3"]

    # The command writes each token as it is drawn: interrupted after 3, they stay printed.
    from bucketrnn.inference import generation
    drawn = []

    def sample(*args, **kwargs):  # three words (never <eos>), then Ctrl-C
        if len(drawn) == 3:
            raise KeyboardInterrupt
        drawn.append(run_.vocab[f"w{len(drawn) + 1}"])
        return drawn[-1]

    monkeypatch.setattr(generation, "sample", sample)
    status, out, err = _command("generate", lm[0], "--prompt", "w3", "--max-tokens", "10")
    assert (status, out, err) == (130, "w3 w1 w2 w3\n", "interrupted\n")


def test_the_apps_help_names_the_commands_on_a_trained_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bucketrnn", "--help"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    for line in ("bucketrnn evaluate RUN_DIR [valid|test|FILE]", "bucketrnn predict RUN_DIR FILE",
                 'bucketrnn generate RUN_DIR --prompt "..."', "docs/using-a-trained-model.md"):
        assert line in done.stdout


def test_predict_on_a_tagger_refuses_an_outlier_line_naming_the_file_and_line(tmp_path):
    rng = np.random.default_rng(3)
    tagged = _write(tmp_path / "tagged.txt", [
        " ".join(f"{w}/{'A' if w < 'w2' else 'B'}" for w in rng.choice(WORDS, size=k))
        for k in rng.integers(2, 9, size=60)])
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "model=tagger", "dataset=tagged", f"dataset.path={tagged}", "model.hidden_size=8",
            "bucketing.num_buckets=2", "bucketing.batch_size=8", "trainer.max_steps=2",
            "trainer.progress=false", "plots=false"])
    run(cfg, str(tmp_path / "run"))
    path = _write(tmp_path / "in.txt", ["w1 w2"] * 20 + [" ".join(["w3"] * 3000)])
    status, out, err = _command("predict", str(tmp_path / "run"), path)
    assert (status, out) == (2, "")
    assert err.startswith(f"error: line 21 of {path!r} is 3000 steps long, far more than the "
                          "rest needs") and err.endswith("up to --max-line-steps)\n")
    # A graph too large for the memory names the file and its longest line, as for the others.
    from bucketrnn import GraphTooLargeError

    tagger = bucketrnn.load_run(str(tmp_path / "run"))
    tagger.graphs.memory_limit = 1000  # bytes: every graph is too large
    short = _write(tmp_path / "short.txt", ["w1 w2", "w1 w2 w3 w4", "w5"])
    with pytest.raises(GraphTooLargeError, match=re.escape(
            f"{short!r} is too long to run here: the graph of bucket_key=")
            + ".*its longest line, line 2, is 4 steps: split or cut long lines"):
        tagger.predict(short)


def test_a_token_budget_run_reads_a_line_longer_than_its_budget(lm, tmp_path):
    run_ = bucketrnn.load_run(lm[0])
    run_.config.bucketing.batch_size = None  # as a run with bucketing=tokens
    run_.config.bucketing.max_tokens = 16
    path = _write(tmp_path / "in.txt", ["w1 w2", " ".join(["w3"] * 40), "w4 w5 w6"])
    loader = run_.loader(encode_lines(read_lines(path), run_.vocab))
    assert max(loader.plan.keys) == 41 and min(loader.plan.batch_sizes) == 1
    alone = run_.evaluate(path)
    run_.config.bucketing.max_tokens = 4096  # the same figures with room to spare
    assert run_.evaluate(path)["loss"] == pytest.approx(alone["loss"], rel=1e-6)


def test_predict_into_a_closed_pipe_stops_quietly(clf, tmp_path):
    # `bucketrnn predict RUN FILE | head -1`: the reader goes away; no "error:", no traceback.
    lines = _write(tmp_path / "many.txt", ["w1 w2 w3"] * 5000)
    cmd = (f"{sys.executable} -m bucketrnn predict {clf[0]} {lines} | head -1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.count("\n") == 1 and "error" not in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_commands_on_a_run_with_an_automatic_plan(tmp_path, monkeypatch):
    # num_buckets=auto fixes its boundaries in config.json (bucketing.auto_boundaries);
    # evaluate FILE and predict plan their inputs on them.
    from bucketrnn.autoplan import costmodel
    monkeypatch.setattr(costmodel, "MAX_FIT_ERROR", 1e9)  # a tiny model's timings are noisy
    overrides = [o for o in TINY if not o.startswith("bucketing.num_buckets")]
    overrides.append("bucketing.num_buckets=auto")
    rng = np.random.default_rng(3)
    path = _write(tmp_path / "train.txt", _lines(rng, 120))
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides + [f"dataset.path={path}"])
    assert cfg.bucketing.num_buckets == "auto"
    run_dir = str(tmp_path / "run")
    run(cfg, run_dir, stream=io.StringIO())
    saved = json.loads(open(os.path.join(run_dir, "config.json")).read())["bucketing"]
    assert saved["num_buckets"] == "auto" and saved["auto_boundaries"]
    trained = bucketrnn.load_run(run_dir)
    loader = trained.loader(trained.read(path)[0])
    assert set(loader.plan.boundaries) >= set(saved["auto_boundaries"])
    status, out, _ = _command("evaluate", run_dir, path)
    assert status == 0 and "perplexity" in out
