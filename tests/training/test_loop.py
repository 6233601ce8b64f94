"""TrainLoop: a tiny end-to-end run, exact resume after a crash, refusal of another config."""

import json
import os

import numpy as np
import pytest
from _resume import _Poison

from bucketrnn import StateMismatchError
from bucketrnn.data.loader import BucketLoader
from bucketrnn.models import LanguageModel, SequenceClassifier
from bucketrnn.training.loop import TrainLoop


def _sequences(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 20, size=int(rng.integers(3, 14))).tolist() for _ in range(n)]


def _loop(run_dir, seqs, fingerprint=None, **kw):
    loader = BucketLoader(seqs, batch_size=4, num_buckets=3, seed=5)
    # dropout > 0: resuming must also reproduce the dropout masks.
    build = LanguageModel.factory(vocab_size=20, hidden_size=8, num_layers=2, dropout=0.3)
    args = dict(epochs=3, checkpoint_every=3, log_every=1, progress=False, seed=11,
                optimizer_params={"learning_rate": 0.01}, clip_norm=1.0,
                fingerprint=fingerprint or {"model.hidden_size": 8})
    args.update(kw)
    return TrainLoop(build, loader, run_dir=None if run_dir is None else str(run_dir), **args)


def _params(loop):
    return {n: p.data().asnumpy() for n, p in loop.params.items()}


def _records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [(r["kind"], r["global_step"], r.get("loss", r.get("train_loss"))) for r in rows]


def test_tiny_run_writes_metrics_and_checkpoint(tmp_path):
    seqs = _sequences()
    loop = _loop(tmp_path, seqs, epochs=2, memory="static")
    valid = BucketLoader(seqs[:8], batch_size=4, strategy="fixed",
                         boundaries=list(loop.loader.plan.boundaries), shuffle=False)
    history = loop.fit(valid)
    assert [r["epoch"] for r in history["epochs"]] == [0, 1]
    assert history["epochs"][-1]["valid_perplexity"] > 1
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == loop.global_step
    assert {"loss", "perplexity", "tokens_per_s", "padded_fraction", "graphs_compiled"} <= set(
        steps[0])
    assert 0 <= steps[0]["padded_fraction"] < 1
    assert records[-1]["kind"] == "epoch" and records[-1]["graphs_compiled"] <= 4
    assert (tmp_path / "checkpoint.npz").is_file()
    result = loop.evaluate(valid)
    assert result["perplexity"] == pytest.approx(history["epochs"][-1]["valid_perplexity"])


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path):
    seqs = _sequences()
    whole = _loop(tmp_path / "whole", seqs)
    whole.fit()

    crashed = _loop(tmp_path / "crashed", seqs)
    steps_per_epoch = crashed.loader.sampler.num_batches(0)
    crash_at = steps_per_epoch + 4  # mid-epoch 1, one logged step after the checkpoint
    step = crashed.train_step

    def train_step(batch):
        if crashed.global_step == crash_at:
            raise KeyboardInterrupt("simulated crash")
        return step(batch)

    crashed.train_step = train_step
    assert crash_at % 3 != 0  # checkpoint_every=3: the last checkpoint is behind the crash
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()

    resumed = _loop(tmp_path / "crashed", seqs)  # a fresh process would build it like this
    resumed.fit(resume=True)
    assert resumed.global_step == whole.global_step
    a, b = _params(whole), _params(resumed)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert _records(tmp_path / "crashed") == _records(tmp_path / "whole")


def test_checkpoint_from_another_config_is_refused_and_kept(tmp_path):
    seqs = _sequences(16)
    _loop(tmp_path, seqs, epochs=1).fit()
    path = tmp_path / "checkpoint.npz"
    before = path.read_bytes()
    other = _loop(tmp_path, seqs, fingerprint={"model.hidden_size": 16})
    with pytest.raises(StateMismatchError, match=r"model\.hidden_size: checkpoint 8, now 16"):
        other.fit(resume=True)
    assert path.read_bytes() == before


