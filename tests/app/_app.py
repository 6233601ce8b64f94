"""What the app tests share: the repository root and the overrides of a tiny run."""

import os

from bucketrnn.app.config import CONF_DIR

ROOT = os.path.dirname(CONF_DIR)
TINY = ["dataset.limit=60", "dataset.valid_limit=20", "dataset.test_limit=20",
        "model.hidden_size=12", "model.num_layers=1", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.epochs=2", "trainer.checkpoint_every=3",
        "trainer.log_every=2", "trainer.progress=false", "trainer.lr=0.01"]
