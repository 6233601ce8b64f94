"""bf16 mixed precision for the bound graphs: matrix products in bfloat16, all else in fp32.

MXNet 1.9.1's own training routes for bfloat16 do not work with Gluon: ``amp.init(
target_dtype="bfloat16")`` with a ``gluon.Trainer`` fails in ``_cast_symbol_NDArray``
(TypeError), and ``F.amp_cast(x, dtype="bfloat16")`` in a ``hybrid_forward`` fails with "data
type 'bfloat16' not understood". What does work is a cast inside the graph: the
``"shared"`` memory policy binds each bucket's traced symbol itself, so
:func:`to_bfloat16` rewrites that symbol before it is bound. Each matrix product
(``FullyConnected``: the output projection and the gate products of every LSTM/GRU step) takes
its inputs through an ``amp_cast`` to bfloat16 and hands its output back through an ``amp_cast``
to float32. Everything else stays float32: the embedding, the gate non-linearities and state
arithmetic, the softmax and the loss. The parameters stay float32 arrays (the master weights the
optimizer updates, the arrays checkpoints hold); the casts being graph nodes, their backward turns
the bfloat16 gradients of the products back into float32 gradients of the parameters. oneDNN
accumulates each bfloat16 product in float32.

bfloat16 products are fast only on CPUs with AVX512_BF16 (or AMX) instructions; elsewhere oneDNN
emulates them, slower than float32. :func:`check_precision` refuses ``"bf16"`` on a CPU whose
flags lack ``avx512_bf16``, on a GPU context (untested here: the published 1.9.1 GPU wheels'
bfloat16 support is not established) and with an MXNet built without oneDNN.

Examples
--------
>>> import mxnet as mx
>>> x = mx.sym.var("x")
>>> y = to_bfloat16(mx.sym.FullyConnected(x, num_hidden=3, name="fc"))
>>> [n for n in y.get_internals().list_outputs() if "amp_cast" in n]
['x_amp_cast_bfloat16_output', 'fc_weight_amp_cast_bfloat16_output', \
'fc_bias_amp_cast_bfloat16_output', 'fc_amp_cast_float32_output']
>>> y.list_arguments()
['x', 'fc_weight', 'fc_bias']
"""

from __future__ import annotations

import json

__all__ = ["BF16_OPS", "PRECISIONS", "check_precision", "cpu_has_bf16", "to_bfloat16"]

PRECISIONS = ("fp32", "bf16")
# Operators run in bfloat16: the matrix products (oneDNN inner product).
BF16_OPS = ("FullyConnected",)
CPU_FLAG = "avx512_bf16"


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU advertises AVX512_BF16 (the ``avx512_bf16`` flag of ``cpuinfo``).

    False where the file cannot be read (not Linux): bf16 is then refused rather than run
    emulated, many times slower than fp32.
    """
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags") and CPU_FLAG in line.split(":", 1)[-1].split():
                    return True
    except OSError:
        return False
    return False


def _mxnet_has_onednn() -> bool:
    from mxnet.runtime import Features

    return Features().is_enabled("MKLDNN")


def check_precision(precision: str, ctx=(), name: str = "precision") -> str:
    """``precision`` if it can run on every context of ``ctx``, else ``ValueError``.

    Parameters
    ----------
    precision : {"fp32", "bf16"}
    ctx : mx.Context or sequence of them
        Where the graphs run. ``"bf16"`` needs CPU contexts, a CPU with AVX512_BF16 and an
        MXNet built with oneDNN (MKLDNN).
    name : str
        How the caller's users spell the setting (e.g. ``"trainer.precision"``): the error
        names it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, PRECISIONS))}, got "
                         f"{name}={precision!r}")
    if precision == "fp32":
        return precision
    ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    gpus = [c for c in ctxs if getattr(c, "device_type", "cpu") != "cpu"]
    if gpus:
        raise ValueError(f"{name}={precision!r} runs on CPU contexts only (bfloat16 training "
                         f"on GPU is not supported by bucketrnn with MXNet 1.9.1), got ctx="
                         f"{gpus[0]}: use {name}='fp32' on a GPU")
    if not cpu_has_bf16():
        raise ValueError(f"{name}={precision!r} needs a CPU with AVX512_BF16 instructions, and "
                         f"this CPU's flags (/proc/cpuinfo) lack {CPU_FLAG}: its bfloat16 "
                         f"products would be emulated, slower than fp32; use {name}='fp32'")
    if not _mxnet_has_onednn():
        raise ValueError(f"{name}={precision!r} needs an MXNet built with oneDNN (MKLDNN), and "
                         f"this one is not (mxnet.runtime.Features()); use {name}='fp32'")
    return precision