def test_checkpoint_for_other_data_is_refused(tmp_path):
    _loop(tmp_path, _sequences(16), epochs=1).fit()
    other = _loop(tmp_path, _sequences(16, seed=1))
    with pytest.raises(StateMismatchError, match="another dataset or configuration"):
        other.fit(resume=True)


def test_classifier_reports_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    data = [(rng.integers(1, 9, size=int(rng.integers(2, 9))), int(i % 2)) for i in range(24)]
    loader = BucketLoader(data, batch_size=4, num_buckets=2, seed=0)
    build = SequenceClassifier.factory(num_classes=2, vocab_size=10, hidden_size=8,
                                       outputs=("loss", "logits"))
    loop = TrainLoop(build, loader, epochs=1, progress=False)
    loop.fit()
    result = loop.evaluate(loader)
    # Recount from the logits: real rows only (weight 1), each example once.
    loader.set_epoch(0)
    right = rows = 0
    for batch in loader:
        real = batch.weight.asnumpy() > 0
        pred = loop.graphs(batch)[1].asnumpy().argmax(axis=-1)
        right += int((pred == batch.label.asnumpy())[real].sum())
        rows += int(real.sum())
    assert rows == len(data)
    assert result["accuracy"] == pytest.approx(right / rows) and result["loss"] > 0


@pytest.mark.parametrize("kw, error, match", [
    ({"epochs": 0}, ValueError, "epochs must be an integer >= 1, got epochs=0"),
    ({"max_steps": 0}, ValueError, "max_steps must be an integer >= 1, got max_steps=0"),
    ({"max_steps": True}, TypeError, "max_steps must be None or an int, got max_steps=True"),
    ({"clip_norm": -1.0}, ValueError, "clip_norm must be None or a finite number > 0"),
    ({"checkpoint_every": -1}, ValueError, "checkpoint_every must be an integer >= 0"),
    # gluon.Trainer takes any string for one context and trains without a store.
    ({"kvstore": "devcie"}, ValueError, "kvstore must be one of 'local', 'device'"),
])
def test_bad_arguments(tmp_path, kw, error, match):
    with pytest.raises(error, match=match):
        _loop(tmp_path, _sequences(8), **kw)


def test_numpy_integers_are_integers(tmp_path):
    loop = _loop(tmp_path, _sequences(8), epochs=np.int64(2), max_steps=np.int32(3))
    assert loop.epochs == 2 and loop.max_steps == 3 and type(loop.epochs) is int


def test_a_run_directory_held_by_another_process_is_refused(tmp_path, lock_holder):
    from bucketrnn.training.rundir import RunLockedError

    holder = lock_holder(tmp_path)
    loop = _loop(tmp_path, _sequences(8))
    with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}"):
        loop.fit()
    assert loop.global_step == 0 and not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.parametrize("bad, match", [(25, "token id 25, outside \\[0, 20\\)"),
                                        (-2, "token id -2")])
@pytest.mark.parametrize("as_cache", [False, True])
def test_the_models_vocabulary_guards_the_loaders_batches(tmp_path, bad, match, as_cache):
    from bucketrnn.graphs.cache import GraphCache

    seqs = _sequences(12)
    seqs[7] = seqs[7][:2] + [bad] + seqs[7][3:]
    loader = BucketLoader(seqs, batch_size=4, num_buckets=3, seed=5)  # no vocab_size given
    build = LanguageModel.factory(vocab_size=20, hidden_size=8, num_layers=1)
    model = GraphCache(build) if as_cache else build  # the model's vocabulary is 20 either way
    loop = TrainLoop(model, loader, run_dir=str(tmp_path), progress=False)
    assert loop.loader.vocab_size == 20
    with pytest.raises(ValueError, match=f"example 7 has {match}"):
        loop.fit()


