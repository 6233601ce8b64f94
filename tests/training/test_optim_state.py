"""Optimizer state without pickle: every supported optimizer resumes bit for bit through a
checkpoint file, and a state for another optimizer or model is refused before anything changes."""

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from bucketrnn.errors import CheckpointError, StateMismatchError
from bucketrnn.training import checkpoint as ckpt
from bucketrnn.training import optim_state

# (optimizer, params): every mx.optimizer that works with a gluon Trainer and has no state
# beyond its per-parameter states, counters and listed scalars.
CASES = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("nag", {"momentum": 0.9}), ("nag", {}),
    ("adam", {}), ("rmsprop", {}), ("rmsprop", {"centered": True}), ("adagrad", {}),
    ("adadelta", {}), ("ftml", {}), ("signum", {}), ("adamax", {}), ("nadam", {}),
    # dcasgd with momentum fails inside MXNet 1.9.1 itself
    ("ftrl", {}), ("lamb", {}), ("lars", {"momentum": 0.9}), ("dcasgd", {}),
    ("sgld", {}), ("ccsgd", {"momentum": 0.5}),
    ("sgd", {"momentum": 0.9, "multi_precision": True, "dtype": "float16"}),
]


class _Tiny(gluon.HybridBlock):
    # Element-wise only: float16 dense layers need CuDNN, and the multi_precision case needs
    # float16 weights on the CPU.
    def __init__(self):
        super().__init__(prefix="net_")
        with self.name_scope():
            self.w = self.params.get("w", shape=(5, 4))
            self.b = self.params.get("b", shape=(5,))

    def hybrid_forward(self, F, x, w, b):
        return F.broadcast_add(F.tanh(F.broadcast_mul(x.expand_dims(1), w)).sum(axis=2), b)


def _net(dtype="float32"):
    net = _Tiny()
    net.initialize(mx.init.Uniform(0.5), ctx=mx.cpu())
    net.cast(dtype)
    return net


def _trainer(net, name, params):
    return gluon.Trainer(net.collect_params(), name, {"learning_rate": 0.05, "wd": 1e-3,
                                                      **params})


def _steps(net, trainer, n, start, dtype="float32"):
    for i in range(start, start + n):
        mx.random.seed(i)  # sgld draws noise
        x = mx.nd.array(np.random.default_rng(i).normal(size=(3, 4)), dtype=dtype)
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        trainer.step(3)


def _weights(net):
    return {k: p.data().asnumpy() for k, p in net.collect_params().items()}


def _split(case):
    name, params = case
    params = dict(params)
    return name, params, params.pop("dtype", "float32")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{'-'.join(c[1])}")
def test_resume_through_a_file_is_bit_identical(tmp_path, case):
    name, params, dtype = _split(case)
    net = _net(dtype)
    trainer = _trainer(net, name, params)
    _steps(net, trainer, 3, 0, dtype)
    path = str(tmp_path / "c.npz")
    ckpt.save(path, _weights(net), optim_state.capture(trainer), {})
    _steps(net, trainer, 4, 3, dtype)  # the uninterrupted run

    state = ckpt.load(path)
    fresh = _net(dtype)
    for k, p in fresh.collect_params().items():
        p.set_data(mx.nd.array(state.params[k], dtype=state.params[k].dtype))
    resumed = _trainer(fresh, name, params)
    optim_state.restore(resumed, state.optimizer, path)
    _steps(fresh, resumed, 4, 3, dtype)
    a, b = _weights(net), _weights(fresh)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert resumed.optimizer.num_update == trainer.optimizer.num_update == 7


def test_states_are_keyed_by_parameter_name_and_described_in_json():
    net = _net("float16")
    trainer = _trainer(net, "sgd", {"momentum": 0.9, "multi_precision": True})
    _steps(net, trainer, 1, 0, "float16")
    state = optim_state.capture(trainer)
    assert set(state.doc["states"]) == set(net.collect_params().keys())
    assert state.doc["update_counts"] == [dict.fromkeys(net.collect_params().keys(), 1)]
    assert sorted({k.rsplit("/", 1)[0] for k in state.arrays}) == ["optim/net_b", "optim/net_w"]
    assert "optim/net_w/s.1" in state.arrays  # multi_precision: (weight32, momentum)


@pytest.mark.parametrize("other, params, match", [
    ("adam", {}, "optimizer state is 'SGD''s, this run uses Adam"),
    ("sgd", {}, "is present but this model's optimizer has none"),
])
def test_another_optimizer_is_refused_and_nothing_changes(other, params, match):
    net = _net()
    trainer = _trainer(net, "sgd", {"momentum": 0.9})
    _steps(net, trainer, 2, 0)
    state = optim_state.capture(trainer)
    target = _trainer(_net(), other, params)
    with pytest.raises(StateMismatchError, match=match):
        optim_state.restore(target, state, "ckpt.npz")
    assert target.optimizer.num_update == 0


def test_another_shape_and_missing_states_are_refused():
    net = _net()
    trainer = _trainer(net, "adam", {})
    _steps(net, trainer, 1, 0)
    state = optim_state.capture(trainer)
    key = sorted(state.arrays)[0]
    shapes = optim_state.OptimizerState(dict(state.arrays), state.doc)
    shapes.arrays[key] = np.zeros(7, np.float32)
    with pytest.raises(StateMismatchError, match=r"has shape \(7,\) float32"):
        optim_state.restore(_trainer(_net(), "adam", {}), shapes, "ckpt.npz")
    doc = dict(state.doc, states={})  # states gone, counters kept: a silent reset otherwise
    with pytest.raises(CheckpointError, match="lacks parameters|counts"):
        optim_state.check(_trainer(_net(), "adam", {}),
                          optim_state.OptimizerState(state.arrays, doc), "ckpt.npz")
    one = dict(state.doc["states"])
    one.pop(sorted(one)[0])
    with pytest.raises(CheckpointError, match="lacks parameters"):
        optim_state.check(_trainer(_net(), "adam", {}),
                          optim_state.OptimizerState(state.arrays, dict(state.doc, states=one)),
                          "ckpt.npz")


def test_unsupported_optimizers_are_named():
    with pytest.raises(ValueError, match="optimizer LBSGD cannot be checkpointed"):
        optim_state.check_supported(_trainer(_net(), "lbsgd", {}))


def test_every_optimizer_the_app_offers_is_one_whose_state_is_saved():
    from bucketrnn.app.config import OPTIMIZERS

    for name in OPTIMIZERS:
        assert type(mx.optimizer.create(name)).__name__ in optim_state.SUPPORTED, name
