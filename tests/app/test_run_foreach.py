"""The app with model.cell=foreach: one graph for every bucket of the plan."""

import sys

from hydra import compose, initialize_config_dir

from bucketrnn.app.config import CONF_DIR
from bucketrnn.app.run import run

TINY = ["dataset.limit=60", "dataset.valid_limit=20", "dataset.test_limit=20",
        "model.hidden_size=12", "model.num_layers=1", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.epochs=1", "trainer.progress=false",
        "trainer.lr=0.01", "plots=false"]


def test_foreach_run_compiles_one_graph_for_all_buckets(tmp_path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=TINY + ["model.cell=foreach",
                                                              "memory=dynamic"])
    summary = run(cfg, str(tmp_path), stream=sys.stdout)
    assert summary["valid"]["perplexity"] > 1 and summary["epochs_done"] == 1
    assert summary["graphs_compiled"] == 1
    assert len(summary["plan"]["keys"]) == 3 and min(summary["plan"]["counts"]) > 0