def test_ctrl_c_stops_after_the_step_with_a_checkpoint(tmp_path):
    import signal

    from bucketrnn.training import checkpoint as ckpt
    seqs = _sequences()
    whole = _loop(tmp_path / "whole", seqs, epochs=2)
    whole.fit()
    loop = _loop(tmp_path / "run", seqs, epochs=2)
    step = loop.train_step

    def train_step(batch):
        tally = step(batch)
        if loop.global_step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C mid-step
        return tally

    loop.train_step = train_step
    with pytest.raises(KeyboardInterrupt, match="SIGINT after step 5: checkpoint saved"):
        loop.fit()
    assert ckpt.load(str(tmp_path / "run" / "checkpoint.npz")).meta["global_step"] == 5
    resumed = _loop(tmp_path / "run", seqs, epochs=2)
    resumed.fit(resume=True)
    a, b = _params(whole), _params(resumed)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_graph_cache_brings_its_context_and_must_have_one():
    import mxnet as mx

    from bucketrnn import GraphCache

    loader = BucketLoader(_sequences(), batch_size=4, num_buckets=2, seed=0, ctx=mx.cpu(1))
    graphs = GraphCache(LanguageModel.factory(vocab_size=20, hidden_size=8), ctx=mx.cpu(1))
    loop = TrainLoop(graphs, loader, epochs=1, progress=False, clip_norm=1.0)
    assert loop.ctx == mx.cpu(1)
    loop.fit()
    two = GraphCache(LanguageModel.factory(vocab_size=20, hidden_size=8),
                     ctx=[mx.cpu(0), mx.cpu(1)])
    with pytest.raises(ValueError, match="TrainLoop runs on one context"):
        TrainLoop(two, loader, progress=False)


# ---------------------------------------------------------------- non-finite values
def _strict_json_lines(path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    with open(path) as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def _set_lr_after(loop, step_no, lr):
    """From global step ``step_no`` on, the schedule gives ``lr``."""
    rate = loop.learning_rate_at
    loop.learning_rate_at = lambda step, epoch=None: lr if step >= step_no else rate(step, epoch)


def test_an_infinite_learning_rate_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path):
    from bucketrnn.errors import NonFiniteError

    loop = _loop(tmp_path, _sequences(), epochs=1)
    _set_lr_after(loop, 3, float("inf"))  # the step-3 checkpoint is good
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(nan\) at global step 5") as e:
        loop.fit()
    assert (e.value.step, e.value.what) == (5, "loss")
    from bucketrnn.training import checkpoint as ckpt
    assert ckpt.load(str(tmp_path / "checkpoint.npz")).meta["global_step"] == 3
    assert len(_strict_json_lines(tmp_path / "metrics.jsonl")) == 4


def test_skip_stops_when_an_update_broke_the_parameters(tmp_path):
    from bucketrnn.errors import NonFiniteError

    loop = _loop(tmp_path, _sequences(), epochs=1, on_nonfinite="skip")
    _set_lr_after(loop, 3, float("inf"))  # step 4's update makes the parameters non-finite
    with pytest.raises(NonFiniteError, match=r"is non-finite at global step 5 .* an earlier "
                                             r"update broke it, so skipping steps cannot recover"):
        loop.fit()
    from bucketrnn.training import checkpoint as ckpt
    assert ckpt.load(str(tmp_path / "checkpoint.npz")).meta["global_step"] == 3


def test_non_finite_parameters_are_never_checkpointed(tmp_path):
    from bucketrnn.errors import NonFiniteError

    # No clipping: nothing sees the gradients; the parameters are checked before the write.
    loop = _loop(tmp_path, _sequences(), epochs=1, clip_norm=None, checkpoint_every=1,
                 optimizer="adam", optimizer_params={"learning_rate": float("inf")})
    with pytest.raises(NonFiniteError, match=r"after global step 1: .*param/.* holds non-finite"):
        loop.fit()
    assert not (tmp_path / "checkpoint.npz").exists()



