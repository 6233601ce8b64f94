"""The ``"shared"`` memory policy of :class:`~bucketrnn.graphs.cache.GraphCache`: bucket executors
bound on one memory pool per context, the way MXNet's ``BucketingModule`` does.

The largest bucket's executor is bound first and owns the pool; every other bucket is bound with
``shared_exec=`` that executor. Arguments and gradients are the Gluon parameters' own arrays (and
one gradient buffer per parameter shared by all buckets), so a ``gluon.Trainer`` updates them.

Also here, for the cache's memory check: :func:`graph_bytes` (sizes of a traced graph, from
inferred shapes, without binding it) and :func:`available_memory` (free bytes on a context).
"""

from __future__ import annotations

import os

import numpy as np
from mxnet import autograd, context, nd

from bucketrnn import compat
from bucketrnn.data.plan import key_length

__all__ = ["SharedPool", "available_memory", "bind_shared", "graph_bytes", "key_size"]


def key_size(key):
    """Sort key for "largest bucket": :func:`~bucketrnn.data.plan.key_length`, then the key."""
    return (key_length(key), key if isinstance(key, tuple) else (key,))


class SharedPool:
    """Per context: the executor owning the memory pool, and the gradient buffers all share."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.owner = None
        self.runners: dict = {}
        self.grads: dict = {}

    def grad(self, param):
        if param.name not in self.grads:
            like = param.data(self.ctx)
            self.grads[param.name] = nd.zeros(like.shape, ctx=self.ctx, dtype=like.dtype)
        return self.grads[param.name]


def bind_shared(symbol, key, named, params, pool, on_rebind):
    """Bind ``symbol`` for ``key`` on ``pool``: the largest key owns the memory, others share."""
    runner = _SharedRunner(symbol, key, named, params, pool)
    owner = pool.owner
    if owner is None or owner.key == key or key_size(key) > key_size(owner.key):
        runner.bind(None)
        pool.owner = runner
        for other in pool.runners.values():
            if other.key != key:
                other.bind(runner.exe)
                on_rebind()
    else:
        runner.bind(owner.exe)
    pool.runners[key] = runner
    return runner


class _SharedRunner:
    """One executor of a key on a context, bound to the parameters' own arrays.

    Under ``autograd.record()`` a call runs the executor's forward and, at once, its backward
    with head gradient 1 on every element of the first output (the loss), into the pool's
    gradient buffers. It then returns that output joined to the parameters by a recorded
    linear term, ``(s - stop_gradient(s)) / n`` with ``s = sum_p <param_p, grad_p>``: it adds
    exactly 0 to the values, and its gradient with respect to each parameter is ``grad_p``
    times the (uniform) head gradient. So ``loss.backward()`` (or of ``loss.sum()``,
    ``loss.mean()``, ``loss.sum() / n``) lands the executor's gradients in ``param.grad()``
    through autograd itself: ``grad_req`` "write"/"add", several calls in one graph and
    ``Trainer``'s fresh-gradient check all behave as for any Gluon block.

    Why not an ``autograd.Function`` running ``exe.backward`` in its backward: that backward
    runs later, from an engine callback, and the operators it pushes queue behind work the
    main thread pushed meanwhile (the optimizer update waiting for these very gradients), a
    deadlock we hit with ``Trainer(..., "adam")``. Here everything is pushed in program order.

    The price: the gradient only flows through the first output, and only for a head gradient
    that is the same for all its elements (true of sums and means). Weight rows with
    ``batch.weight`` inside the model, not by scaling loss rows afterwards; other outputs
    (states, logits) come back detached.
    """

    def __init__(self, symbol, key, named, params, pool):
        self.symbol, self.key, self.pool, self.ctx = symbol, key, pool, pool.ctx
        self.names = list(named)
        self.spec = [(a.shape, np.dtype(a.dtype)) for a in named.values()]
        self.params = params
        args = symbol.list_arguments()
        unknown = [n for n in args if n not in named and n not in params]
        if unknown:
            raise ValueError(f"the graph of bucket_key={key!r} has inputs {unknown} that are "
                             f"neither batch inputs {self.names} nor parameters")
        self._finish_deferred({n: a.shape for n, a in named.items()})
        self.grad_names = [n for n in args if n in params and params[n].grad_req != "null"]
        self.param_inputs = [n for n in symbol.list_inputs() if n in params]
        self.inputs = {n: nd.zeros(a.shape, ctx=self.ctx, dtype=a.dtype)
                       for n, a in named.items()}
        self.exe = None

    def _finish_deferred(self, shapes):
        deferred = [p for p in self.params.values() if compat.is_deferred(p)]
        if not deferred:
            return
        arg_shapes, _, aux_shapes = self.symbol.infer_shape(**shapes)
        found = dict(zip(self.symbol.list_arguments(), arg_shapes))
        found.update(zip(self.symbol.list_auxiliary_states(), aux_shapes))
        for p in deferred:
            if p.name in found:
                p.shape = found[p.name]
                compat.finish_deferred_init(p)

    def _param_arrays(self):
        return [self.params[n].data(self.ctx) for n in self.param_inputs]

    def bind(self, shared_exec):
        args = {n: self.inputs[n] if n in self.inputs else self.params[n].data(self.ctx)
                for n in self.symbol.list_arguments()}
        grads = {n: self.pool.grad(self.params[n]) for n in self.grad_names}
        req = {n: "write" if n in grads else "null" for n in args}
        aux = [self.params[n].data(self.ctx) for n in self.symbol.list_auxiliary_states()]
        self.exe = self.symbol.bind(self.ctx, args, args_grad=grads, grad_req=req,
                                    aux_states=aux, shared_exec=shared_exec)
        self.bound = self._param_arrays()
        self.heads = [nd.full(o.shape, 1.0 if i == 0 else 0.0, ctx=self.ctx, dtype=o.dtype)
                      for i, o in enumerate(self.exe.outputs)]

    def matches(self, named) -> bool:
        spec = [(a.shape, np.dtype(a.dtype)) for a in named.values()]
        return (list(named) == self.names and spec == self.spec
                and all(a is b for a, b in zip(self._param_arrays(), self.bound)))

    def __call__(self, named):
        recording = autograd.is_recording() and bool(self.grad_names)
        with autograd.pause():
            for name, arr in named.items():
                arr.copyto(self.inputs[name])
            self.exe.forward(is_train=autograd.is_training())
            outs = [o.copy() for o in self.exe.outputs]
            if recording:
                self.exe.backward(self.heads)
                grads = [self.pool.grads[n].copy() for n in self.grad_names]
        if recording:
            total = nd.add_n(*[nd.dot(self.params[n].data(self.ctx).reshape((-1,)),
                                      g.reshape((-1,)))
                               for n, g in zip(self.grad_names, grads)])
            link = (total - nd.BlockGrad(total)) / outs[0].size
            outs[0] = nd.broadcast_add(outs[0], link.reshape((1,) * outs[0].ndim))
        return outs[0] if len(outs) == 1 else tuple(outs)


def graph_bytes(symbol, shapes: dict, dtypes: dict) -> dict:
    """Sizes of one traced graph for the given input shapes, without binding it.

    Returns a dict of ``activations`` (bytes of every internal output: what a bound executor's
    forward produces), ``params`` (bytes of the arguments that are not inputs, and of the
    auxiliary states) and ``nodes`` (number of internal outputs). Raises ``ValueError`` if MXNet
    cannot infer every shape from ``shapes``.
    """
    internals = symbol.get_internals()
    arg_shapes, out_shapes, aux_shapes = internals.infer_shape(**shapes)
    if out_shapes is None or any(s is None for s in arg_shapes + out_shapes):
        raise ValueError(f"shapes of the graph cannot be inferred from the inputs {shapes}")
    try:
        arg_types, out_types, aux_types = internals.infer_type(**dtypes)
    except Exception:  # a graph whose dtypes MXNet cannot infer: assume 4 bytes per value
        arg_types = out_types = aux_types = None
    variables = set(internals.list_arguments()) | set(internals.list_auxiliary_states())

    def size(shape, dtype):
        width = np.dtype(dtype).itemsize if dtype is not None else 4
        return int(np.prod(shape, dtype=np.int64)) * width

    types = out_types or [None] * len(out_shapes)
    activations = sum(size(s, t) for name, s, t in zip(internals.list_outputs(), out_shapes,
                                                       types) if name not in variables)
    params = sum(size(s, t) for name, s, t in zip(internals.list_arguments(), arg_shapes,
                                                  arg_types or [None] * len(arg_shapes))
                 if name not in shapes)
    params += sum(size(s, t) for s, t in zip(aux_shapes, aux_types or [None] * len(aux_shapes)))
    return {"activations": activations, "params": params, "nodes": len(out_shapes)}


def available_memory(ctx) -> int | None:
    """Bytes free for new arrays on ``ctx``, or None if unknown.

    GPU: the free memory MXNet reports for the device (``mx.context.gpu_memory_info``).
    CPU: ``MemAvailable`` of ``/proc/meminfo`` (``os.sysconf`` available pages where there is
    no ``/proc``), lowered to what the cgroup (v2) memory limit leaves, if one is set.
    """
    if ctx.device_type == "gpu":
        free, _ = context.gpu_memory_info(ctx.device_id)
        return int(free)
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError, AttributeError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