def to_bfloat16(symbol, ops=BF16_OPS):
    """``symbol`` with the operators named in ``ops`` run in bfloat16, the rest in float32.

    Each such operator's inputs pass through an ``amp_cast`` to bfloat16 (one cast per array,
    shared by all its uses: a weight is cast once per step, not once per time step) and its
    output through an ``amp_cast`` back to float32. A product fed directly by another takes
    the bfloat16 output without a round trip. The arguments, their names and the outputs'
    dtypes are unchanged, so the result binds to the same float32 parameter arrays; its
    gradients with respect to them are float32.

    Parameters
    ----------
    symbol : mx.sym.Symbol
        A float32 graph (e.g. a traced bucket model).
    ops : sequence of str
        Operator names to run in bfloat16; each must have one output. Default
        :data:`BF16_OPS`.

    Returns
    -------
    mx.sym.Symbol
    """
    from mxnet import sym

    graph = json.loads(symbol.tojson())
    old = graph["nodes"]
    rows = graph["node_row_ptr"]
    nodes, outputs, moved = [], [], {}
    casts, lowered = {}, {}

    def add(node, n_out):
        nodes.append(node)
        outputs.append(n_out)
        return len(nodes) - 1

    def to_bf16(entry):
        index, out = entry[0], entry[1]
        if index in lowered:  # a float32 cast we added: use the bfloat16 value it was made of
            return lowered[index]
        if (index, out) not in casts:
            name = nodes[index]["name"] + ("" if out == 0 else f"_{out}")
            cast = add({"op": "amp_cast", "name": f"{name}_amp_cast_bfloat16",
                        "attrs": {"dtype": "bfloat16"}, "inputs": [[index, out, 0]]}, 1)
            casts[(index, out)] = [cast, 0, 0]
        return casts[(index, out)]

    for i, node in enumerate(old):
        node = dict(node)
        n_out = rows[i + 1] - rows[i]
        inputs = [[moved[s], o, v] for s, o, v in node.get("inputs", [])]
        if node["op"] in ops:
            if n_out != 1:
                raise ValueError(f"ops must name operators with one output, got {node['op']!r} "
                                 f"with {n_out} (node {node['name']!r})")
            node["inputs"] = [to_bf16(e) for e in inputs]
            low = add(node, 1)
            back = add({"op": "amp_cast", "name": f"{node['name']}_amp_cast_float32",
                        "attrs": {"dtype": "float32"}, "inputs": [[low, 0, 0]]}, 1)
            lowered[back] = [low, 0, 0]
            moved[i] = back
        else:
            node["inputs"] = inputs
            moved[i] = add(node, n_out)
    graph["nodes"] = nodes
    graph["arg_nodes"] = [i for i, n in enumerate(nodes) if n["op"] == "null"]
    graph["node_row_ptr"] = [0]
    for n_out in outputs:
        graph["node_row_ptr"].append(graph["node_row_ptr"][-1] + n_out)
    graph["heads"] = [[moved[s], o, v] for s, o, v in graph["heads"]]
    return sym.load_json(json.dumps(graph))