def test_skip_drops_the_update_counts_it_and_writes_valid_json(tmp_path):
    loop = _loop(tmp_path, _sequences(), epochs=1, on_nonfinite="skip", log_every=2)
    loop.graphs = _Poison(loop, {4})
    seen = {}
    step = loop.train_step

    def train_step(batch):
        if loop.global_step in (4, 5):
            seen[loop.global_step] = ({n: p.data().asnumpy() for n, p in loop.params.items()},
                                      loop.trainer.optimizer.num_update)
        return step(batch)

    loop.train_step = train_step
    history = loop.fit()
    before, after = seen[4], seen[5]
    assert after[1] == before[1]  # no optimizer update
    for name in before[0]:
        np.testing.assert_array_equal(before[0][name], after[0][name], err_msg=name)
    assert history["skipped_steps"] == 1 and loop.global_step == loop.loader.sampler.num_batches(0)
    records = _strict_json_lines(tmp_path / "metrics.jsonl")
    assert sum(r["skipped_steps"] for r in records if r["kind"] == "step") == 1
    assert records[-1]["kind"] == "epoch" and records[-1]["skipped_steps"] == 1
    # The window holding the skipped step 5 reports its other step's loss.
    window = [r for r in records if r["kind"] == "step" and r["global_step"] >= 5][0]
    assert window["skipped_steps"] == 1 and window["loss"] > 0


def test_a_window_of_skipped_steps_has_a_null_loss(tmp_path):
    loop = _loop(tmp_path, _sequences(), epochs=1, on_nonfinite="skip", log_every=1)
    loop.graphs = _Poison(loop, {0})
    loop.fit()
    first = _strict_json_lines(tmp_path / "metrics.jsonl")[0]
    assert first["skipped_steps"] == 1 and first["loss"] is None


def test_on_nonfinite_is_checked():
    with pytest.raises(ValueError, match=r"on_nonfinite must be one of 'error', 'skip', got"):
        _loop(None, _sequences(8), on_nonfinite="ignore")


def test_the_app_config_offers_on_nonfinite():
    from omegaconf import OmegaConf

    from bucketrnn.app import config

    cfg = OmegaConf.structured(config.Config)
    assert cfg.trainer.on_nonfinite == "error"
    assert "trainer.on_nonfinite" not in config.fingerprint(cfg)  # resumable with skip
    cfg.trainer.on_nonfinite = "skip"
    config.validate(cfg)
    cfg.trainer.on_nonfinite = "ignore"
    with pytest.raises(ValueError, match=r"trainer.on_nonfinite must be one of \('error', "):
        config.validate(cfg)


def test_the_decayed_learning_rate_is_floored_where_mxnet_refuses_it(tmp_path):
    # 0.01 * 0.5 ** 130 is about 7e-42, below float32's range: MXNet refuses it ("Out of range
    # value for lr"), which crashed a long run at its 121st epoch.
    from bucketrnn.training.loop import MIN_LEARNING_RATE

    epoch_schedule = _loop(None, _sequences(), lr_schedule="epoch")
    assert epoch_schedule.learning_rate_at(0, 130) == MIN_LEARNING_RATE
    # lr_decay=1e-30: epoch 2's rate would be 1e-62; it trains at the floor instead of failing.
    loop = _loop(str(tmp_path / "run"), _sequences(), epochs=3, lr_schedule="epoch",
                 lr_decay=1e-30)
    assert loop.learning_rate_at(0, 1) == pytest.approx(0.01 * 1e-30)
    assert loop.learning_rate_at(0, 2) == MIN_LEARNING_RATE
    loop.fit()
    assert loop.epoch == 3


