"""auto_plan: the K and boundaries a cost model says are fastest, planned as fixed boundaries."""

import itertools

import numpy as np
import pytest

from bucketrnn.autoplan import auto_plan
from bucketrnn.autoplan.costmodel import CostModel
from bucketrnn.data.loader import BucketLoader, plan_lengths
from bucketrnn.data.plan import length_histogram, plan_buckets


def _lengths(seed=0, n=400, high=30):
    rng = np.random.default_rng(seed)
    return rng.integers(1, high, size=n)


def _brute(lengths, cost, batch, epochs):
    """Predicted time of every boundary subset (the longest length always ends the last)."""
    values, counts = length_histogram(lengths)
    best = {}
    for r in range(len(values)):
        for inner in itertools.combinations(values[:-1], r):
            bounds = np.array(list(inner) + [values[-1]])
            ids = np.searchsorted(bounds, lengths, side="left")
            n = np.bincount(ids, minlength=bounds.size)
            t = float(sum(epochs * -(-c // batch) * cost.step_time(batch, b) + cost.compile_time(b)
                          for c, b in zip(n, bounds) if c))
            k = int((n > 0).sum())
            best[k] = min(best.get(k, np.inf), t)
    return best


def test_zero_compile_cost_gives_a_bucket_per_distinct_length():
    lengths = np.repeat([3, 5, 8, 13, 21, 34], [7, 5, 9, 4, 6, 3])
    free = CostModel(step=(0.0, 0.0, 1e-4), compile=(0.0, 0.0))
    plan = auto_plan(lengths, free, batch_size=1)
    assert plan.keys == (3, 5, 8, 13, 21, 34)
    assert plan.auto.num_buckets == 6 and plan.waste == 0.0


def test_huge_compile_cost_gives_one_bucket():
    dear = CostModel(step=(1e-3, 1e-5, 1e-6), compile=(1e4, 10.0))
    plan = auto_plan(_lengths(), dear, batch_size=16, epochs=3)
    assert plan.num_buckets == 1 and plan.keys == (29,)
    assert plan.auto.compile_share > 0.99


@pytest.mark.parametrize("compile_s", [0.02, 0.3, 2.0])
def test_intermediate_cost_matches_a_brute_force_sweep_over_every_plan(compile_s):
    lengths = _lengths(seed=1, n=300, high=13)  # 12 distinct lengths: 2**11 plans
    cost = CostModel(step=(2e-3, 3e-4, 2e-5), compile=(compile_s, compile_s / 20))
    plan = auto_plan(lengths, cost, batch_size=8, epochs=2)
    brute = _brute(lengths, cost, 8, 2)
    k_best = min(brute, key=brute.get)
    assert plan.auto.num_buckets == k_best == plan.num_buckets
    assert plan.auto.predicted_seconds == pytest.approx(brute[k_best], rel=1e-9)
    for row in plan.auto.table:  # every K the explanation quotes is that K's true optimum
        assert row["seconds"] == pytest.approx(brute[row["k"]], rel=1e-9)


def test_longer_runs_afford_more_graphs():
    cost = CostModel(step=(2e-3, 3e-4, 2e-5), compile=(0.05, 0.002))
    ks = [auto_plan(_lengths(), cost, batch_size=8,
                       epochs=e).num_buckets for e in (0.05, 1, 50)]
    assert ks[0] < ks[1] < ks[2]


def test_explanation_names_the_choice_speed_compile_share_and_runner_up():
    cost = CostModel(step=(2e-3, 3e-4, 2e-5), compile=(0.3, 0.01))
    plan = auto_plan(_lengths(), cost, batch_size=8, epochs=2)
    text = repr(plan)
    assert plan.strategy == "auto" and "auto plan:" in text and "<- chosen" in text
    assert f"runner-up K={plan.auto.runner_up}" in text and "compile" in text
    d = plan.to_dict()["auto"]
    assert d["num_buckets"] == plan.num_buckets and 0 < d["compile_share"] < 1
    assert d["predicted_tokens_per_s"] == pytest.approx(2 * plan.real_tokens
                                                         / d["predicted_seconds"])


def test_shared_memory_cap_rules_out_graphs_that_do_not_fit():
    lengths = np.repeat([4, 10, 20, 40], 10)
    # memory grows with the key's rows x length; rows shrink with a token budget
    cost = CostModel(step=(0, 0, 1e-4), compile=(0, 0), memory=(0, 10.0, 0))
    plan = auto_plan(lengths, cost, batch_size=1, memory_limit=400)
    assert plan.keys == (4, 10, 20, 40)
    with pytest.raises(ValueError, match=r"memory_limit=300 bytes is less than the longest "
                                          r"bucket's graph needs"):
        auto_plan(lengths, cost, batch_size=1, memory_limit=300)


def test_static_memory_cap_limits_the_graphs_held_together():
    lengths = np.repeat([4, 10, 20, 40], 10)
    cost = CostModel(step=(0, 0, 1e-4), compile=(0, 0), memory=(100.0, 0, 0),
                     memory_policy="static")
    assert auto_plan(lengths, cost, batch_size=1).num_buckets == 4
    plan = auto_plan(lengths, cost, batch_size=1, memory_limit=250)
    assert plan.num_buckets == 2
    assert all(r["feasible"] == (r["k"] <= 2) for r in plan.auto.table)
    with pytest.raises(ValueError, match=r"memory_limit=50 needs|no plan fits memory_limit=50"):
        auto_plan(lengths, cost, batch_size=1, memory_limit=50)


def test_loader_takes_the_auto_plan_and_checks_it_fits():
    seqs = [[1] * int(n) for n in _lengths(n=60) + 1]
    cost = CostModel(step=(1e-3, 1e-4, 1e-5), compile=(0.05, 0.001))
    task, lengths = plan_lengths(seqs)
    assert task == "lm" and list(lengths) == [len(s) - 1 for s in seqs]
    plan = auto_plan(lengths, cost, batch_size=4, epochs=3)
    loader = BucketLoader(seqs, plan=plan, seed=0)
    assert loader.plan is plan and plan.auto is not None and plan.strategy == "auto"
    assert sum(1 for _ in loader) == len(loader)
    with pytest.raises(ValueError, match=r"plan was made for 60 examples, the dataset has 59"):
        BucketLoader(seqs[1:], plan=plan)
    longest = int(np.argmax(lengths))
    moved = [s + [1] * 100 if i == longest else s for i, s in enumerate(seqs)]
    with pytest.raises(ValueError, match=r"longer than the largest bucket|example \d+ has"):
        BucketLoader(moved, plan=plan)
    with pytest.raises(TypeError, match=r"plan must be a BucketPlan .*got dict"):
        BucketLoader(seqs, plan={"keys": (3,)})


@pytest.mark.parametrize("kwargs, error, match", [
    ({"cost": None}, TypeError, r"cost must be a bucketrnn\.autoplan\.costmodel\.CostModel "
                                r"\(measure one with bucketrnn\.autoplan\.costmodel\.probe\), "
                                r"got NoneType"),
    ({"cost": "fast"}, TypeError, r"cost must be .*CostModel .*got str"),
    ({"epochs": 0}, ValueError, r"epochs must be a finite number > 0 .*got epochs=0"),
    ({"max_buckets": 0}, ValueError, r"max_buckets"),
    ({"memory_limit": 10}, ValueError, r"memory_limit=10 needs a cost model with a memory"),
])
def test_bad_auto_arguments_are_named(kwargs, error, match):
    cost = CostModel(step=(1e-3, 1e-4, 1e-5), compile=(0.05, 0.001))
    args = {"cost": cost, **kwargs}
    with pytest.raises(error, match=match):
        auto_plan(_lengths(), batch_size=4, **args)


def test_auto_is_refused_by_the_planner_and_loader_and_on_pairs():
    cost = CostModel(step=(1e-3, 1e-4, 1e-5), compile=(0.05, 0.001))
    for call in (lambda: plan_buckets(_lengths(), num_buckets="auto"),
                 lambda: BucketLoader([[1, 2, 3]] * 4, num_buckets="auto")):
        with pytest.raises(ValueError, match=r"takes num_buckets as an integer; a number of "
                                             r"buckets chosen by measurement comes from "
                                             r"bucketrnn\.autoplan\.auto_plan"):
            call()
    with pytest.raises(ValueError, match=r"auto_plan plans one length per example"):
        auto_plan(np.array([[3, 4], [5, 6], [7, 2]]), cost)
    with pytest.raises(TypeError, match=r"num_buckets must be an int, got num_buckets='many'"):
        plan_buckets(_lengths(), num_buckets="many")


def test_old_auto_arguments_point_to_auto_plan_and_a_plan_takes_no_planning_arguments():
    cost = CostModel(step=(1e-3, 1e-4, 1e-5), compile=(0.05, 0.001))
    for call in (lambda: plan_buckets(_lengths(), num_buckets="auto", cost=cost),
                 lambda: BucketLoader([[1, 2, 3]] * 4, num_buckets="auto", cost=cost)):
        with pytest.raises(ValueError, match=r"takes no cost= \(got cost=CostModel.*auto_plan"):
            call()
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'costs'"):
        plan_buckets(_lengths(), costs=cost)
    seqs = [[1] * int(n) for n in _lengths(n=60) + 1]
    plan = auto_plan(plan_lengths(seqs)[1], cost, batch_size=4)
    with pytest.raises(ValueError, match=r"plan= is a finished plan, so batch_size=4 would not "
                                         r"be used"):
        BucketLoader(seqs, plan=plan, batch_size=4)
