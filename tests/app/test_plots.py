"""The run's PNG plots: written into the run directory, never through a link planted there."""

import json
import os

from bucketrnn.app.plots import save_all
from bucketrnn.data.plan import plan_buckets
from bucketrnn.training.rundir import METRICS

PNG = b"\x89PNG\r\n\x1a\n"


def test_planted_links_are_replaced_and_their_targets_untouched(tmp_path):
    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    run_dir.mkdir()
    outside.mkdir()
    for name in ("buckets.png", "curves.png"):
        (outside / name).write_bytes(b"precious")
        (run_dir / name).symlink_to(outside / name)
    records = [{"kind": "step", "global_step": 1, "loss": 2.0, "perplexity": 7.4},
               {"kind": "step", "global_step": 2, "loss": 1.5, "perplexity": 4.5},
               {"kind": "epoch", "global_step": 2, "valid_loss": 1.6, "valid_perplexity": 5.0}]
    (run_dir / METRICS).write_text("".join(json.dumps(r) + "\n" for r in records))
    lengths = [3, 4, 4, 5, 9, 12, 12, 20]
    written = save_all(str(run_dir), lengths, plan_buckets(lengths, num_buckets=3, batch_size=2))
    assert written == ["buckets.png", "curves.png"]
    for name in written:
        assert (outside / name).read_bytes() == b"precious"
        assert not os.path.islink(run_dir / name)
        assert (run_dir / name).read_bytes().startswith(PNG)
    assert sorted(os.listdir(run_dir)) == ["buckets.png", "curves.png", METRICS]  # no temporaries
