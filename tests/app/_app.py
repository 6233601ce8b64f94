"""What the app tests share: the repository root and the overrides of a tiny run."""

import os

import numpy as np
from hydra import compose, initialize_config_dir

from bucketrnn.app.config import CONF_DIR

ROOT = os.path.dirname(CONF_DIR)
TINY = ["dataset.limit=60", "dataset.valid_limit=20", "dataset.test_limit=20",
        "model.hidden_size=12", "model.num_layers=1", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.epochs=2", "trainer.checkpoint_every=3",
        "trainer.log_every=2", "trainer.progress=false", "trainer.lr=0.01"]


def compose_config(*overrides):
    """The app's config composed from ``conf/`` with ``overrides``, as the command line would."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def pairs_file(tmp_path, n=60):
    """A ``source<TAB>target`` file of ``n`` reversal pairs (letters a-f, targets upper case)."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(n):
        src = list(rng.choice(list("abcdef"), int(rng.integers(2, 9))))
        lines.append(" ".join(src) + "\t" + " ".join(s.upper() for s in src[::-1]))
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)
