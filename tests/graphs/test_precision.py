"""bf16 mixed precision: products in bfloat16, parameters, gradients and loss in float32."""

import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, sym

from bucketrnn import Batch, GraphCache
from bucketrnn.data.loader import BucketLoader
from bucketrnn.graphs import precision
from bucketrnn.graphs.precision import check_precision, cpu_has_bf16, to_bfloat16
from bucketrnn.models import LanguageModel
from bucketrnn.training import checkpoint as ckpt
from bucketrnn.training.loop import TrainLoop

needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU lacks AVX512_BF16")
VOCAB, LENGTH, ROWS = 30, 7, 6


def _dtypes(symbol):
    internals = symbol.get_internals()
    _, types, _ = internals.infer_type(**{n: np.float32 for n in symbol.list_arguments()})
    return dict(zip(internals.list_outputs(), types))


def test_to_bfloat16_casts_around_the_products_only():
    x = sym.var("x")
    w = sym.var("w")
    hidden = sym.FullyConnected(x, w, no_bias=True, num_hidden=4, name="a")
    # b takes a's output directly (no fp32 round trip); c reuses the weight of a.
    out = sym.FullyConnected(hidden, num_hidden=4, name="b")
    out = sym.tanh(out, name="act") + sym.FullyConnected(sym.tanh(x, name="tx"), w, no_bias=True,
                                                          num_hidden=4, name="c")
    low = to_bfloat16(out)
    assert low.list_arguments() == out.list_arguments()
    types = _dtypes(low)
    bf16 = np.dtype([("bfloat16", np.uint16)])  # how MXNet 1.9.1 spells bfloat16 in numpy
    for name in ("a_output", "b_output", "c_output"):
        assert types[name] == bf16, name
    assert types["act_output"] == np.float32
    assert low.infer_type(**{n: np.float32 for n in low.list_arguments()})[1] == [np.float32]
    casts = [n for n in low.get_internals().list_outputs() if "amp_cast" in n]
    # (Every node named: MXNet's automatic names depend on what ran before.)
    # x, w (once for both uses), b's weight and bias, tanh(x); a's output is not cast back
    # before b; b and c back to float32.
    assert sorted(casts) == sorted([
        "x_amp_cast_bfloat16_output", "w_amp_cast_bfloat16_output",
        "b_weight_amp_cast_bfloat16_output", "b_bias_amp_cast_bfloat16_output",
        "tx_amp_cast_bfloat16_output", "b_amp_cast_float32_output",
        "c_amp_cast_float32_output"])


def test_to_bfloat16_refuses_an_operator_with_several_outputs():
    parts = sym.split(sym.var("x"), num_outputs=2, name="parts")
    with pytest.raises(ValueError, match="ops must name operators with one output, got "
                                         "'SliceChannel' with 2"):
        to_bfloat16(parts[0] + parts[1], ops=("SliceChannel",))


def test_cpu_flag_is_read_from_cpuinfo(tmp_path):
    with_flag = tmp_path / "with"
    with_flag.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx\n")
    without = tmp_path / "without"
    without.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_vnni\n")
    assert cpu_has_bf16(str(with_flag)) is True
    assert cpu_has_bf16(str(without)) is False
    assert cpu_has_bf16(str(tmp_path / "missing")) is False


def _build():
    return LanguageModel.factory(vocab_size=VOCAB, hidden_size=12, num_layers=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(precision="fp16"), r"precision must be one of 'fp32', 'bf16', got precision='fp16'"),
    (dict(precision="bf16", memory="static"),
     r"precision='bf16' needs memory='shared' .*, got memory='static'"),
    (dict(precision="bf16", ctx=mx.gpu(0)),
     r"precision='bf16' runs on CPU contexts only .*got ctx=gpu\(0\)"),
])
def test_bad_precision_settings_are_refused(kwargs, match, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    with pytest.raises(ValueError, match=match):
        GraphCache(_build(), **kwargs)


def test_bf16_is_refused_on_a_cpu_without_avx512_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"precision='bf16' needs a CPU with AVX512_BF16 "
                                         r"instructions, and this CPU's flags .* lack "
                                         r"avx512_bf16.*use precision='fp32'"):
        GraphCache(_build(), precision="bf16")
    with pytest.raises(ValueError, match=r"trainer.precision='bf16' needs a CPU with "
                                         r"AVX512_BF16"):
        check_precision("bf16", [mx.cpu()], name="trainer.precision")
    assert GraphCache(_build(), precision="fp32").precision == "fp32"


