"""The plan check of distributed jobs: fingerprints, their exchange format, shard counts.

The exchange through a real kvstore is tested by the jobs in tests/distributed/test_launch.py.
"""

import json
import os
import sys

import numpy as np
import pytest

from bucketrnn import distributed
from bucketrnn.data.loader import BucketLoader
from bucketrnn.distributed import agreement as plan_check

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dist_worker import make_data  # noqa: E402


def test_distributed_re_exports_the_plan_check():
    assert distributed.check_same_plan is plan_check.check_same_plan
    assert distributed.PlanMismatchError is plan_check.PlanMismatchError


def loader_for(batch_size=4, num_shards=2, shard_index=0, data=None):
    return BucketLoader(data or make_data(40), batch_size=batch_size, num_buckets=3, seed=0,
                        num_shards=num_shards, shard_index=shard_index)


def test_plan_fingerprint_is_the_same_on_every_rank_and_catches_other_plans():
    fps = [plan_check.plan_fingerprint(loader_for(shard_index=r), lr=0.1) for r in (0, 1)]
    assert fps[0] == fps[1]
    assert plan_check.check_same_plan(None, fps[0]) == [json.loads(json.dumps(fps[0]))]
    other = plan_check.plan_fingerprint(loader_for(batch_size=3), lr=0.1)
    assert other["plan.batch_sizes"] != fps[0]["plan.batch_sizes"]
    assert plan_check.plan_fingerprint(loader_for(), lr=0.2) != fps[0]
    moved = loader_for()
    next(iter(moved))
    assert plan_check.plan_fingerprint(moved, lr=0.1)["loader.position"] == [0, 1]


def test_check_same_plan_names_the_differing_fields(monkeypatch):
    fp = plan_check.plan_fingerprint(loader_for(), lr=0.1)
    odd = dict(fp, lr=0.5)

    class FakeKV:
        type, num_workers, rank = "dist_sync", 2, 0

    monkeypatch.setattr(plan_check, "exchange_fingerprints", lambda kv, f: [fp, odd])
    with pytest.raises(plan_check.PlanMismatchError,
                       match=r"2 workers of this dist_sync job built different plans.*rank 1 "
                             r"differs from rank 0 in lr: rank 0 0.1, rank 1 0.5"):
        plan_check.check_same_plan(FakeKV(), fp)
    with pytest.raises(TypeError, match="fingerprint must be a dict"):
        plan_check.check_same_plan(None, [1])


def test_long_fingerprints_are_exchanged_as_digests():
    fp = {"big": "x" * (2 * plan_check.MAX_FINGERPRINT_BYTES), "small": 1}
    text = plan_check._encode(fp)
    assert len(text) <= plan_check.MAX_FINGERPRINT_BYTES
    decoded = json.loads(text)
    assert decoded["small"].startswith("digest:") and decoded["big"] != fp["big"]
    row = np.zeros(1 + plan_check.MAX_FINGERPRINT_BYTES, dtype=np.float32)
    row[0], row[1:1 + len(text)] = len(text), np.frombuffer(text, dtype=np.uint8)
    assert plan_check._decode(row) == decoded


def test_more_shards_than_batches_is_refused():
    data = make_data(6)
    with pytest.raises(ValueError, match=r"num_shards=8 is more than the \d batches of epoch 0 "
                                         r"on one worker.*fewer workers"):
        plan_check.check_shards(loader_for(batch_size=4, num_shards=8, data=data))
    plan_check.check_shards(loader_for(batch_size=1, num_shards=2, data=data))
    plan_check.check_shards(loader_for(num_shards=1, data=data))


def test_a_rank_without_any_real_example_is_refused():
    # Two buckets of one example each: with 2 shards, both tails go to rank 0.
    loader = BucketLoader([[1, 2], [1, 2, 3, 4, 5]], batch_size=1, num_buckets=2,
                          strategy="fixed", boundaries=(1, 4), num_shards=2, shard_index=1)
    with pytest.raises(ValueError, match=r"rank\(s\) 1 would get no real example"):
        plan_check.check_shards(loader)