def test_the_learning_rate_follows_the_planned_steps_down_to_zero(tmp_path):
    # The default schedule spans the whole run: the full rate for the first half of its steps,
    # then a straight fall to zero, where halving every epoch left epoch 8 at 1/128.
    loop = _loop(str(tmp_path / "run"), _sequences(), epochs=3)
    loop.fit()
    per_epoch = loop.loader.num_batches(0)
    total = loop.planned_steps
    assert loop.lr_schedule == "warmdown" and total == 3 * per_epoch
    records = [r for r in _strict_json_lines(tmp_path / "run" / "metrics.jsonl")
               if r["kind"] == "step"]
    # A record's rate is its last step's (global step g ran at step index g - 1).
    for r in records:
        t = (r["global_step"] - 1) / total
        assert r["lr"] == pytest.approx(0.01 * min(1.0, (1 - t) / 0.5))
    rates = [r["lr"] for r in records]
    assert rates == sorted(rates, reverse=True) and rates[0] == 0.01 and rates[-1] < 0.01 * 0.1
    cosine = _loop(None, _sequences(), epochs=4, lr_schedule="cosine")
    cosine.planned_steps = 40
    assert [cosine.learning_rate_at(s) for s in (0, 10, 20, 40, 99)] == pytest.approx(
        [0.01, 0.01 * (1 + np.cos(np.pi / 4)) / 2, 0.005, 1e-30, 1e-30])
    straight = _loop(None, _sequences(), epochs=4, warmdown=1.0)
    straight.planned_steps = 40
    assert [straight.learning_rate_at(s) for s in (0, 10, 30, 40)] == pytest.approx(
        [0.01, 0.0075, 0.0025, 1e-30])
    old = _loop(None, _sequences(), epochs=4, lr_schedule="epoch")
    assert [old.learning_rate_at(0, e) for e in range(4)] == pytest.approx(
        [0.01, 0.005, 0.0025, 0.00125])


def test_a_per_epoch_factor_with_a_schedule_that_ignores_it_is_refused():
    with pytest.raises(ValueError, match=r"lr_decay=0.7 is the per-epoch factor of "
                                         r"lr_schedule='epoch'; lr_schedule='warmdown' "
                                         r"follows"):
        _loop(None, _sequences(), lr_decay=0.7)
    with pytest.raises(ValueError, match=r"warmdown=0.3 is the falling share of "
                                         r"lr_schedule='warmdown'; lr_schedule='cosine'"):
        _loop(None, _sequences(), lr_schedule="cosine", warmdown=0.3)
    with pytest.raises(ValueError, match=r"warmdown must be in \(0, 1\], got warmdown=0"):
        _loop(None, _sequences(), warmdown=0)
    with pytest.raises(ValueError, match=r"lr_schedule must be one of 'warmdown', 'cosine', "
                                         r"'epoch', got lr_schedule='step'"):
        _loop(None, _sequences(), lr_schedule="step")
    with pytest.raises(ValueError, match=r"lr_decay must be in \(0, 1\], got lr_decay=1.5"):
        _loop(None, _sequences(), lr_schedule="epoch", lr_decay=1.5)
    with pytest.raises(ValueError, match=r"schedule_steps must be"):
        _loop(None, _sequences(), schedule_steps=0)


def test_a_run_given_more_epochs_stretches_the_curve_from_where_it_stands(tmp_path):
    # Without schedule_steps the first part decays over its own epochs; resumed with more,
    # the rest of the run follows the longer curve from the step it stands at.
    first = _loop(str(tmp_path), _sequences(), epochs=1)
    first.fit()
    more = _loop(str(tmp_path), _sequences(), epochs=3)
    more.fit(resume=True)
    records = [r for r in _strict_json_lines(tmp_path / "metrics.jsonl") if r["kind"] == "step"]
    per_epoch = first.loader.num_batches(0)
    assert more.planned_steps == 3 * per_epoch
    after = [r for r in records if r["global_step"] > per_epoch]
    assert after and all(r["lr"] == pytest.approx(more.learning_rate_at(r["global_step"] - 1))
                         for r in after)
