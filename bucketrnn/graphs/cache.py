"""One compiled graph per bucket, all sharing one set of parameters.

:class:`GraphCache` maps ``batch.bucket_key`` to a graph built for that key, building it on the
first batch of the key (or up front with :meth:`GraphCache.warmup`). Every graph uses the same
Gluon ``Parameter`` objects, so a plain ``gluon.Trainer(graphs.collect_params(), ...)`` trains
them all. Three memory policies:

``"shared"`` (default)
    The way ``BucketingModule`` works: every bucket's symbol is bound to an executor, the
    largest bucket first, the others with ``shared_exec=`` that one, so all buckets of a context
    draw on one memory pool. The executors take the parameters' own arrays as arguments.
    Under ``autograd.record()`` a call runs forward and backward at once and links the loss to
    the parameters so that ``loss.backward()`` and a Gluon ``Trainer`` work as usual (see
    ``bucketrnn/graphs/shared.py``: the gradient flows through the first output only, for a
    uniform head gradient such as ``loss.sum()`` or ``loss.mean()``). Besides the pool, each
    bound executor keeps MXNet's graph structures, which grow with the unrolled steps and
    layers, and on CPU a fused RNN operator keeps memory of its own: neither is shared
    (``docs/concepts.md``, *Memory policies*, gives the figures).
``"static"``
    One block per bucket hybridized with ``static_alloc=True, static_shape=True``: fast, but
    every bucket keeps its own memory.
``"dynamic"``
    One block per bucket hybridized without static allocation: memory is drawn per call from
    MXNet's storage pool, so it stays lowest with many buckets or fused layers, for some speed.

A length-agnostic block (one marked ``length_agnostic = True``, or built by a factory so
marked, e.g. ``LanguageModel.factory(..., cell="foreach")``) is one graph for every key: the
cache builds it once, traces it once and hands it every key. :attr:`GraphCache.compiled` then
counts 1 however many keys ran (:attr:`GraphCache.keys` lists them). The policies apply as
follows: ``"dynamic"`` runs the one hybridized graph at every shape (MXNet re-infers shapes and
re-plans memory whenever the input shape differs from the previous call's: measured at 1.02x
the CPU time of a step at an unchanged shape, ``python -m benchmarks.foreach --switch``);
``"static"`` hybridizes it with ``static_alloc=True`` but not ``static_shape`` (that flag
promises one input shape; with it MXNet 1.9.1 fails the ``foreach`` backward intermittently
after a shape change), so its static memory is re-planned whenever the input shape changes;
``"shared"`` binds the one traced symbol once per key (an executor is shape-static) on the
shared pool, largest first: the graph is traced once, allocation stays per bucket shape.

Before it binds or hybridizes the graph of a new key, the cache estimates the graph's memory
(:meth:`GraphCache.estimate_memory`) and refuses one that would not fit (``memory_limit=``)
with :class:`~bucketrnn.errors.GraphTooLargeError`: a plan with an outlier bucket of 10^6 steps
is stopped with a message instead of a graph of many gigabytes.

A key too long to unroll: binding an unrolled graph costs time and memory per node (1-1.5 ms of
CPU and about 100 kB per step for a 16-unit LSTM, before it runs once), so a lone 25,000-token
line took a minute or two and gigabytes. Outside training, a key longer than ``unroll_limit``
(default :data:`UNROLL_LIMIT`) whose graph is not compiled yet runs on the factory's
length-agnostic twin (``build.any_length``: the reference models' unrolled factories offer the
same model with ``cell="foreach"`` on the same parameters), which binds in constant time; the
results are the unrolled graph's to float rounding. Under ``autograd.record()`` every key is
unrolled as ever.

The forward contract: the graph of a key is ``block(*inputs)`` where ``inputs`` are the batch
arrays named by ``inputs=`` (default ``("data", "valid_length", "label", "weight")``), all
batch-major, or whatever an ``inputs=`` callable returns for the batch. The outputs are the
block's outputs; with a list of contexts they come back as a list, one entry per context.

Size: about 900 lines in one module on purpose. The memory check, the export and the three
memory policies all read the cache's own per-key state (its runners, symbols and template
batch); split into modules they would reach into each other's private attributes. The export
index's file checks sit at the end.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from mxnet import autograd, context, gluon, nd
from mxnet import name as mx_name
from mxnet import symbol as sym
from mxnet.base import MXNetError

from bucketrnn import compat
from bucketrnn.compat import MAX_ARRAY_ELEMENTS
from bucketrnn.data.batchify import Batch, check_batch_ids, ids_checked_against
from bucketrnn.data.plan import key_length
from bucketrnn.errors import GraphTooLargeError
from bucketrnn.files import read_json
from bucketrnn.graphs.precision import check_precision, to_bfloat16
from bucketrnn.graphs.shared import SharedPool, available_memory, bind_shared, graph_bytes, key_size
from bucketrnn.validation import is_int

__all__ = ["GraphCache", "MEMORY", "NODE_BYTES", "UNROLL_LIMIT", "batch_like", "format_bytes",
           "share_parameters"]

MEMORY = ("shared", "static", "dynamic")
DEFAULT_INPUTS = ("data", "valid_length", "label", "weight")
FORMAT = 1
# Memory estimate (see GraphCache.estimate_memory). Bytes a bound graph keeps per node besides
# its arrays: a round figure just above what unrolled LSTMs keep on CPU under "shared" and
# "static" ("dynamic" keeps less), so the estimate errs high rather than admit a graph that
# does not fit (docs/concepts.md, "Outliers"; tests/graphs/test_memory.py). Probe lengths for the
# linear fit, and the largest key a fixed mapping of blocks is traced at to estimate it.
NODE_BYTES = 10_000
# The longest key a graph is unrolled for outside training when the factory offers a
# length-agnostic twin (GraphCache's unroll_limit): binding an unrolled graph costs 1-1.5 ms of
# CPU and ~100 kB per step even for a 16-unit LSTM (MXNet's graph passes run per node, and the
# cost per step grows with the length), so 2,048 steps take 2-3 CPU-s, while the foreach twin
# binds in constant time (python -m benchmarks.long_line; docs/using-a-trained-model.md).
UNROLL_LIMIT = 2048
PROBE = 8
TRACE_MAX = 4096


def _as_contexts(ctx):
    if ctx is None:
        return [context.current_context()]
    ctxs = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not ctxs or not all(isinstance(c, context.Context) for c in ctxs):
        raise TypeError(f"ctx must be an mx.Context or a non-empty list of them, got ctx={ctx!r}")
    return ctxs


def _key_tag(key) -> str:
    return "x".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


class GraphCache:
    """One compiled graph per bucket key; one shared set of parameters; a memory policy.

    Parameters
    ----------
    build : callable, HybridBlock subclass or mapping
        ``build(bucket_key) -> HybridBlock``, a block class taken as ``cls(bucket_key)``, or a
        fixed ``{bucket_key: block}`` mapping (then no other key can be built). Blocks of
        different keys must have the same parameter structure; parameters the factory did not
        share already are tied to the first block's (same ``Parameter`` objects).
    ctx : mx.Context or list of mx.Context, optional
        Where the graphs run. With a list, each batch is split along axis 0 over the contexts
        (data parallel; the batch size must divide evenly) and one graph runs per context.
    memory : {"shared", "static", "dynamic"}
        Memory policy, see the module docstring.
    inputs : tuple of str or callable
        Batch attributes passed positionally to the block, or ``inputs(batch)`` returning a
        tuple (or an ordered dict, whose keys name the symbol inputs) of NDArrays. By default,
        the ``batch_inputs`` that ``build`` declares (the reference models' factories do; a
        sequence-pair model adds ``label_length``), else ``(data, valid_length, label, weight)``.
    keys : iterable of bucket keys, optional
        Known keys; lets :meth:`collect_params` build the parameter-owning block up front.
    frozen : bool
        Build graphs for ``keys`` only; refuse any other key.
    memory_limit : "auto", int or None
        Refuse to build a graph whose :meth:`estimate_memory` exceeds this many bytes.
        ``"auto"`` (default): the memory available on the graph's context when it is built
        (under ``"shared"``, a key no larger than the one owning the pool is not checked again:
        it draws on that pool). None: no check.
    precision : {"fp32", "bf16"}
        ``"bf16"``: mixed precision, the graphs' matrix products (``FullyConnected``) in
        bfloat16 and everything else, the parameters and their gradients in float32
        (:func:`~bucketrnn.graphs.precision.to_bfloat16` rewrites each bound symbol). Needs
        ``memory="shared"``, CPU contexts and a CPU with AVX512_BF16; refused otherwise
        (:func:`~bucketrnn.graphs.precision.check_precision`). :meth:`export` writes the float32
        graphs.
    unroll_limit : int or None
        Outside training (no ``autograd.record()``), a key of more steps than this
        (:func:`~bucketrnn.data.plan.key_length`) whose unrolled graph is not compiled yet runs
        on the factory's length-agnostic twin instead (``build.any_length``, which the reference
        models' unrolled factories offer: the same model with ``cell="foreach"`` on the same
        parameters): one graph for every such key, bound in constant time, its memory linear
        in the length and small. Keys up to the limit, keys compiled by training, and every
        key under ``autograd.record()`` get their unrolled graph as ever, so results there do
        not change; a factory without a twin is not affected (:meth:`unrolls_too_long` tells).
        Default :data:`UNROLL_LIMIT` (2,048 steps); None: always unroll.

    Notes
    -----
    Token ids and labels are checked against the model's declared :attr:`vocab_size` and
    :attr:`num_classes` before a graph runs (MXNet's embedding and ``pick`` clip an
    out-of-range id silently on CPU): a ``ValueError`` names the dataset index and the value
    (:func:`~bucketrnn.data.batchify.check_batch_ids`). A batch whose loader already checked
    them against these limits (``BucketLoader(vocab_size=..., num_classes=...)``, as
    ``TrainLoop`` sets them) is not checked again; otherwise the check copies ``data`` and
    ``label`` to the host (``python -m benchmarks.id_check`` measures it).

    Examples
    --------
    >>> import mxnet as mx, numpy as np
    >>> from mxnet import autograd, gluon
    >>> from bucketrnn import Batch
    >>> from bucketrnn.models import LanguageModel
    >>> graphs = GraphCache(LanguageModel.factory(vocab_size=20, hidden_size=8), keys=[4, 8])
    >>> graphs.initialize(mx.init.Xavier())
    >>> trainer = gluon.Trainer(graphs.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> ids = mx.nd.ones((2, 4), dtype="int32")
    >>> batch = Batch(4, ids, mx.nd.array([4, 2], dtype="int32"), ids, mx.nd.ones(2),
    ...               np.array([0, 1]))
    >>> with autograd.record():
    ...     loss = graphs(batch)
    >>> loss.backward()
    >>> trainer.step(1)
    >>> graphs.compiled, graphs.steps
    (1, {4: 1})
    """

    def __init__(self,
                 build: Callable[[Any], gluon.HybridBlock] | type[gluon.HybridBlock]
                 | Mapping[Any, gluon.HybridBlock],
                 ctx: context.Context | Sequence[context.Context] | None = None,
                 memory: str = "shared",
                 inputs: Sequence[str] | Callable[[Batch], Any] = DEFAULT_INPUTS,
                 keys: Iterable | None = None, frozen: bool = False,
                 memory_limit: int | str | None = "auto", precision: str = "fp32",
                 unroll_limit: int | None = UNROLL_LIMIT):
        if memory not in MEMORY:
            raise ValueError(f"memory must be one of {MEMORY}, got memory={memory!r}")
        if not (memory_limit is None or memory_limit == "auto" or (
                isinstance(memory_limit, (int, np.integer)) and not isinstance(memory_limit, bool)
                and memory_limit > 0)):
            raise ValueError(f"memory_limit must be 'auto', a number of bytes > 0 or None, got "
                             f"memory_limit={memory_limit!r}")
        if not (unroll_limit is None or (is_int(unroll_limit) and unroll_limit >= 1)):
            raise ValueError(f"unroll_limit must be a number of steps >= 1 or None, got "
                             f"unroll_limit={unroll_limit!r}")
        self.memory_limit = memory_limit
        self.unroll_limit = unroll_limit
        self._twin = None  # the cache of the factory's length-agnostic twin, made on first use
        self._twin_error = None  # why the factory's twin could not be built (then: unroll)
        self._estimates: dict = {}
        self._fits: dict = {}
        self.ctx = _as_contexts(ctx)
        self.memory = memory
        self.precision = check_precision(precision, self.ctx)
        if precision != "fp32" and memory != "shared":
            raise ValueError(f"precision={precision!r} needs memory='shared' (the cache casts "
                             f"inside the symbols it binds), got memory={memory!r}")
        self.frozen = bool(frozen)
        self._blocks: dict = {}
        self._reference = None
        # One block (one graph) for every key, as the factory or the block itself declares.
        self.length_agnostic = (not isinstance(build, (Mapping, type))
                                and getattr(build, "length_agnostic", False) is True)
        if isinstance(build, Mapping):
            if not build:
                raise ValueError("build must not be an empty mapping of blocks")
            self._factory = None
            self.frozen = True
            for key in sorted(build, key=key_size, reverse=True):
                self._adopt(key, build[key])
            # A mapping is one graph only if it maps every key to one block so marked.
            self.length_agnostic = (len({id(b) for b in build.values()}) == 1 and getattr(
                self._reference, "length_agnostic", False) is True)
        elif isinstance(build, type) and issubclass(build, gluon.HybridBlock):
            self._factory = build
        elif callable(build):
            self._factory = build
        else:
            raise TypeError(f"build must be a callable, a HybridBlock class or a mapping of "
                            f"blocks, got build={build!r}")
        if inputs is DEFAULT_INPUTS:  # a model that takes more (seq2seq: label_length) says so
            inputs = tuple(getattr(build, "batch_inputs", None) or inputs)
        if isinstance(inputs, str) or not (callable(inputs) or isinstance(inputs, tuple)):
            raise TypeError(f"inputs must be a tuple of Batch attribute names or a callable, "
                            f"got inputs={inputs!r}")
        if isinstance(inputs, tuple):
            fields = set(Batch.__dataclass_fields__)
            bad = [n for n in inputs if n not in fields]
            if bad:
                raise ValueError(f"inputs names Batch attributes {sorted(fields)}, got "
                                 f"inputs={inputs!r}")
        self.inputs = inputs
        self._known_keys = sorted(set(keys or ()), key=key_size, reverse=True)
        self._runners: dict = {}
        self._symbols: dict = {}
        self._bound: dict = {}
        self._pools = {c: SharedPool(c) for c in self.ctx}
        self._hybridized: set = set()
        self._template = None
        self._agnostic = None  # (input names, symbol) of a length-agnostic block, traced once
        self.steps: dict = {}
        self.rebinds = 0

    # -- blocks and parameters -------------------------------------------------------------

    def _adopt(self, key, block):
        if not isinstance(block, gluon.HybridBlock):
            raise TypeError(f"the block for bucket_key={key!r} must be a HybridBlock, got "
                            f"{type(block).__name__}")
        if self._reference is None:
            self._reference = block
            # A factory's first block marked length-agnostic serves every key (a class is
            # built per key, by its contract).
            if (self._factory is not None and not isinstance(self._factory, type)
                    and getattr(block, "length_agnostic", False) is True):
                self.length_agnostic = True
        elif block is self._reference:
            pass
        else:
            share_parameters(block, self._reference, key)
        self._blocks[key] = block
        return block

    def block(self, key):
        """The block of ``key``, built (not compiled) if needed."""
        if key in self._blocks:
            return self._blocks[key]
        if self._factory is None and self.length_agnostic:
            # One graph for every length (a loaded foreach export): a key it was not exported
            # with runs on it too, as it did in the exporting cache.
            return self._adopt(key, self._reference)
        if self._factory is None or (self.frozen and key not in self._known_keys):
            why = ("built from a fixed mapping of blocks" if self._factory is None
                   else "frozen (frozen=True)")
            allowed = set(self._known_keys) if self._factory is not None else set()
            raise ValueError(f"no graph for bucket_key={key!r}: the cache is {why} and holds "
                             f"keys {sorted(set(self._blocks) | allowed, key=key_size)}")
        if self.length_agnostic and self._reference is not None:
            return self._adopt(key, self._reference)
        return self._adopt(key, self._build(key))

    @property
    def vocab_size(self):
        """The token-id range the graphs' model declares (its factory's or blocks'
        ``vocab_size``, as the reference models do), or None: what a training loop hands the
        loader's host-side id check."""
        return self._declared("vocab_size")

    @property
    def num_classes(self):
        """The class-label range the graphs' model declares, or None (see :attr:`vocab_size`)."""
        return self._declared("num_classes")

    def _declared(self, name):
        for source in (self._factory, self._reference):
            value = getattr(source, name, None)
            if value is not None:
                return value
        return None

    def _build(self, key):
        cls = self._factory
        if isinstance(cls, type) and self._reference is not None:
            # Gluon's own sharing: same prefix, the first block's ParameterDict.
            return cls(key, prefix=self._reference.prefix,
                       params=self._reference.collect_params())
        return cls(key)

    def _ensure_reference(self):
        if self._reference is None:
            if self._known_keys:
                self.block(self._known_keys[0])
            elif hasattr(self._factory, "param_key"):
                # A factory that can build a parameter owner for any length (Model.factory).
                self._reference = self._factory(self._factory.param_key)
            else:
                raise ValueError("no block built yet, so there are no parameters: pass keys= "
                                 "(e.g. plan.keys) to GraphCache or call warmup() first")
        return self._reference

    def collect_params(self, select=None):
        """The shared parameters (a ``ParameterDict``): give them to ``gluon.Trainer``."""
        return self._ensure_reference().collect_params(select)

    def initialize(self, init=None, force_reinit: bool = False):
        """Initialize the shared parameters on every context of the cache."""
        kwargs = {} if init is None else {"init": init}
        self.collect_params().initialize(ctx=self.ctx, force_reinit=force_reinit, **kwargs)

    @property
    def keys(self) -> list:
        """Keys with a compiled graph, largest first."""
        return sorted({k for k, _ in self._runners}, key=key_size, reverse=True)

    @property
    def compiled(self) -> int:
        """Number of graphs compiled: one per bucket key, or 1 for a length-agnostic block
        however many keys it ran (those are in :attr:`keys`), plus 1 once keys longer than
        :attr:`unroll_limit` ran on the length-agnostic twin (those are in :attr:`long_keys`)."""
        twin = self._twin.compiled if self._twin is not None else 0
        return len({id(self._blocks[k]) for k in self.keys}) + twin

    @property
    def long_keys(self) -> list:
        """Keys that ran on the factory's length-agnostic twin (longer than
        :attr:`unroll_limit`, outside training), largest first; not exported."""
        return self._twin.keys if self._twin is not None else []

    def unrolls_too_long(self, key) -> bool:
        """True if running ``key`` outside training would unroll a graph of more than
        :attr:`unroll_limit` steps: the key is that long, its graph is not compiled yet, the
        factory's graphs grow with the key (its ``unrolled`` attribute; assumed of a factory
        that does not say, or of a mapping) and it offers no length-agnostic twin (a
        sequence-pair model, a custom factory). A caller can refuse such input before the
        graph is built (the app's commands do)."""
        return (self.unroll_limit is not None and not self.length_agnostic
                and key_length(key) > self.unroll_limit
                and not any(k == key for k, _ in self._runners)
                and getattr(self._factory, "unrolled", True) is not False
                and (not callable(getattr(self._factory, "any_length", None))
                     or self._twin_error is not None))

    def _on_twin(self, key) -> bool:
        """Whether ``key`` runs on the length-agnostic twin (see ``unroll_limit``)."""
        if (self.unroll_limit is None or self.length_agnostic or autograd.is_recording()
                or key_length(key) <= self.unroll_limit or self._twin_error is not None
                or not callable(getattr(self._factory, "any_length", None))
                or (self.frozen and key not in self._known_keys)):  # refused as ever
            return False
        return not any(k == key for k, _ in self._runners)  # compiled (by training): kept

    def _twin_cache(self, key):
        """The twin's cache, or None if the factory's twin cannot be built (a subclass whose
        constructor fixes the cell or needs an int length): the key is then unrolled."""
        if self._twin is None:
            self._ensure_reference()  # the twin is built on the parameters it owns
            try:
                self._factory.any_length(key_length(key))
            except (TypeError, ValueError) as e:
                self._twin_error = e
                warnings.warn(f"the factory's length-agnostic twin (any_length) could not be "
                              f"built ({type(e).__name__}: {e}); key {key!r} is unrolled (pass "
                              "unroll_limit=None to always unroll)", RuntimeWarning,
                              stacklevel=3)
                return None
            self._twin = GraphCache(self._factory.any_length, ctx=self.ctx, memory=self.memory,
                                    inputs=self.inputs, memory_limit=self.memory_limit,
                                    precision=self.precision, unroll_limit=None)
        self._twin.memory_limit = self.memory_limit  # as set now, e.g. by a caller after init
        return self._twin

    def __len__(self) -> int:
        return self.compiled

    def __repr__(self) -> str:
        steps = {k: self.steps.get(k, 0) for k in sorted(self.keys, key=key_size)}
        ctx = self.ctx[0] if len(self.ctx) == 1 else self.ctx
        agnostic = (f" (length-agnostic: one graph for {len(self.keys)} keys)"
                    if self.length_agnostic else "")
        if self.long_keys:
            agnostic += f", long_keys={self.long_keys} (on the length-agnostic twin)"
        return (f"GraphCache(memory={self.memory!r}, ctx={ctx}, compiled={self.compiled}"
                f"{agnostic}, steps={steps}, rebinds={self.rebinds})")

    # -- inputs --------------------------------------------------------------------------

    def _named_inputs(self, batch) -> dict:
        if not isinstance(batch, Batch):
            raise TypeError(f"batch must be a bucketrnn.Batch, got {type(batch).__name__}")
        if callable(self.inputs):
            got = self.inputs(batch)
            if isinstance(got, Mapping):
                return dict(got)
            return {f"input{i}": a for i, a in enumerate(got)}
        named = {n: getattr(batch, n) for n in self.inputs}
        missing = [n for n, a in named.items() if a is None]
        if missing:
            raise ValueError(f"batch.{missing[0]} is None but inputs={self.inputs!r} passes it "
                             "to the graph; give inputs= without it")
        return named

    def _split(self, named: dict) -> list:
        if len(self.ctx) == 1:
            ctx = self.ctx[0]
            for name, arr in named.items():
                if arr.context != ctx:
                    raise ValueError(f"batch.{name} is on {arr.context} but the graphs run on "
                                     f"{ctx}: move it with batch.as_in_context({ctx})")
            return [named]
        rows = next(iter(named.values())).shape[0]
        if rows % len(self.ctx):
            raise ValueError(f"batch size {rows} must divide evenly over the {len(self.ctx)} "
                             f"contexts ctx={self.ctx}")
        parts = [{} for _ in self.ctx]
        for name, arr in named.items():
            for part, piece, ctx in zip(parts, gluon.utils.split_data(arr, len(self.ctx)),
                                        self.ctx):
                part[name] = piece.as_in_context(ctx)
        return parts

    # -- compile and run -------------------------------------------------------------------

    def _check_initialized(self, key):
        for p in self.collect_params().values():
            if not compat.is_initialized(p) and not compat.is_deferred(p):
                raise ValueError(f"parameter {p.name} is not initialized (needed by the graph "
                                 f"of bucket_key={key!r}): call graphs.initialize(...) first")

    def _runner(self, key, ctx, named: dict):
        runner = self._runners.get((key, ctx))
        if runner is not None and (self.memory != "shared" or runner.matches(named)):
            return runner
        block = self.block(key)
        if hasattr(block, "check_context"):
            block.check_context(ctx)
        self._check_initialized(key)
        self._check_memory(key, next(iter(named.values())).shape[0], ctx)
        if self.memory == "shared":
            if key not in self._symbols:
                self._symbols[key] = self._symbol(key, list(named))
            pool = self._pools[ctx]
            if runner is not None:
                self.rebinds += 1
            runner = bind_shared(self._bound_symbol(key), key, named, self.collect_params(),
                                 pool, on_rebind=self._count_rebind)
        else:
            if id(block) not in self._hybridized:  # once: hybridize() drops the cached graph
                self._hybridized.add(id(block))
                # static_shape promises one input shape, which a length-agnostic graph breaks
                # by design: MXNet 1.9.1 then fails the foreach backward intermittently ("We
                # didn't record the computation for iteration N"); static_alloc alone holds.
                # The same holds for per-key graphs that hold a foreach (a seq2seq model's
                # foreach encoder): their gradients came out inf from the second bucket on.
                foreach = self.length_agnostic or getattr(block, "uses_foreach", False) is True
                block.hybridize(active=True, static_alloc=self.memory == "static",
                                static_shape=self.memory == "static" and not foreach)
            runner = _BlockRunner(block)
        self._runners[(key, ctx)] = runner
        return runner

    def _bound_symbol(self, key):
        """The symbol bound for ``key``: the traced one, in the cache's precision."""
        if self.precision == "fp32":
            return self._symbols[key]
        if key not in self._bound:
            self._bound[key] = to_bfloat16(self._symbols[key])
        return self._bound[key]

    def _count_rebind(self):
        self.rebinds += 1

    def _symbol(self, key, names):
        if self.length_agnostic and self._agnostic is not None and self._agnostic[0] == names:
            return self._agnostic[1]  # traced once, for every key
        out = self.block(key)(*[sym.var(n) for n in names])
        symbol = sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
        if self.length_agnostic:
            self._agnostic = (list(names), symbol)
        return symbol

    @staticmethod
    def _check_ids(batch, named: dict, limits) -> None:
        """The ids the graph receives (its ``data`` and ``label`` inputs, which an ``inputs=``
        callable may have made from the batch) against the model's ``limits``; rows are named
        by ``batch.indices`` (inputs of another row count are not checked)."""
        rows = len(np.asarray(batch.indices))
        given = {n: named.get(n) for n in ("data", "label")}
        if any(a is not None and (a.ndim == 0 or a.shape[0] != rows) for a in given.values()):
            return
        check_batch_ids(replace(batch, **given), *limits)

    def __call__(self, batch: Batch):
        """Run the graph of ``batch.bucket_key``; record it if inside ``autograd.record()``."""
        named = self._named_inputs(batch)
        key = batch.bucket_key
        twin = self._twin_cache(key) if self._on_twin(key) else None
        if twin is not None:
            out = twin(batch)
            self.steps[key] = self.steps.get(key, 0) + 1
            return out
        # MXNet's embedding and pick clip an out-of-range id silently (a finite, wrong loss):
        # the model's declared limits are checked here unless the batch's loader did already.
        limits = (self.vocab_size, self.num_classes)
        if limits != (None, None) and not ids_checked_against(batch, *limits):
            self._check_ids(batch, named, limits)
        if self._template is None:
            self._template = batch
        block = self.block(key)
        # Blocks check their inputs in their own forward; a shared executor bypasses it.
        check = self.memory == "shared" and hasattr(block, "validate_inputs")
        results = []
        for ctx, part in zip(self.ctx, self._split(named)):
            if check:
                block.validate_inputs(ctx, *part.values())
            results.append(self._runner(key, ctx, part)(part))
        self.steps[key] = self.steps.get(key, 0) + 1
        return results[0] if len(self.ctx) == 1 else results

    def warmup(self, keys, example: Batch | None = None, batch_size=None) -> dict:
        """Compile the graph of every key before training, largest first.

        Parameters
        ----------
        keys : iterable of bucket keys, or an object with ``.keys`` (e.g. a ``BucketPlan``)
        example : Batch, optional
            Template for the input shapes and dtypes; its arrays are resized along the time
            axis to each key. Defaults to a batch already seen by the cache.
        batch_size : int or mapping, optional
            Rows per key (default: the example's, or ``keys.batch_sizes`` of a plan).

        Returns
        -------
        dict
            Seconds spent compiling and running one forward/backward step, per key. The
            gradients of initialized parameters are left as they were (a parameter whose shape
            the warmup itself infers keeps the warmup's gradient).
        """
        plan = keys
        keys = getattr(plan, "keys", plan)
        keys = list(keys() if callable(keys) else keys)
        if batch_size is None and hasattr(plan, "batch_sizes"):
            batch_size = dict(zip(keys, plan.batch_sizes))
        example = example or self._template
        if example is None:
            raise ValueError("warmup needs example= (a Batch) to know the input shapes and "
                             "dtypes: none was given and the cache has seen no batch yet")
        self._known_keys = sorted(set(self._known_keys) | set(keys), key=key_size,
                                  reverse=True)
        report = {}
        for key in sorted(set(keys), key=key_size, reverse=True):
            rows = batch_size.get(key) if isinstance(batch_size, Mapping) else batch_size
            rows = rows or example.batch_size
            if self._template is None:
                self._template = example
            for ctx in self.ctx:  # before the arrays of a (possibly huge) key exist
                self._check_memory(key, rows // len(self.ctx), ctx)
            batch = batch_like(example, key, rows)
            started = time.perf_counter()
            with _grads_kept(self.collect_params()):
                self._step_once(batch)
            report[key] = time.perf_counter() - started
            self.steps[key] -= 1
        return report

    def _step_once(self, batch):
        if not any(p.grad_req != "null" for p in self.collect_params().values()):
            self(batch)
            return
        with autograd.record():
            out = self(batch)
        outs = out if isinstance(out, list) else [out]
        heads = [o[0] if isinstance(o, (list, tuple)) else o for o in outs]
        autograd.backward(heads)
        nd.waitall()

    # -- memory estimate -------------------------------------------------------------------

    def estimate_memory(self, key, batch_size=None, example: Batch | None = None):
        """Bytes the graph of ``key`` is expected to need for a training step, or None.

        The sum of: every internal output of the graph (its activations) for ``batch_size``
        rows, the parameters and their gradients (twice the parameter bytes), and
        :data:`NODE_BYTES` per graph node (what a bound executor keeps per node besides its
        arrays). It is meant to be right in magnitude, not exact: it counts what a step holds at
        most, so it reads high under ``"dynamic"``, which frees intermediate arrays sooner
        (``tests/graphs/test_memory.py`` holds it within 2x of a measurement). A fused RNN
        layer's own workspace is not counted.

        A graph of a long key is not traced: the factory builds the key's block at two (for a
        tuple key: one plus one per component) short lengths, whose shapes are inferred
        (``get_internals().infer_shape``) and the sizes extrapolated linearly in the length,
        exact for an unrolled graph. The fit is cached per batch size, so estimating costs two
        small traces once and nothing per key after. For a fixed mapping of blocks (or a
        factory that fails on the probe lengths) the key's own graph is traced when its
        :func:`~bucketrnn.graphs.shared.key_size` is at most :data:`TRACE_MAX` steps; a larger key
        gets None (no estimate, and the cache does not refuse it).

        A length-agnostic block (``cell="foreach"``) is traced once and its shapes inferred at
        each key. The steps inside its loop are one subgraph whose per-step arrays (kept for
        the backward pass) MXNet does not list as outputs: only the loop's inputs and outputs
        are counted, so the estimate reads low for it: for the 2 x 200 LSTM language model
        (vocabulary 10,000, 32 rows) 227 and 541 MB at 79 and 199 steps, 0.64x the unrolled
        graph's estimate, while its measured peak was about the same as the unrolled one's
        (``docs/benchmarks.md``, the ``cell=foreach`` section).

        Parameters
        ----------
        key : bucket key
        batch_size : int, optional
            Rows per graph (per context). Defaults to the example's.
        example : Batch, optional
            Template for the inputs' shapes and dtypes (any bucket); defaults to a batch the
            cache has seen (or the warmup example).
        """
        example = example or self._template
        if example is None:
            raise ValueError("estimate_memory needs example= (a Batch) to know the input shapes "
                             "and dtypes: none was given and the cache has seen no batch yet")
        rows = int(batch_size or example.batch_size)
        if (key, rows) not in self._estimates:
            self._estimates[(key, rows)] = self._estimate(key, rows, example)
        return self._estimates[(key, rows)]

    def _estimate(self, key, rows, example):
        sizes = None
        if self.length_agnostic:
            # Its one traced graph, shapes inferred at this key: no probes, no new trace.
            try:
                named = self._named_inputs(batch_like(example, key, rows))
                got = graph_bytes(self._symbol(key, list(named)),
                                  {n: a.shape for n, a in named.items()},
                                  {n: a.dtype for n, a in named.items()})
                sizes = np.array([got["activations"], got["params"], got["nodes"]],
                                 dtype=np.float64)
            except Exception:  # best effort, as below
                return None
        elif self._factory is not None:
            if rows not in self._fits:
                self._fits[rows] = self._fit(key, rows, example)
            fit = self._fits[rows]
            if fit is not None:
                const, slopes = fit
                length = key if isinstance(key, tuple) else (key,)
                sizes = const + sum(s * n for s, n in zip(slopes, length))
        if sizes is None and key_size(key)[0] <= TRACE_MAX:
            try:
                sizes = self._sizes(key, rows, example, self.block(key))
            except Exception:  # best effort: no estimate, never a broken run
                return None
        if sizes is None:
            return None
        activations, params, nodes = np.maximum(sizes, 0)
        return int(activations + 2 * params + NODE_BYTES * nodes)

    def _fit(self, key, rows, example):
        """``(constant, slopes)`` of (activations, params, nodes) as linear in the key's
        components, from blocks built at probe lengths; None if the factory cannot."""
        base = tuple([PROBE] * len(key)) if isinstance(key, tuple) else (PROBE,)
        probes = [base] + [base[:i] + (2 * PROBE,) + base[i + 1:] for i in range(len(base))]
        try:
            found = []
            # A name manager of its own: probe blocks of a factory like ``lambda n: Net(n)``
            # must not advance the counter that names the cache's real blocks.
            with mx_name.NameManager():
                for probe in probes:
                    probe_key = probe if isinstance(key, tuple) else probe[0]
                    found.append(self._sizes(probe_key, rows, example, self._build(probe_key)))
        except Exception:  # e.g. a factory or inputs= made for real keys only
            return None
        slopes = [(f - found[0]) / PROBE for f in found[1:]]
        const = found[0] - sum(slopes) * PROBE
        return const, slopes

    def _sizes(self, key, rows, example, block):
        named = self._named_inputs(batch_like(example, key, rows))
        names = list(named)
        out = block(*[sym.var(n) for n in names])
        symbol = sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
        got = graph_bytes(symbol, {n: a.shape for n, a in named.items()},
                          {n: a.dtype for n, a in named.items()})
        return np.array([got["activations"], got["params"], got["nodes"]], dtype=np.float64)

    def _check_memory(self, key, rows, ctx):
        """Refuse (GraphTooLargeError) a graph whose estimate exceeds the memory limit."""
        if self.memory_limit is None:
            return
        auto = self.memory_limit == "auto"
        owner = self._pools[ctx].owner if self.memory == "shared" else None
        if auto and owner is not None and key_size(key) <= key_size(owner.key):
            return
        estimate = self.estimate_memory(key, rows)
        limit = available_memory(ctx) if auto else int(self.memory_limit)
        if estimate is None or limit is None or estimate <= limit:
            return
        where = (f"only {format_bytes(limit)} is available on {ctx}" if auto
                 else f"memory_limit={self.memory_limit} ({format_bytes(limit)})")
        raise GraphTooLargeError(
            f"the graph of bucket_key={key!r} with {rows} rows needs about "
            f"{format_bytes(estimate)} "
            f"(estimated before building it) but {where}: lower the largest bucket length "
            "(dataset max_length=N with on_overflow='truncate' or 'drop', so outliers are cut "
            "or dropped and counted), use fewer rows per batch (batch_size or max_tokens), or "
            "pass memory_limit= (None turns this check off)")

    # -- export ------------------------------------------------------------------------------

    def export(self, prefix: str) -> list:
        """Write ``{prefix}-{key}-symbol.json`` per compiled key, ``{prefix}.params`` once and
        ``{prefix}-graphs.json`` (the index :meth:`load` reads). Returns the paths written.

        With a callable ``inputs=``, the graphs' input names are recorded but not how a batch
        maps onto them: :meth:`load` then needs that callable again. A length-agnostic cache
        writes its one graph once, ``{prefix}-any-symbol.json``, listed for every key."""
        if not self._runners:
            twin = (f"; the keys run so far ({self.long_keys}) ran on the length-agnostic "
                    "twin, which is not exported" if self.long_keys else "")
            raise ValueError(f"nothing to export: no graph compiled yet{twin} (call warmup() "
                             "with the keys to export, or run a batch first)")
        names = list(self._named_inputs(self._template))
        paths, files = [], {}
        for key in self.keys:
            path = f"{prefix}-{'any' if self.length_agnostic else _key_tag(key)}-symbol.json"
            if path not in paths:
                symbol = self._symbols[key] if key in self._symbols else self._symbol(key, names)
                symbol.save(path)
                paths.append(path)
            files[_key_tag(key)] = {"key": list(key) if isinstance(key, tuple) else key,
                                    "symbol": os.path.basename(path)}
        params = {p.name: p.data(self.ctx[0]).copyto(context.cpu())
                  for p in self.collect_params().values()}
        nd.save(f"{prefix}.params", params)
        index = {"format": FORMAT, "inputs": names, "graphs": list(files.values()),
                 "params": os.path.basename(f"{prefix}.params"),
                 "inputs_are_batch_fields": not callable(self.inputs),
                 "length_agnostic": self.length_agnostic}
        with open(f"{prefix}-graphs.json", "w") as f:
            json.dump(index, f, indent=1)
        return paths + [f"{prefix}.params", f"{prefix}-graphs.json"]

    @classmethod
    def load(cls, prefix: str, ctx=None, memory: str = "shared", inputs=None,
             precision: str = "fp32") -> GraphCache:
        """Read what :meth:`export` wrote: a frozen cache of ``SymbolBlock`` graphs (a
        length-agnostic export runs any key on its one graph).

        ``inputs`` is the exporting cache's ``inputs=`` callable when it had one (required
        then); by default the recorded input names are read from the batch. ``precision`` is
        the loaded cache's (the export holds float32 graphs either way).

        The index ``{prefix}-graphs.json`` is data, and so are the files it lists: each must be
        a plain file name in the index's own directory (no ``..``, no absolute path, no
        symbolic link leading out of the directory), or ``load`` refuses it. Nothing is
        unpickled or evaluated: the symbols are MXNet's graph JSON (``mx.sym.load``) and the
        parameters MXNet's binary NDArray list format (``mx.nd.load``: a magic number, then
        shapes, dtypes and raw data, read by C++; a pickle is refused as "not an NDArray
        file"). A file that does not parse is reported by name only: MXNet's own parse errors
        quote the file's text, so they are not passed on.
        """
        index_path = f"{prefix}-graphs.json"
        index = _read_index(index_path)
        if inputs is None and not index.get("inputs_are_batch_fields", True):
            raise ValueError(f"{prefix} was exported from a cache with a callable inputs=: pass "
                             f"the same callable, GraphCache.load(..., inputs=...), got "
                             f"inputs=None")
        folder = os.path.dirname(index_path)
        ctxs = _as_contexts(ctx)
        params_path = _listed_file(folder, index["params"], index_path)
        blocks, shared, by_file = {}, None, {}
        for entry in sorted(index["graphs"], key=lambda e: key_size(_key(e["key"])),
                            reverse=True):
            if entry["symbol"] in by_file:  # a length-agnostic graph listed for several keys
                blocks[_key(entry["key"])] = by_file[entry["symbol"]]
                continue
            path = _listed_file(folder, entry["symbol"], index_path)
            try:
                outputs = sym.load(path)
            except MXNetError:
                raise ValueError(f"{path} (listed in {index_path}) is not a symbol file MXNet "
                                 "can read: re-export the graphs") from None
            used = set(outputs.list_inputs())
            names = [n for n in index["inputs"] if n in used]
            block = gluon.SymbolBlock(outputs, [sym.var(n) for n in names], params=shared)
            if shared is None:
                shared = block.collect_params()
                _load_params(shared, params_path, index_path, ctxs)
            # One graph for every length, as the exporting cache said (a JSON boolean).
            block.length_agnostic = index.get("length_agnostic") is True
            blocks[_key(entry["key"])] = by_file[entry["symbol"]] = block
        return cls(blocks, ctx=ctxs, memory=memory, inputs=inputs or tuple(index["inputs"]),
                   precision=precision)


# Limits of an export index (_read_index): a bucket key is a length MXNet can index (int32) or a
# (source, target) pair of them; an index of more graphs than this is no export of a real plan.
MAX_KEY = MAX_ARRAY_ELEMENTS
MAX_INDEX_GRAPHS = 100_000
MAX_INDEX_BYTES = 64 * 2**20


def _read_index(path: str) -> dict:
    """The export index at ``path``, checked for the structure :meth:`GraphCache.export`
    writes; errors name the file and the field, never quote the file."""
    try:
        # Only a regular file, of bounded size: a FIFO would block, /dev/zero never end.
        index = read_json(path, limit=MAX_INDEX_BYTES)
    except ValueError as e:  # never quotes the file
        raise ValueError(f"{path} is not a JSON export index: it {e}; re-export the graphs "
                         "(GraphCache.export)") from None
    if not isinstance(index, dict):
        raise ValueError(f"{path} must hold a JSON object, got a {type(index).__name__}")
    if index.get("format") != FORMAT:
        found = index.get("format")
        found = found if isinstance(found, int) or found is None else type(found).__name__
        raise ValueError(f"{path} has format={found!r}, expected {FORMAT}")
    graphs, names = index.get("graphs"), index.get("inputs")
    problems = []
    if not isinstance(index.get("params"), str):
        problems.append("'params' must be a file name")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append("'inputs' must be a list of input names")
    if not isinstance(graphs, list) or not graphs:
        problems.append("'graphs' must be a non-empty list")
    elif len(graphs) > MAX_INDEX_GRAPHS:
        problems.append(f"'graphs' lists {len(graphs)} graphs, more than {MAX_INDEX_GRAPHS}")
    else:
        seen = set()
        for i, g in enumerate(graphs):
            ok = (isinstance(g, dict) and isinstance(g.get("symbol"), str)
                  and _valid_key(g.get("key")))
            if not ok:
                problems.append(f"graphs[{i}] must have a 'symbol' file name and a bucket "
                                f"'key': a length in [1, {MAX_KEY}] or a [source, target] "
                                "pair of them")
                break
            key = _key(g["key"])
            if key in seen:
                problems.append(f"graphs[{i}] repeats the key {key!r}")
                break
            seen.add(key)
    if problems:
        raise ValueError(f"{path} is not a valid export index: {'; '.join(problems)}; "
                         "re-export the graphs")
    return index


def _valid_key(key) -> bool:
    def length(n) -> bool:
        return is_int(n) and 1 <= n <= MAX_KEY

    return length(key) or (isinstance(key, list) and len(key) == 2 and all(map(length, key)))


def _listed_file(folder: str, name: str, index_path: str) -> str:
    """The path of file ``name`` listed in the index, refused unless it is a regular file
    inside ``folder`` (symbolic links resolved)."""
    shown = name if len(name) <= 80 else name[:77] + "..."
    if (not name or "\0" in name or name in (".", "..") or os.path.isabs(name)
            or name != os.path.basename(name)):
        raise ValueError(f"{index_path} lists the file {shown!r}, which is not a plain file name "
                         "in the export directory: an export index names files next to it only "
                         "(re-export the graphs)")
    path = os.path.join(folder, name)
    root = os.path.realpath(folder or os.curdir)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        raise ValueError(f"{index_path} lists {shown!r}, a symbolic link leading out of the "
                         f"export directory {root}: refused (copy the file into the export "
                         "directory instead of linking it)")
    if not os.path.isfile(real):
        raise FileNotFoundError(f"{path}, listed in {index_path}, is missing or not a regular "
                                "file: copy the whole export directory")
    return path


def _load_params(params, path: str, index_path: str, ctxs) -> None:
    try:
        arrays = nd.load(path)
    except MXNetError:
        raise ValueError(f"{path} (listed in {index_path}) is not an MXNet NDArray file: "
                         "re-export the graphs") from None
    if not isinstance(arrays, dict):
        raise ValueError(f"{path} holds unnamed arrays; GraphCache.export writes named "
                         "parameters: re-export the graphs")
    try:
        params.load_dict(arrays, ctx=ctxs, allow_missing=False, ignore_extra=True,
                         filename=path)
    except (AssertionError, ValueError) as e:
        # Names and shapes of the graphs' parameters only: the file parsed as NDArrays.
        raise ValueError(f"{path} does not hold the parameters of the exported graphs: "
                         f"{e}") from None


def format_bytes(n: int) -> str:
    """``n`` bytes for a message: ``"1.5 GB"`` from 1 GiB on, else ``"12.3 MB"``."""
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def _key(raw):
    return tuple(raw) if isinstance(raw, list) else raw


class _BlockRunner:
    """The ``static``/``dynamic`` policies: the hybridized block is the graph."""

    def __init__(self, block):
        self.block = block

    def __call__(self, named):
        out = self.block(*named.values())
        # A hybridized block returns a list where the plain one returned a tuple.
        return tuple(out) if isinstance(out, list) else out


def batch_like(example: Batch, key, rows: int) -> Batch:
    """A zero batch like ``example`` with ``rows`` rows, padded to ``key``: what a graph of
    that shape is compiled, warmed up or measured with."""
    src, tgt = key if isinstance(key, tuple) else (key, key)

    def like(arr, length=None, fill=0):
        if arr is None:
            return None
        shape = (rows,) + tuple(arr.shape[1:])
        if length is not None and arr.ndim >= 2:
            shape = (rows, length) + tuple(arr.shape[2:])
        out = nd.full(shape, fill, ctx=arr.context, dtype=arr.dtype)
        return out

    return replace(
        example,
        bucket_key=key,
        data=like(example.data, src),
        valid_length=like(example.valid_length, fill=src),
        label=like(example.label, tgt),
        weight=like(example.weight, fill=1),
        indices=np.arange(rows, dtype=np.int64),
        label_length=like(example.label_length, fill=tgt),
        meta={},  # the example's counts are not this batch's
    )


class _grads_kept:
    """Context manager: restore every gradient (and its freshness) on exit."""

    def __init__(self, params):
        self.params = [p for p in params.values()
                       if p.grad_req != "null" and compat.is_initialized(p)]

    def __enter__(self):
        self.saved = [[(g.copy(), compat.grad_is_fresh(d))
                       for g, d in zip(p.list_grad(), p.list_data())] for p in self.params]

    def __exit__(self, *exc):
        for p, saved in zip(self.params, self.saved):
            for g, d, (copy, fresh) in zip(p.list_grad(), p.list_data(), saved):
                g[:] = copy
                compat.set_grad_fresh(d, fresh)
        return False


def share_parameters(block, reference, key) -> None:
    """Make ``block`` use ``reference``'s ``Parameter`` objects, matched by structure.

    Factories written the Gluon way (same ``prefix``, ``params=``) already share; this ties the
    parameters of blocks built independently, e.g. ``lambda n: MyNet(n)``.
    """
    theirs = compat.collect_params_with_prefix(reference)
    mine = compat.collect_params_with_prefix(block)
    if set(mine) != set(theirs):
        diff = sorted(set(mine) ^ set(theirs))
        raise ValueError(f"the block for bucket_key={key!r} does not have the parameters of the "
                         f"first block (differs in {diff[:5]}); blocks of all keys must share "
                         "one parameter structure")
    for path, param in mine.items():
        ref = theirs[path]
        if param is ref:
            continue
        if param.shape and ref.shape and 0 not in param.shape and param.shape != ref.shape:
            raise ValueError(f"parameter {path} of bucket_key={key!r} has shape {param.shape}, "
                             f"the shared one {ref.shape}")
        compat.replace_parameter(block, path, ref)
    ref_params = reference.collect_params()
    for name, param in block.collect_params().items():
        if name in ref_params and ref_params[name] is not param:
            raise ValueError(f"the block for bucket_key={key!r} has its own parameter {name}: "
                             "build blocks with params=first.collect_params() to share")
