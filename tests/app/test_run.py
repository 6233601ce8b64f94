"""The Hydra app: composed configs, a tiny run end to end, resume, bad input, plan, compare."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _app import ROOT, TINY, compose_config
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from bucketrnn import StateMismatchError
from bucketrnn.app.compare import collect, table
from bucketrnn.app.config import CONF_DIR
from bucketrnn.app.plan import describe
from bucketrnn.app.run import run
from bucketrnn.training import checkpoint as ckpt
from bucketrnn.training.rundir import RunLockedError


def _compose(*overrides):
    return compose_config(*TINY, *overrides)


def _errors(exc):
    """The message of an exception and of everything that caused it."""
    parts = []
    while exc is not None:
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


@pytest.fixture(scope="module")
def _two_steps_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("two-steps") / "run"
    run(_compose("trainer.max_steps=2", "plots=false"), str(path))
    return path


@pytest.fixture
def two_steps(_two_steps_run):
    """``two_steps(dest)``: a copy at ``dest`` of a tiny run stopped after 2 steps, no plots
    (trained once per module: the tests resume it, damage it or lock it, each in its copy).
    A run directory holds no path of its own, so a copy resumes as the original would."""

    def copy(dest):
        shutil.copytree(_two_steps_run, dest, symlinks=True, dirs_exist_ok=True)
        return dest

    return copy


def test_default_config_is_the_documented_experiment():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config")
    assert cfg.dataset.name.value == "ptb"
    assert cfg.model.name.value == "lstm_lm" and cfg.model.cell.value == "unrolled"
    assert cfg.model.num_layers == 2 and cfg.trainer.context == "cpu"
    assert cfg.bucketing.num_buckets == 8  # auto (app/auto.py) is opt-in


def test_tiny_run_end_to_end(tmp_path, capsys):
    summary = run(_compose(), str(tmp_path), stream=sys.stdout)
    for name in ("metrics.jsonl", "checkpoint.npz", "summary.json", "vocab.json",
                 "buckets.png", "curves.png"):
        assert (tmp_path / name).is_file(), name
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["valid"]["perplexity"] == pytest.approx(summary["valid"]["perplexity"])
    assert summary["test"]["perplexity"] > 1 and summary["epochs_done"] == 2
    assert summary["graphs_compiled"] >= 1 and summary["tokens_per_s"] > 0
    kinds = {json.loads(line)["kind"] for line in open(tmp_path / "metrics.jsonl")}
    assert kinds == {"step", "epoch"}
    out = capsys.readouterr().out
    assert "== summary ==" in out and "perplexity" in out
    assert "note:" not in out
    # The run's log holds the plan, every epoch's figures, the checkpoints and the summary,
    # with progress off too.
    log = (tmp_path / "bucketrnn.log").read_text()
    assert summary["threads"] and "threads        " in log
    u = summary["utilisation"]  # 1-layer LSTM, 12 units: 3 x (2*4*12*24 + 2*12*V) per token
    vocab = len(json.loads((tmp_path / "vocab.json").read_text()))
    assert u["flops_per_token"] == 3 * (2 * 4 * 12 * 24 + 2 * 12 * vocab)
    assert u["gemm_peak_gflops"] > 0 and 0 < u["fraction_of_peak"] < 1
    assert "utilisation    " in log and "of this run's fp32 GEMM peak" in log
    for line in ("BucketPlan(strategy='optimal', buckets=3", "epoch 1/2, train loss",
                 "epoch 2/2, train loss", "valid perplexity", "checkpoint at global step 3",
                 "== summary =="):
        assert line in log, line
    assert "[bucketrnn.training.loop][INFO]" in log


@pytest.mark.parametrize("memory, note", [("shared", True), ("dynamic", False)])
def test_fused_model_runs_and_shared_memory_gets_a_note(tmp_path, capsys, memory, note):
    summary = run(_compose("model.cell=fused", f"memory={memory}", "trainer.epochs=1",
                           "plots=false"), str(tmp_path), stream=sys.stdout)
    assert summary["valid"]["perplexity"] > 1
    out = capsys.readouterr().out
    assert ("note: model.cell=fused with memory.policy=shared" in out) is note


def test_a_diverged_run_ends_in_an_error_with_its_summary(tmp_path):
    from bucketrnn.errors import DivergedError

    with pytest.raises(DivergedError, match=r"the run diverged: valid loss .* is more than 10 "
                                            r"times the loss of a uniform guess among \d+ .*"
                                            r"Lower trainer.lr \(it was 100000.0\)"):
        run(_compose("trainer.lr=1e5", "trainer.epochs=1", "plots=false"), str(tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["diverged"].startswith("valid loss")
    assert summary["valid"]["loss"] > 1e5
    # The perplexity of such a loss overflows: infinite, not a capped number.
    assert summary["valid"]["perplexity"] == float("inf")


def test_run_on_another_context(tmp_path):
    # cpu(1) is a context of its own to MXNet: batches, graphs and checkpoints must all use it
    # (what a GPU run needs, checked without a GPU).
    summary = run(_compose("trainer.context=cpu:1", "trainer.epochs=1", "plots=false"),
                  str(tmp_path))
    assert summary["valid"]["perplexity"] > 1


def test_resume_continues_the_run_and_matches_an_uninterrupted_one(tmp_path):
    run(_compose(), str(tmp_path / "whole"))
    first = tmp_path / "runs" / "a"
    run(_compose("trainer.max_steps=4"), str(first))  # stops mid-epoch 0 with a checkpoint
    assert ckpt.load(str(first / "checkpoint.npz")).meta["global_step"] == 4
    # resume=true finds the newest checkpoint among sibling run directories.
    summary = run(_compose("resume=true"), str(tmp_path / "runs" / "b"))
    assert summary["run_dir"] == str(first) and summary["resumed"]
    a = ckpt.load(str(tmp_path / "whole" / "checkpoint.npz")).params
    b = ckpt.load(str(first / "checkpoint.npz")).params
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_restores_the_runs_own_config(tmp_path, two_steps):
    first = TINY + ["trainer.max_steps=2", "plots=false"]
    two_steps(tmp_path)  # the run of `first` (its overrides are read on resume only)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 12 and saved["trainer"]["max_steps"] == 2

    def again(*overrides):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
        return run(cfg, str(tmp_path / "elsewhere"), overrides=list(overrides))

    # Only what changes: the original overrides (a 12-unit model, 60 sentences...) come back.
    summary = again(f"resume={tmp_path}", "trainer.max_steps=4", "trainer.progress=false")
    assert summary["steps"] == 4 and summary["config"]["model"]["hidden_size"] == 12
    assert summary["config"]["dataset"]["limit"] == 60
    with pytest.raises(ValueError, match=r"model.hidden_size cannot change when a run is "
                                         r"resumed: the run has model.hidden_size=12"):
        again(f"resume={tmp_path}", "model.hidden_size=16")
    with pytest.raises(ValueError, match=r"'model=gru_lm' does not fit the resumed run: its "
                                         r"model group differs in model.name='lstm_lm' \(now "
                                         r"'gru_lm'\), model.mode='lstm' \(now 'gru'\), "
                                         r"model.hidden_size=12 \(now 200\)"):
        again(f"resume={tmp_path}", "model=gru_lm")
    # The groups the run has are fine: its own command again, with resume=true.
    summary = again(*first, "model=lstm_lm", "trainer.max_steps=6", f"resume={tmp_path}")
    assert summary["steps"] == 6 and summary["config"]["model"]["hidden_size"] == 12
    with pytest.raises(ValueError, match=r"model group differs in model.hidden_size=12 "
                                         r"\(now 200\), model.num_layers=1 \(now 2\)"):
        again("model=lstm_lm", f"resume={tmp_path}")
    for damaged in ('{"model": ', "[1, 2]", '{"dataset": {}, "model": {"hidden": 1}, '
                    '"bucketing": {}, "trainer": {}, "memory": {}}'):
        (tmp_path / "config.json").write_text(damaged)
        with pytest.raises(ValueError, match="config.json' is not a config written by bucketrnn"
                                             "|config.json. does not fit"):
            again(f"resume={tmp_path}")


def test_a_saved_config_is_never_evaluated(tmp_path, monkeypatch, two_steps):
    two_steps(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    monkeypatch.setenv("BUCKETRNN_SECRET", "s3cr3t")
    for section, key, value in (("dataset", "path", "${oc.env:BUCKETRNN_SECRET}/x.txt"),
                                ("trainer", "optimizer_params", {"beta1": "${seed}"})):
        crafted = json.loads(json.dumps(saved))
        crafted[section][key] = value
        (tmp_path / "config.json").write_text(json.dumps(crafted))
        with pytest.raises(ValueError, match=rf"config.json' is not a config written by "
                                             rf"bucketrnn: {section}.{key}.* holds an "
                                             r"interpolation") as e:
            run(_compose(f"resume={tmp_path}"), str(tmp_path / "new"),
                overrides=[f"resume={tmp_path}"])
        assert "s3cr3t" not in str(e.value)


@pytest.mark.parametrize("name", ["config.json", "vocab.json"])
def test_a_run_file_that_is_not_a_regular_file_is_named_not_skipped(tmp_path, name, two_steps):
    # A link to /dev/zero used to be skipped (os.path.isfile is False): config.json was then
    # silently not restored, vocab.json not checked. Now it is refused, never read.
    two_steps(tmp_path)
    (tmp_path / name).unlink()
    (tmp_path / name).symlink_to("/dev/zero")
    with pytest.raises(ValueError, match=rf"{name}' is not a .* written by bucketrnn: it is not "
                                         r"a regular file \(a character device\)"):
        run(_compose(f"resume={tmp_path}", "trainer.max_steps=3"), str(tmp_path / "x"),
            overrides=[f"resume={tmp_path}", "trainer.max_steps=3"])


def test_a_damaged_metrics_file_does_not_cost_the_summary(tmp_path):
    run(_compose("trainer.max_steps=2"), str(tmp_path), overrides=TINY + ["trainer.max_steps=2"])
    metrics = tmp_path / "metrics.jsonl"
    first, rest = metrics.read_text().split("\n", 1)
    # Same length, so the checkpoint's metrics offset still falls on a line end.
    metrics.write_text('{"kind": "step", "loss": [1, 2]}'.ljust(len(first)) + "\n" + rest)
    summary = run(_compose(f"resume={tmp_path}", "trainer.max_steps=3"), str(tmp_path / "x"),
                  overrides=[f"resume={tmp_path}", "trainer.max_steps=3"])
    assert summary["steps"] == 3 and "plots" not in summary
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3
    assert "warning: plots not drawn" in (tmp_path / "bucketrnn.log").read_text()


def test_checkpoint_from_another_config_is_refused(tmp_path, two_steps):
    two_steps(tmp_path)
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    with pytest.raises(StateMismatchError, match=r"model\.hidden_size: checkpoint 12, now 16"):
        run(_compose(f"resume={tmp_path}", "model.hidden_size=16"), str(tmp_path / "new"))
    assert {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)} == before
    with pytest.raises(FileExistsError, match="already holds a run"):
        run(_compose("plots=false"), str(tmp_path))


def test_a_second_run_in_a_locked_directory_is_refused(tmp_path, lock_holder, two_steps):
    def files():
        return {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path) if p != ".lock"}

    two_steps(tmp_path)
    before = files()
    holder = lock_holder(tmp_path)  # as if the run were still training
    with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}"):
        run(_compose("resume=true", "plots=false"), str(tmp_path))
    assert files() == before
    fresh = lock_holder(tmp_path / "fresh")
    with pytest.raises(RunLockedError, match=f"in use by process {fresh.pid}"):
        run(_compose("plots=false"), str(tmp_path / "fresh"))
    assert os.listdir(tmp_path / "fresh") == [".lock"]


@pytest.mark.parametrize("override, key", [
    ("bucketing.num_bucket=3", "num_bucket"),
    ("model.cell=lstm", "cell"),
    ("trainer.lr=fast", "lr"),
    ("trainr.lr=0.1", "trainr"),
])
def test_bad_override_names_the_key(override, key):
    with pytest.raises(ConfigCompositionException) as e:
        _compose(override)
    assert key in _errors(e.value)


@pytest.mark.parametrize("overrides, match", [
    (["bucketing.num_buckets=0"], "bucketing.num_buckets must be >= 1"),
    (["model.mode=gru"], "model.mode must be 'lstm' for model=lstm_lm"),
    (["model.embed_size=5"], "model.embed_size must be null or model.hidden_size=12 while "
                             "model.tie_weights=true"),
    (["model=classifier"], "dataset.label must be set exactly when model=classifier"),
    (["trainer.context=tpu"], "trainer.context must be 'cpu', 'gpu' or 'gpu\\(i\\)'"),
    (["bucketing.strategy=fixed"], "bucketing.boundaries must be given"),
    (["dataset=text"], "dataset.path is required"),
    (["trainer.kvstore=devcie"], "trainer.kvstore must be one of local, device"),
    (["trainer.optimizer=adamm"], "trainer.optimizer must be one of sgd, nag, adam"),
    (["trainer.context=gpu:7"], "trainer.context names a GPU this machine does not have"),
    (["trainer.context=cpu:4294967297"], "trainer.context device index must be < 1024"),
    (["dataset.path=corpus.txt"], "dataset.path is read by dataset=text, tagged or pairs only"),
    (["seed=-5"], r"seed must be an integer >= 0, got seed=-5"),
    (["dataset.min_count=0"], r"dataset.min_count must be >= 1 .*, got dataset.min_count=0"),
    (["model.embed_size=0"], r"model.embed_size must be null \(model.hidden_size\) or >= 1, "
                             r"got model.embed_size=0"),
    (["+trainer.optimizer_params.foo=1"], r"trainer.optimizer_params=\{'foo': 1\} do not fit "
                                          r"trainer.optimizer='adam': .*'foo'"),
    (["+trainer.optimizer_params.lr_scheduler=x"],
     r"trainer.optimizer_params.lr_scheduler cannot be given: a checkpoint cannot hold it"),
    (["+trainer.optimizer_params.beta1=x"],
     r"trainer.optimizer_params.beta1 must be a number or true/false, got "
     r"trainer.optimizer_params.beta1='x'"),
    (["+trainer.optimizer_params.learning_rate=0.1"],
     r"trainer.optimizer_params.learning_rate is set by trainer.lr"),
    (["model.hidden_size=100000"], r"model.hidden_size makes a lstm weight matrix of 4 gates x "
                                   r"100000 x 100000 = 40000000000 elements, more than MXNet's "
                                   r"limit of 2147483647"),
    (["model=gru_lm", "model.cell=fused", "model.hidden_size=8000", "model.num_layers=12"],
     r"model.hidden_size with model.cell=fused makes the fused operator's one parameter array"),
    (["bucketing.batch_size=1000000000"],
     r"bucketing.batch_size makes each step's lstm gate array 1000000000 rows x 4 gates x 12 = "
     r"48000000000 elements, more than MXNet's limit"),
    # Known once the data gave the vocabulary, still before anything is written.
    (["model.tie_weights=false", "model.hidden_size=1", "model.embed_size=300000000"],
     r"model.embed_size=300000000 with \d+ words makes a \d+ x 300000000 = \d+ element "
     r"weight matrix, more than MXNet's limit"),
])
def test_bad_values_name_the_key(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match):
        run(_compose(*overrides), str(tmp_path))
    assert not os.listdir(tmp_path)


def test_text_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.path=.*missing.txt"):
        run(_compose("dataset=text", f"dataset.path={tmp_path}/missing.txt"), str(tmp_path / "r"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="has no sequences"):
        run(_compose("dataset=text", f"dataset.path={empty}"), str(tmp_path / "r"))
    long = tmp_path / "long.txt"
    long.write_text("a b c d e\nf g h i j k\n")
    with pytest.raises(ValueError, match="no sequences of at most max_length=2"):
        run(_compose("dataset=text", f"dataset.path={long}", "dataset.max_length=2",
                     "dataset.on_overflow=drop"),
            str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_text_classifier_run(tmp_path):
    lines = [("pos " if i % 2 else "neg ") + " ".join("abcdefgh"[: 2 + i % 6]) for i in range(60)]
    corpus = tmp_path / "labelled.txt"
    corpus.write_text("\n".join(lines) + "\n")
    summary = run(_compose("dataset=text", f"dataset.path={corpus}", "model=classifier",
                           "dataset.label=first_token", "model.hidden_size=8", "plots=false"),
                  str(tmp_path / "run"))
    assert 0.0 <= summary["valid"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "vocab.json").is_file()


def test_plan_describes_without_training(tmp_path):
    text = describe(_compose("bucketing.num_buckets=4"))
    assert "BucketPlan(strategy='optimal', buckets=4" in text
    assert "padding to the longest" in text and "valid:" in text


def test_cli_multirun_and_compare(tmp_path):
    """The real command line: a two-run sweep, the comparison table, then the documented
    relaunch of the sweep with resume=true (each job continues its own directory)."""
    sweep = tmp_path / "multirun"
    tiny = [o for o in TINY if not o.startswith("bucketing.num_buckets")]
    cmd = [sys.executable, "-m", "bucketrnn", "-m", "dataset=ptb", "bucketing.num_buckets=1,3",
           "plots=false", f"hydra.sweep.dir={sweep}"] + tiny
    done = subprocess.run(cmd + ["trainer.max_steps=3"], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    # MXNet's "Subgraph backend MKLDNN is activated", once per bound graph, is silenced.
    assert "Subgraph backend" not in done.stderr + done.stdout
    # Hydra writes no .hydra/ into a run directory (it would before the app takes the lock).
    assert not any((sweep / job / ".hydra").exists() for job in ("0", "1"))
    rows = collect(str(sweep))
    assert sorted(r["config"]["bucketing"]["num_buckets"] for r in rows) == [1, 3]
    text = table(rows)
    # The settings that differ between the runs, from their own summaries; nothing common.
    assert "bucketing.num_buckets=1" in text and "bucketing.num_buckets=3" in text
    assert "trainer.max_steps" not in text and "dataset.limit" not in text
    # The same command with resume=true (a group override included) continues both jobs.
    again = subprocess.run(cmd + ["trainer.max_steps=4", "resume=true"], cwd=ROOT,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = collect(str(sweep))
    assert [(r["steps"], r["resumed"]) for r in rows] == [(4, True), (4, True)]
    out = subprocess.run([sys.executable, "-m", "bucketrnn.app.compare", str(sweep)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "valid" in out.stdout
    assert "bucketing.num_buckets=3" in out.stdout


def test_compare_shows_the_settings_that_differ():
    from bucketrnn.app.compare import settings

    base = {"plan": {"waste": 0.1}, "graphs_compiled": 1, "tokens_per_s": 10.0,
            "train_seconds": 2.0}
    rows = [{**base, "name": str(i), "config": {"model": {"hidden_size": h, "cell": "unrolled"},
                                                "trainer": {"optimizer_params": p},
                                                "resume": r}}
            for i, (h, p, r) in enumerate([(8, {}, ""), (16, {"beta1": 0.8}, "true")])]
    assert settings(rows) == [["model.hidden_size=8", "trainer.optimizer_params.beta1=<absent>"],
                              ["model.hidden_size=16", "trainer.optimizer_params.beta1=0.8"]]
    assert "model.hidden_size=16 trainer.optimizer_params.beta1=0.8" in table(rows)


def test_cli_bad_override_exits_with_the_key(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bucketrnn", "bucketing.num_bucket=3",
                           f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "num_bucket" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_cli_bad_input_is_one_clear_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bucketrnn", "dataset=text",
                           f"dataset.path={tmp_path}/absent.txt", f"hydra.run.dir={tmp_path}/r"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error: dataset.path=" in done.stderr and "absent.txt" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()  # Hydra made it; a refused run leaves nothing
    mine = tmp_path / "mine"  # a directory the user had: kept, whatever happens
    mine.mkdir()
    done = subprocess.run([sys.executable, "-m", "bucketrnn", "trainer.optimizer=adamx",
                           f"hydra.run.dir={mine}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and mine.is_dir()
    done = subprocess.run([sys.executable, "-m", "bucketrnn", "trainer.optimizer=adamx"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "outputs").exists()


def test_a_refused_command_keeps_every_directory_the_user_had(tmp_path):
    # Quoted or interpolated paths, sweep job directories, a nested outputs/, and a planted
    # log link: nothing the user had is removed, and nothing is written through the link.
    (tmp_path / "quoted").mkdir()
    (tmp_path / "sweep" / "0").mkdir(parents=True)
    (tmp_path / "other" / "outputs").mkdir(parents=True)
    (tmp_path / "planted").mkdir()
    (tmp_path / "planted" / "bucketrnn.log").symlink_to(tmp_path / "victim.txt")
    for args in (['hydra.run.dir="quoted"'], ["hydra.run.dir=${oc.env:PWD}/quoted"],
                 ["-m", "hydra.sweep.dir=sweep"], ["hydra.run.dir=other/outputs/new"],
                 ["hydra.run.dir=planted"]):
        done = subprocess.run([sys.executable, "-m", "bucketrnn", "trainer.optimizer=adamx",
                               *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PWD": str(tmp_path)})
        assert done.returncode != 0, args
    for kept in ("quoted", "sweep/0", "other/outputs", "planted"):
        assert (tmp_path / kept).is_dir(), kept
    assert not (tmp_path / "other" / "outputs" / "new").exists()
    assert not (tmp_path / "victim.txt").exists() and not os.listdir(tmp_path / "quoted")


def test_the_log_is_written_by_the_lock_holder_only_and_never_through_a_link(tmp_path,
                                                                          lock_holder):
    live = tmp_path / "live"
    lock_holder(live)
    (live / "bucketrnn.log").write_text("the live run's log\n")
    done = subprocess.run([sys.executable, "-m", "bucketrnn", f"hydra.run.dir={live}"] + TINY,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "in use by process" in done.stderr
    assert (live / "bucketrnn.log").read_text() == "the live run's log\n"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "bucketrnn.log").symlink_to(victim)
    with pytest.raises(OSError, match="bucketrnn.log"):
        run(_compose("plots=false"), str(tmp_path / "run"))
    assert victim.read_text() == "precious\n"


def test_cli_resume_leaves_no_directory_of_its_own(tmp_path, two_steps):
    first = two_steps(tmp_path / "first")
    done = subprocess.run([sys.executable, "-m", "bucketrnn", f"resume={first}",
                           "trainer.max_steps=3"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((first / "summary.json").read_text())["steps"] == 3
    assert sorted(os.listdir(tmp_path)) == ["first"]  # no outputs/<date>/ beside it


def test_find_resume_dir(tmp_path):
    from bucketrnn.app.run import find_resume_dir

    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "checkpoint.npz").write_bytes(b"")
    (tmp_path / "b" / "checkpoint.npz").write_bytes(b"")
    os.utime(tmp_path / "a" / "checkpoint.npz", (1, 1))
    assert find_resume_dir("", str(tmp_path / "c")) is None
    assert find_resume_dir("true", str(tmp_path / "c")) == str(tmp_path / "b")  # newest
    assert find_resume_dir("true", str(tmp_path / "a")) == str(tmp_path / "a")  # its own
    assert find_resume_dir(str(tmp_path / "a"), str(tmp_path / "c")) == str(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="no checkpoint.npz in"):
        find_resume_dir(str(tmp_path / "c"), str(tmp_path / "c"))
    # A run that has not written its first checkpoint is not swapped for a sibling run.
    (tmp_path / "c" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no checkpoint.npz yet"):
        find_resume_dir("true", str(tmp_path / "c"))


def test_plan_cli_bad_override(capsys):
    from bucketrnn.app.plan import main

    assert main(["resume=true"]) == 2
    assert "continues a run in the app" in capsys.readouterr().err

    assert main(["bucketing.num_bucket=3"]) == 2
    err = capsys.readouterr().err
    assert "Key 'num_bucket' not in 'BucketingConfig'" in err
    assert main(["model.cell=x"]) == 2
    assert "full_key: model.cell" in capsys.readouterr().err


@pytest.mark.parametrize("name, mode", [("lstm_lm", "lstm"), ("gru_lm", "gru")])
def test_language_model_cells_follow_the_model_name(name, mode):
    from bucketrnn.app.config import to_dict
    from bucketrnn.models import build_model

    block = build_model(to_dict(_compose(f"model={name}").model), vocab_size=20,
                        num_classes=None)(5)
    assert block.encoder.mode == mode


def test_config_choices_are_the_library_choices():
    from bucketrnn.app import config
    from bucketrnn.data import plan as buckets
    from bucketrnn.data import sampler
    from bucketrnn.graphs import cache as graphs
    from bucketrnn.models import encoder

    def values(enum):
        return tuple(e.value for e in enum)

    assert set(values(config.Strategy)) == set(buckets.STRATEGIES)
    assert set(values(config.LastBatch)) == set(sampler.LAST_BATCH)
    assert set(values(config.Overflow)) == set(sampler.ON_OVERFLOW)
    assert set(values(config.MemoryPolicy)) == set(graphs.MEMORY)
    assert set(values(config.Mode)) == set(encoder.MODES)
    assert set(values(config.Cell)) == set(encoder.CELLS)


@pytest.mark.parametrize("label, lines, extra, match", [
    ("first_token", ["pos a b", "pos c d e", "pos b c"] * 20, [],
     "every training line starts with 'pos'"),
    ("contains:a", ["a b c", "c a", "b a d"] * 20, [], "every training sequence contains 'a'"),
    # z is in the vocabulary (the whole training file) but not in the first 30 lines kept.
    ("contains:z", ["a b c", "c a", "b a d"] * 10 + ["z a b"] * 3, ["dataset.limit=30"],
     "every training sequence lacks 'z'"),
])
def test_a_classifier_with_one_class_is_refused(tmp_path, label, lines, extra, match):
    corpus = tmp_path / "one.txt"
    corpus.write_text("\n".join(lines) + "\n")
    held = tmp_path / "held.txt"
    held.write_text("pos a b\nneg a z\n" if label == "first_token" else "a b z\nb c\n")
    with pytest.raises(ValueError, match=rf"dataset.label='{label}' gives 1 class in the "
                                         rf"training split \({match}\): a classifier needs at "
                                         "least 2 classes"):
        run(_compose("dataset=text", f"dataset.path={corpus}", f"dataset.valid_path={held}",
                     "model=classifier", f"dataset.label={label}", *extra),
            str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_resume_never_rewrites_the_vocabulary(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join("abcdefgh"[: 2 + i % 6]) for i in range(60)) + "\n")
    text = ["dataset=text", f"dataset.path={corpus}", "plots=false"]
    run_dir = tmp_path / "run"
    run(_compose(*text, "trainer.max_steps=2"), str(run_dir))
    vocab = run_dir / "vocab.json"
    # The same words in another layout: resuming checks it and leaves it as it is.
    vocab.write_text(json.dumps(json.loads(vocab.read_text()), indent=2))
    kept = vocab.read_bytes()
    assert run(_compose(*text, "trainer.max_steps=3", "resume=true"), str(run_dir))["steps"] == 3
    assert vocab.read_bytes() == kept
    # The data changed: new words, other ids. Refused naming the file, which stays as it was.
    corpus.write_text("\n".join(" ".join("zyxwvuts"[: 2 + i % 6]) for i in range(60)) + "\n")
    with pytest.raises(ValueError, match=r"vocab.json' does not match the vocabulary built from "
                                         r"the data now .* the data changed since the run "
                                         "started"):
        run(_compose(*text, "trainer.max_steps=4", "resume=true"), str(run_dir))
    assert vocab.read_bytes() == kept


@pytest.mark.parametrize("damaged", ["[]", '{"wall_seconds": "1e9"}', '{"wall_seconds": NaN}',
                                     '{"wall', "\xff"])
def test_a_damaged_earlier_summary_does_not_lose_the_training(tmp_path, caplog, damaged,
                                                              two_steps):
    two_steps(tmp_path)
    (tmp_path / "summary.json").write_bytes(damaged.encode("latin-1"))
    summary = run(_compose("trainer.max_steps=3", "plots=false", "resume=true"), str(tmp_path))
    assert summary["steps"] == 3 and 0 < summary["wall_seconds"] < 1e6
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3
    assert "ignoring the earlier" in caplog.text and "summary.json" in caplog.text


def test_cli_on_a_live_run_directory_writes_nothing_there(tmp_path, lock_holder):
    live = tmp_path / "live"
    live.mkdir()
    (live / "config.json").write_text("{}")
    holder = lock_holder(live)  # a run training in there
    done = subprocess.run([sys.executable, "-m", "bucketrnn", *TINY, "plots=false",
                           f"hydra.run.dir={live}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and f"in use by process {holder.pid}" in done.stderr
    # Hydra's .hydra/ (config.yaml, overrides.yaml) is not written over the live run's files.
    assert sorted(p for p in os.listdir(live) if p != "bucketrnn.log") == [".lock", "config.json"]
    assert (live / "config.json").read_text() == "{}"


def _readonly_dir(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("where", ["below a file", "read-only", "multirun below a file"])
def test_a_run_directory_that_cannot_be_made_is_one_clear_line(tmp_path, where):
    # Hydra makes the run directory before the app runs; its own traceback was all a user got.
    if where == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only directory (a directory below a file fails "
                    "for root too)")
    (tmp_path / "afile").write_text("")
    parent = _readonly_dir(tmp_path) if where == "read-only" else tmp_path / "afile"
    key = "hydra.sweep.dir" if where.startswith("multirun") else "hydra.run.dir"
    args = ["-m"] if where.startswith("multirun") else []
    done = subprocess.run([sys.executable, "-m", "bucketrnn", *args, f"{key}={parent}/run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot make the run directory "
                                                   f"'{parent}/run' ({key}): "), lines
    assert "HYDRA_FULL_ERROR" not in done.stderr and "Traceback" not in done.stderr


def test_a_run_saved_before_lr_schedule_existed_resumes_on_its_own_schedule(tmp_path):
    first = TINY + ["trainer.max_steps=2", "plots=false", "trainer.lr_schedule=epoch"]
    run(_compose("trainer.max_steps=2", "plots=false", "trainer.lr_schedule=epoch"),
        str(tmp_path), overrides=first)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["trainer"]["lr_schedule"]  # as a run of an older bucketrnn wrote it
    saved["trainer"]["lr_decay"] = 0.5
    (tmp_path / "config.json").write_text(json.dumps(saved))
    overrides = [f"resume={tmp_path}", "trainer.max_steps=4", "trainer.progress=false"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    summary = run(cfg, str(tmp_path / "elsewhere"), overrides=overrides)
    assert summary["steps"] == 4 and summary["config"]["trainer"]["lr_schedule"] == "epoch"
    assert summary["config"]["trainer"]["lr_decay"] == 0.5
    # Its own per-epoch factor typed again (a sweep relaunched with its -m values) is its own.
    overrides = [f"resume={tmp_path}", "trainer.max_steps=6", "trainer.lr_decay=0.5",
                 "trainer.progress=false"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    assert run(cfg, str(tmp_path / "elsewhere"), overrides=overrides)["steps"] == 6


def test_accumulate_trains_and_resumes_like_an_uninterrupted_run(tmp_path):
    run(_compose("trainer.accumulate=2", "plots=false"), str(tmp_path / "whole"))
    first = TINY + ["trainer.accumulate=2", "trainer.max_steps=3", "plots=false"]
    summary = run(_compose(*first[len(TINY):]), str(tmp_path / "run"), overrides=first)
    assert summary["steps"] == 4  # max_steps rounds up to a whole update
    assert summary["updates"] == 2  # the summary counts both
    assert summary["config"]["trainer"]["accumulate"] == 2
    meta = ckpt.load(str(tmp_path / "run" / "checkpoint.npz")).meta
    assert (meta["global_step"], meta["accumulate"]) == (4, 2)

    def again(*overrides):
        cfg = compose_config(*overrides)
        return run(cfg, str(tmp_path / "elsewhere"), overrides=list(overrides))

    with pytest.raises(ValueError, match=r"trainer.accumulate cannot change when a run is "
                                         r"resumed: the run has trainer.accumulate=2"):
        again(f"resume={tmp_path / 'run'}", "trainer.accumulate=1")
    summary = again(f"resume={tmp_path / 'run'}", "trainer.max_steps=null",
                    "trainer.progress=false")
    assert summary["resumed"] and summary["config"]["trainer"]["accumulate"] == 2
    a = ckpt.load(str(tmp_path / "whole" / "checkpoint.npz"))
    b = ckpt.load(str(tmp_path / "run" / "checkpoint.npz"))
    assert a.meta["global_step"] == b.meta["global_step"] > 4
    assert b.meta["history"]["updates"] == a.meta["history"]["updates"]
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)


def test_a_run_saved_before_accumulate_existed_resumes_one_batch_per_update(tmp_path,
                                                                               two_steps):
    two_steps(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["trainer"]["accumulate"]  # as a run of an older bucketrnn wrote it
    (tmp_path / "config.json").write_text(json.dumps(saved))
    overrides = [f"resume={tmp_path}", "trainer.max_steps=3", "trainer.progress=false"]
    summary = run(compose_config(*overrides), str(tmp_path / "elsewhere"), overrides=overrides)
    assert summary["steps"] == 3 and summary["config"]["trainer"]["accumulate"] == 1
    assert ckpt.load(str(tmp_path / "checkpoint.npz")).meta["accumulate"] == 1
