"""The bucketing config as the app wires it: ``bucketing.*`` keys reach the loaders."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from bucketrnn.app.config import Config, fingerprint, saved_config, to_dict, validate
from bucketrnn.app.experiment import Data, make_loaders
from bucketrnn.data.datasets import FlatSequences

SEQS = [np.arange(1, n + 1) % 7 for n in np.random.default_rng(0).integers(2, 20, size=60)]


def config(**bucketing):
    cfg = OmegaConf.structured(Config)
    for key, value in bucketing.items():
        cfg.bucketing[key] = value
    return cfg


@pytest.mark.parametrize("timeout", [0.0, -3.0, float("nan"), float("inf")])
def test_timeout_must_be_finite_and_positive(timeout):
    with pytest.raises(ValueError, match=r"bucketing\.timeout must be a finite number of seconds "
                                         rf"> 0, got bucketing\.timeout={timeout!r}"):
        validate(config(timeout=timeout))


def test_timeout_reaches_the_loader_and_is_not_part_of_the_fingerprint():
    cfg = config(timeout=7.5, batch_size=8, num_buckets=2)
    validate(cfg)
    data = Data(FlatSequences.from_sequences(SEQS), None, None, list(range(7)), None, "toy")
    train, _, _ = make_loaders(data, cfg.bucketing)
    assert train.timeout == 7.5
    assert fingerprint(cfg) == fingerprint(config(timeout=30.0, batch_size=8, num_buckets=2))


def test_make_loaders_installs_the_id_checks_on_every_loader():
    flat = FlatSequences.from_sequences(SEQS, labels=np.arange(len(SEQS)) % 2)
    data = Data(flat, flat.subset(np.arange(10)), None, list(range(7)), 2, "toy")
    loaders = make_loaders(data, config(batch_size=8, num_buckets=2).bucketing)
    assert [(x.vocab_size, x.num_classes) for x in loaders[:2]] == [(7, 2), (7, 2)]
    lm = Data(FlatSequences.from_sequences(SEQS), None, None, list(range(6)), None, "toy")
    train, _, _ = make_loaders(lm, config(batch_size=8, num_buckets=2).bucketing)
    assert (train.vocab_size, train.num_classes) == (6, None)
    with pytest.raises(ValueError, match=r"has token id 6, outside \[0, 6\) for vocab_size=6"):
        list(train)


def test_the_library_defaults_are_the_apps():
    """One set of defaults: what the app runs with no override is what the library builds
    when given nothing (model shape, loader, optimisation)."""
    import inspect

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bucketrnn import BucketLoader
    from bucketrnn.app.config import CONF_DIR, Config, to_dict
    from bucketrnn.models import LanguageModel, SequenceClassifier
    from bucketrnn.training.loop import LEARNING_RATE, TrainLoop

    def defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        app = to_dict(compose(config_name="config"))
        clf = to_dict(compose(config_name="config", overrides=["model=classifier",
                                                               "dataset.label=first_token"]))
    assert to_dict(OmegaConf.structured(Config))["bucketing"]["batch_size"] == \
        app["bucketing"]["batch_size"]
    lm = defaults(LanguageModel.__init__)
    for key in ("hidden_size", "num_layers", "tie_weights", "dropout", "cell", "embed_size"):
        assert lm[key] == app["model"][key], key
    cl = defaults(SequenceClassifier.__init__)
    for key in ("hidden_size", "num_layers", "bidirectional", "dropout", "cell", "mode"):
        assert cl[key] == clf["model"][key], key
    loader = defaults(BucketLoader.__init__)
    for key in ("batch_size", "strategy", "last_batch", "on_overflow",
                "shuffle", "timeout"):
        assert loader[key] == app["bucketing"][key], key
    assert loader["num_buckets"] == app["bucketing"]["num_buckets"] == 8
    loop = defaults(TrainLoop.__init__)
    assert LEARNING_RATE == app["trainer"]["lr"]
    for key in ("optimizer", "clip_norm", "lr_schedule", "lr_decay", "epochs", "checkpoint_every",
                "log_every", "kvstore", "on_nonfinite", "accumulate"):
        assert loop[key] == app["trainer"][key], key
    assert loop["memory"] == app["memory"]["policy"]
    assert loop["warmdown"] == app["trainer"]["lr_warmdown"]


@pytest.mark.parametrize("clip_norm", [0.0, -1.0, float("nan"), float("inf")])
def test_clip_norm_must_be_finite_and_positive_naming_the_key(clip_norm):
    cfg = OmegaConf.structured(Config)
    cfg.trainer.clip_norm = clip_norm
    with pytest.raises(ValueError, match=r"trainer\.clip_norm must be null or a finite number > "
                                         r"0 \(the largest gradient norm\), got "
                                         rf"trainer\.clip_norm={clip_norm!r}"):
        validate(cfg)


def test_an_infinite_clip_norm_is_refused_before_anything_is_written(tmp_path):
    from bucketrnn.app.run import run

    corpus = tmp_path / "train.txt"
    corpus.write_text("a b c\nb c d e\n" * 20)
    cfg = OmegaConf.structured(Config)
    cfg.dataset.name, cfg.dataset.path = "text", str(corpus)
    cfg.trainer.clip_norm = float("inf")
    with pytest.raises(ValueError, match=r"^trainer\.clip_norm must be null or a finite"):
        run(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_the_help_footer_names_every_task_each_command_serves():
    import yaml

    from bucketrnn.app.config import CONF_DIR
    from bucketrnn.app.tasks import tasks_for

    with open(f"{CONF_DIR}/config.yaml", encoding="utf-8") as f:
        footer = yaml.safe_load(f)["hydra"]["help"]["footer"]
    nouns = {"lm": "language models", "classify": "classifiers", "tag": "taggers",
             "seq2seq": "sequence pairs"}
    for command in ("predict", "generate", "translate"):
        line = next(x for x in footer.splitlines() if f"bucketrnn {command} " in x)
        for task in tasks_for(command):
            assert nouns[task] in line, (command, task)
    assert "--beam N --max-length M" in footer


def test_a_per_epoch_factor_needs_the_epoch_schedule_naming_the_keys():
    cfg = OmegaConf.structured(Config)
    assert cfg.trainer.lr_schedule == "warmdown" and cfg.trainer.lr_decay is None
    cfg.trainer.lr_decay = 0.7
    with pytest.raises(ValueError, match=r"trainer\.lr_decay is the per-epoch factor of "
                                         r"trainer\.lr_schedule=epoch; trainer\.lr_schedule="
                                         r"warmdown follows the run's planned steps"):
        validate(cfg)
    cfg.trainer.lr_decay = None
    cfg.trainer.lr_warmdown = 0.3
    validate(cfg)
    cfg.trainer.lr_warmdown = 1.5
    with pytest.raises(ValueError, match=r"trainer\.lr_warmdown must be null or in \(0, 1\]"):
        validate(cfg)
    cfg.trainer.lr_schedule, cfg.trainer.lr_warmdown = "cosine", 0.3
    with pytest.raises(ValueError, match=r"trainer\.lr_warmdown is the falling share of "
                                         r"trainer\.lr_schedule=warmdown"):
        validate(cfg)
    cfg.trainer.lr_warmdown, cfg.trainer.lr_decay = None, 0.7
    cfg.trainer.lr_schedule = "epoch"
    validate(cfg)
    cfg.trainer.lr_decay = 0.0
    with pytest.raises(ValueError, match=r"trainer\.lr_decay must be null or in \(0, 1\]"):
        validate(cfg)


def test_a_run_saved_before_the_schedule_key_keeps_the_epoch_schedule():
    old = to_dict(OmegaConf.structured(Config))
    del old["trainer"]["lr_schedule"]
    old["trainer"]["lr_decay"] = 0.5  # what every run saved before the key held
    cfg = OmegaConf.merge(OmegaConf.structured(Config), saved_config(old))
    assert cfg.trainer.lr_schedule == "epoch"
    validate(cfg)
    # Its checkpoint's fingerprint (no lr_schedule then) is what the restored config gives.
    fp = fingerprint(cfg)
    assert "trainer.lr_schedule" not in fp and fp["trainer.lr_decay"] == 0.5
    assert "trainer.lr_warmdown" not in fp
    new = fingerprint(OmegaConf.structured(Config))
    # What null stands for in the fingerprint is the library's default.
    from bucketrnn.training.loop import LR_DECAY, WARMDOWN

    assert fp["trainer.lr_decay"] == LR_DECAY
    assert new["trainer.lr_schedule"] == "warmdown" and new["trainer.lr_warmdown"] == WARMDOWN
    assert new["trainer.lr_decay"] is None


@pytest.mark.parametrize("value", [0, -1])
def test_accumulate_below_one_is_refused_naming_the_key(value):
    cfg = OmegaConf.structured(Config)
    cfg.trainer.accumulate = value
    with pytest.raises(ValueError, match=rf"trainer\.accumulate must be an integer >= 1 .*, got "
                                         rf"trainer\.accumulate={value}$"):
        validate(cfg)


@pytest.mark.parametrize("value", ["1.5", "true", "x"])
def test_accumulate_that_is_no_integer_is_refused_at_composition_naming_it(value):
    from _app import compose_config
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException,
                       match=rf"override trainer\.accumulate={value}$") as e:
        compose_config(f"trainer.accumulate={value}")
    cause = str(e.value.__cause__)
    assert "could not be converted to Integer" in cause and "full_key: trainer.accumulate" in cause


def test_accumulate_is_in_the_fingerprint_only_when_it_is_not_one():
    cfg = OmegaConf.structured(Config)
    validate(cfg)
    # Runs saved before the key existed updated after every batch: their checkpoints' fingerprints
    # (without the key) are still the config's.
    assert "trainer.accumulate" not in fingerprint(cfg)
    cfg.trainer.accumulate = 4
    validate(cfg)
    assert fingerprint(cfg)["trainer.accumulate"] == 4
    old = to_dict(OmegaConf.structured(Config))
    del old["trainer"]["accumulate"]
    assert saved_config(old)["trainer"]["accumulate"] == 1
    assert saved_config(old)["trainer"]["lr_schedule"] == "warmdown"  # the run's own, kept


def test_a_resume_that_spells_out_a_default_the_run_saved_as_null_is_no_change(tmp_path):
    from _app import compose_config

    from bucketrnn.app.config.resume import restore
    from bucketrnn.training.loop import WARMDOWN

    saved = to_dict(compose_config())
    assert saved["trainer"]["lr_warmdown"] is None  # the warm-down's default share
    for given in ("trainer.lr_warmdown=0.5", f"trainer.lr_warmdown={WARMDOWN}"):
        cfg = restore(compose_config(given, f"resume={tmp_path}"), saved,
                      [given, f"resume={tmp_path}"])
        assert cfg.trainer.lr_warmdown is None
    with pytest.raises(ValueError, match=r"trainer.lr_warmdown cannot change when a run is "
                                         r"resumed: the run has trainer.lr_warmdown=None"):
        restore(compose_config("trainer.lr_warmdown=0.3", f"resume={tmp_path}"), saved,
                ["trainer.lr_warmdown=0.3", f"resume={tmp_path}"])
    halving = to_dict(compose_config("trainer.lr_schedule=epoch"))
    given = ["trainer.lr_schedule=epoch", "trainer.lr_decay=0.5", f"resume={tmp_path}"]
    assert restore(compose_config(*given), halving, given).trainer.lr_decay is None