def _batch(rng):
    data = rng.integers(0, VOCAB, (ROWS, LENGTH))
    valid = rng.integers(2, LENGTH + 1, ROWS)
    return Batch(LENGTH, mx.nd.array(data, dtype="int32"), mx.nd.array(valid, dtype="int32"),
                 mx.nd.array(np.roll(data, -1, axis=1), dtype="int32"), mx.nd.ones(ROWS),
                 np.arange(ROWS))


def _train(prec, start, steps=8):
    """Adam steps on one repeated batch from the parameters ``start``: losses, grads, params."""
    graphs = GraphCache(_build(), keys=[LENGTH], precision=prec)
    graphs.initialize(mx.init.Xavier())
    params = graphs.collect_params()
    for name, value in start.items():
        params[name].set_data(mx.nd.array(value))
    trainer = gluon.Trainer(params, "adam", {"learning_rate": 0.05})
    batch = _batch(np.random.default_rng(3))
    losses, grads = [], None
    for _ in range(steps):
        with autograd.record():
            loss = graphs(batch)
        loss.backward()
        if grads is None:
            grads = {n: p.grad().asnumpy() for n, p in params.items()}
        trainer.step(ROWS)
        losses.append(float(loss.sum().asscalar()))
    return np.array(losses), grads, {n: p.data() for n, p in params.items()}


@needs_bf16
def test_bf16_training_tracks_fp32_and_keeps_fp32_parameters():
    owner = GraphCache(_build(), keys=[LENGTH])
    owner.initialize(mx.init.Xavier())
    start = {n: p.data().asnumpy() for n, p in owner.collect_params().items()}
    ref_losses, ref_grads, _ = _train("fp32", start)
    losses, grads, params = _train("bf16", start)
    assert losses[-1] < 0.8 * losses[0]  # it learns
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-2)
    assert not np.array_equal(losses, ref_losses)  # the products did run in bfloat16
    for name, ref in ref_grads.items():
        assert grads[name].dtype == np.float32 and np.abs(grads[name]).max() > 0, name
        error = np.linalg.norm(grads[name] - ref) / np.linalg.norm(ref)
        assert error < 0.05, (name, error)
    assert {p.dtype for p in params.values()} == {np.float32}


SEQS = [list(np.random.default_rng(i).integers(1, 20, 3 + i % 9)) for i in range(40)]


def _loop(run_dir, **kw):
    loader = BucketLoader(SEQS, batch_size=4, num_buckets=3, seed=5)
    args = dict(epochs=2, checkpoint_every=4, log_every=3, progress=False, seed=11,
                precision="bf16", run_dir=str(run_dir))
    args.update(kw)
    return TrainLoop(LanguageModel.factory(vocab_size=20, hidden_size=8, num_layers=2),
                     loader, **args)


@needs_bf16
def test_bf16_checkpoints_hold_fp32_and_resume_equals_the_uninterrupted_run(tmp_path):
    whole = _loop(tmp_path / "whole")
    whole.fit()
    saved = ckpt.load(str(tmp_path / "whole" / "checkpoint.npz")).params
    assert saved and {np.asarray(v).dtype for v in saved.values()} == {np.dtype(np.float32)}
    cut = _loop(tmp_path / "cut", max_steps=5)
    cut.fit()
    resumed = _loop(tmp_path / "cut")
    resumed.fit(resume=True)
    assert resumed.global_step == whole.global_step
    for name, p in whole.params.items():
        np.testing.assert_array_equal(p.data().asnumpy(), resumed.params[name].data().asnumpy(),
                                      err_msg=name)
    # The export holds the float32 graphs; a bf16 cache loads them.
    paths = whole.graphs.export(str(tmp_path / "exp"))
    graph = json.loads(open(paths[0]).read())
    assert not any(n["op"] == "amp_cast" for n in graph["nodes"])
    loaded = GraphCache.load(str(tmp_path / "exp"), precision="bf16")
    assert loaded.precision == "bf16" and os.path.isfile(tmp_path / "exp.params")
    batch = next(iter(whole.loader))
    np.testing.assert_allclose(loaded(batch).asnumpy(), whole.graphs(batch).asnumpy(), rtol=1e-5)
