"""The training arms: one way each of feeding variable-length sentences to the same LSTM LM.

Every arm trains the same 2-layer unrolled LSTM language model (``bucketrnn.models.LanguageModel``
or, for ``BucketingModule``, MXNet's symbolic ``mx.rnn`` cells of the same sizes) with Adam on
the same Penn Treebank sentences, 64 rows per step. An arm is a small object with the pieces the
driver :func:`run_arm` times:

``setup()``      data pipeline and model (untimed); sets the per-epoch figures
``batches()``    a fresh iterator over the arm's own epoch-0 schedule (its cost is timed)
``shape(b)``     the static shape a batch needs a graph for
``warm(b)``      one forward/backward without an update (compiles the graph of that shape)
``step(b)``      one training step; returns ``(loss_sum, real_tokens)``, NDArrays or numbers
``save/load``    parameters and optimizer state, so a run can continue in a new process

The driver runs a window ``[start, start + steps)`` of the schedule: it first scans the window
for the shapes it meets, warms those up (timed as compile), then times the steps, including the
time spent waiting for the loader.
"""

from __future__ import annotations

import random
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Config:
    """Model and run sizes shared by every arm."""

    vocab_size: int = 10_000
    embed_size: int = 200
    hidden_size: int = 200
    num_layers: int = 2
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    # GraphCache memory policy for the bucketrnn arms and the ceiling. "static" is the fastest
    # per step; the library default "shared" has its own arm (bucketrnn_shared).
    memory: str = "static"

    def as_dict(self) -> dict:
        return asdict(self)


TINY = dict(embed_size=16, hidden_size=16, batch_size=16)


def rss_mb() -> dict:
    """Current and peak resident set size of this process, in MiB (from /proc/self/status)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return {"rss_mb": round(out.get("VmRSS", 0.0), 1),
            "peak_rss_mb": round(out.get("VmHWM", 0.0), 1)}


def quiet_import_gluonnlp():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gluonnlp
    return gluonnlp


# -- shared gluon pieces ---------------------------------------------------------------------


def lm_factory(cfg: Config, cell: str = "unrolled"):
    from bucketrnn.models import LanguageModel

    return LanguageModel.factory(vocab_size=cfg.vocab_size, embed_size=cfg.embed_size,
                                 hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                                 cell=cell)


class GluonBlocks:
    """What a GluonNLP user writes: one hybridized block per distinct input shape met.

    The blocks come from one ``LanguageModel.factory`` so they share parameters; each is
    hybridized with ``static_alloc``/``static_shape`` (the fast setting, own memory per block).
    """

    def __init__(self, cfg: Config):
        self.build = lm_factory(cfg)
        self.blocks = {}
        self.reference = self.build(1)

    def __call__(self, shape):
        block = self.blocks.get(shape)
        if block is None:
            block = self.blocks[shape] = self.build(shape[1])
            block.hybridize(static_alloc=True, static_shape=True)
        return block

    def collect_params(self):
        return self.reference.collect_params()


def gluon_step(trainer, forward, tokens):
    """One Adam step on the mean per-token loss; ``tokens`` may be a number or an NDArray."""
    from mxnet import autograd

    with autograd.record():
        loss_sum = forward().sum()
        loss = loss_sum / tokens
    loss.backward()
    trainer.step(1)
    return loss_sum, tokens


def gluon_warm(forward):
    from mxnet import autograd, nd

    with autograd.record():
        loss = forward().sum()
    loss.backward()
    nd.waitall()


class GluonArm:
    """Base for the arms trained with ``gluon.Trainer``: init, save and load."""

    def init_model(self, params):
        import mxnet as mx
        from mxnet import gluon

        self.params = params
        params.initialize(mx.init.Xavier(), ctx=mx.cpu())
        self.trainer = gluon.Trainer(params, "adam", {"learning_rate": self.cfg.learning_rate})

    def save(self, path):
        self.params.save(path + ".params")
        self.trainer.save_states(path + ".states")

    def load(self, path):
        import mxnet as mx

        self.params.load(path + ".params", ctx=mx.cpu())
        self.trainer.load_states(path + ".states")


# -- the arms ----------------------------------------------------------------------------------


class PadLongest(GluonArm):
    """keras-mxnet's way: ``pad_sequences`` to the longest sentence, one unrolled graph."""

    title = "pad to the longest (keras-mxnet)"

    def __init__(self, cfg, data):
        self.cfg, self.data = cfg, data

    def setup(self):
        lengths = self.data.lengths() - 1
        self.lengths, self.longest = lengths, int(lengths.max())
        n, b = len(lengths), self.cfg.batch_size
        self.sentences_used = n
        self.shapes_per_epoch = 1 + (n % b != 0)
        self.waste_per_epoch = 1 - lengths.sum() / (n * self.longest)
        self.model = GluonBlocks(self.cfg)
        self.init_model(self.model.collect_params())

    def batches(self):
        from mxnet import nd

        order = np.random.default_rng(self.cfg.seed).permutation(len(self.lengths))
        b, width = self.cfg.batch_size, self.longest
        for start in range(0, len(order), b):
            rows = order[start:start + b]
            data = np.zeros((len(rows), width), dtype=np.int32)
            label = np.zeros_like(data)
            for r, i in enumerate(rows):
                seq = self.data[i]
                data[r, :len(seq) - 1], label[r, :len(seq) - 1] = seq[:-1], seq[1:]
            vl = self.lengths[rows].astype(np.int32)
            yield (nd.array(data, dtype="int32"), nd.array(vl, dtype="int32"),
                   nd.array(label, dtype="int32"), nd.ones(len(rows)), int(vl.sum()))

    def shape(self, batch):
        return batch[0].shape

    def _forward(self, batch):
        return lambda: self.model(self.shape(batch))(*batch[:4])

    def warm(self, batch):
        gluon_warm(self._forward(batch))

    def step(self, batch):
        return gluon_step(self.trainer, self._forward(batch), batch[4])


class GluonNLPBuckets(GluonArm):
    """GluonNLP: ``FixedBucketSampler`` + ``batchify.Pad`` (to the batch maximum) + a gluon
    ``DataLoader``; one hybridized unrolled block per distinct (rows, length) shape."""

    def __init__(self, cfg, data, num_buckets):
        self.cfg, self.data, self.num_buckets = cfg, data, num_buckets
        self.title = f"GluonNLP FixedBucketSampler K={num_buckets} + Pad"

    def _sampler(self):
        nlp = quiet_import_gluonnlp()
        # FixedBucketSampler shuffles with the global numpy RNG: seed it for the same schedule.
        np.random.seed(self.cfg.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nlp.data.FixedBucketSampler(self.lengths.tolist(), self.cfg.batch_size,
                                               num_buckets=self.num_buckets, shuffle=True)

    def setup(self):
        from mxnet.gluon.data import SimpleDataset

        nlp = quiet_import_gluonnlp()
        self.lengths = self.data.lengths() - 1
        shapes, computed, used = set(), 0, 0
        for idx in self._sampler():
            longest = int(self.lengths[idx].max())
            shapes.add((len(idx), longest))
            computed += len(idx) * longest
            used += len(idx)
        self.sentences_used, self.shapes_per_epoch = used, len(shapes)
        self.waste_per_epoch = 1 - self.lengths.sum() / computed
        pairs = [(s[:-1], s[1:]) for s in (self.data[i] for i in range(len(self.data)))]
        self.dataset = SimpleDataset(pairs)
        pad = nlp.data.batchify
        self.batchify = pad.Tuple(pad.Pad(axis=0, pad_val=0, ret_length=True, dtype="int32"),
                                  pad.Pad(axis=0, pad_val=0, dtype="int32"))
        self.model = GluonBlocks(self.cfg)
        self.init_model(self.model.collect_params())

    def batches(self):
        import mxnet as mx
        from mxnet import nd
        from mxnet.gluon.data import DataLoader

        loader = DataLoader(self.dataset, batch_sampler=self._sampler(),
                            batchify_fn=self.batchify, num_workers=0)
        ctx = mx.cpu()
        for (data, vl), label in loader:
            # Pad returns cpu_shared arrays; a hybridized block wants one context.
            data, vl, label = (a.as_in_context(ctx) for a in (data, vl, label))
            yield data, vl, label, nd.ones(data.shape[0]), vl.sum().astype("float32")

    shape = PadLongest.shape
    _forward = PadLongest._forward
    warm = PadLongest.warm
    step = PadLongest.step


class BucketingModuleArm:
    """MXNet's own route (example/rnn/bucketing): ``BucketSentenceIter`` + ``BucketingModule``
    with a ``sym_gen`` that unrolls ``mx.rnn.SequentialRNNCell`` of ``LSTMCell`` per bucket."""

    title = "MXNet BucketingModule + BucketSentenceIter"

    def __init__(self, cfg, data):
        self.cfg, self.data = cfg, data

    def _iter(self):
        import mxnet as mx

        # reset() shuffles with the global random and numpy RNGs.
        random.seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Sentences are <eos> words <eos>: the iterator's label is the data shifted by one,
            # its last position invalid, so each row predicts words + 1 tokens.
            return mx.rnn.BucketSentenceIter(self.sentences, self.cfg.batch_size,
                                             invalid_label=-1)

    def _sym_gen(self, seq_len):
        import mxnet as mx

        cfg = self.cfg
        data, label = mx.sym.Variable("data"), mx.sym.Variable("softmax_label")
        embed = mx.sym.Embedding(data=data, input_dim=cfg.vocab_size,
                                 output_dim=cfg.embed_size, name="embed")
        stack = mx.rnn.SequentialRNNCell()
        for layer in range(cfg.num_layers):
            stack.add(mx.rnn.LSTMCell(num_hidden=cfg.hidden_size, prefix=f"lstm_l{layer}_"))
        outputs, _ = stack.unroll(seq_len, inputs=embed, merge_outputs=True)
        pred = mx.sym.Reshape(outputs, shape=(-1, cfg.hidden_size))
        pred = mx.sym.FullyConnected(data=pred, num_hidden=cfg.vocab_size, name="pred")
        label = mx.sym.Reshape(label, shape=(-1,))
        # normalization="valid": the mean over real tokens, as in the gluon arms.
        pred = mx.sym.SoftmaxOutput(data=pred, label=label, name="softmax", use_ignore=True,
                                    ignore_label=-1, normalization="valid")
        return pred, ("data",), ("softmax_label",)

    def setup(self):
        import mxnet as mx

        self.sentences = [self.data[i].tolist() for i in range(len(self.data))]
        it = self._iter()
        computed = real = 0
        for b, start in it.idx:
            rows = it.data[b][start:start + self.cfg.batch_size]
            computed += rows.size
            real += int((rows != -1).sum()) - len(rows)
        self.sentences_used = len(it.idx) * self.cfg.batch_size
        self.shapes_per_epoch = len({b for b, _ in it.idx})
        self.waste_per_epoch = 1 - real / computed
        self.mod = mx.mod.BucketingModule(self._sym_gen, default_bucket_key=it.default_bucket_key,
                                          context=mx.cpu())
        self.mod.bind(data_shapes=it.provide_data, label_shapes=it.provide_label)
        self.mod.init_params(initializer=mx.init.Xavier())
        # Module would set rescale_grad=1/batch_size on top of normalization="valid"; keep the
        # gradient the per-token mean the gluon arms use.
        self.mod.init_optimizer(optimizer="adam",
                                optimizer_params={"learning_rate": self.cfg.learning_rate,
                                                  "rescale_grad": 1.0})

    def batches(self):
        it = self._iter()
        return iter(it)

    def shape(self, batch):
        return batch.bucket_key

    def warm(self, batch):
        from mxnet import nd

        self.mod.forward_backward(batch)
        nd.waitall()

    def step(self, batch):
        from mxnet import nd

        self.mod.forward_backward(batch)
        self.mod.update()
        label = batch.label[0].reshape((-1,))
        mask = label >= 0
        prob = nd.pick(self.mod.get_outputs()[0], label)
        loss_sum = -(nd.log(nd.maximum(prob, 1e-20)) * mask).sum()
        return loss_sum, mask.sum()

    def save(self, path):
        from mxnet import nd

        arg, aux = self.mod.get_params()
        nd.save(path + ".params", {**{f"arg:{k}": v for k, v in arg.items()},
                                   **{f"aux:{k}": v for k, v in aux.items()}})
        # BucketingModule has no optimizer-state API of its own; its bucket modules share one
        # updater, reachable through the current module.
        self.mod._curr_module.save_optimizer_states(path + ".states")

    def load(self, path):
        from mxnet import nd

        saved = nd.load(path + ".params")
        arg = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
        aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
        self.mod.set_params(arg, aux)
        self.mod._curr_module.load_optimizer_states(path + ".states")


class BucketRNN(GluonArm):
    """bucketrnn: ``BucketLoader`` + ``GraphCache`` (one graph per bucket, warmed up front)."""

    def __init__(self, cfg, data, num_buckets=8, cell="unrolled", memory=None):
        self.cfg, self.data, self.num_buckets, self.cell = cfg, data, num_buckets, cell
        self.memory = memory or cfg.memory
        self.title = f"bucketrnn {cell} K={num_buckets}"
        if memory:
            self.title += f", memory={memory!r}"

    def _loader(self):
        from bucketrnn.data.loader import BucketLoader

        return BucketLoader(self.data, batch_size=self.cfg.batch_size,
                            num_buckets=self.num_buckets, shuffle=True, seed=self.cfg.seed,
                            task="lm", num_workers=0)

    def setup(self):
        from bucketrnn.graphs.cache import GraphCache

        started = time.perf_counter()
        loader = self._loader()
        self.build_seconds = time.perf_counter() - started
        self.plan, self.lengths = loader.plan, loader.lengths
        self.sentences_used = self.plan.num_examples - loader.num_dropped
        self.shapes_per_epoch = self.plan.num_buckets
        self.waste_per_epoch = self.plan.waste
        self.graphs = GraphCache(lm_factory(self.cfg, self.cell), memory=self.memory,
                                 keys=self.plan.keys)
        self.init_model(self.graphs.collect_params())

    def batches(self):
        for batch in self._loader():
            real = int(self.lengths[batch.indices[batch.indices >= 0]].sum())
            yield batch, real

    def shape(self, batch):
        return batch[0].bucket_key

    def warm_set(self, met: dict) -> dict:
        """Every bucket of the plan, not only those met: what a full epoch compiles."""
        from mxnet import nd

        template = next(iter(met.values()))[0]
        out = {}
        for key, rows in zip(self.plan.keys, self.plan.batch_sizes):
            ids = nd.zeros((rows, key), dtype=template.data.dtype)
            batch = type(template)(key, ids,
                                   nd.full((rows,), key, dtype=template.valid_length.dtype),
                                   ids, nd.ones(rows), np.arange(rows))
            out[key] = (batch, rows * key)
        return out

    def warm(self, batch):
        gluon_warm(lambda: self.graphs(batch[0]))

    def step(self, batch):
        return gluon_step(self.trainer, lambda: self.graphs(batch[0]), batch[1])


class Ceiling(BucketRNN):
    """No padding at all: every batch holds sentences of one exact length, full batches only,
    built before the clock starts; the same unrolled model through ``GraphCache``."""

    title = "ceiling: exact-length full batches"

    def __init__(self, cfg, data):
        super().__init__(cfg, data)
        self.title = Ceiling.title
        self._cache = []

    def setup(self):
        from bucketrnn.graphs.cache import GraphCache

        lengths = self.data.lengths() - 1
        self.lengths = lengths
        rng = np.random.default_rng(self.cfg.seed)
        b = self.cfg.batch_size
        self.schedule = []
        for length in np.unique(lengths):
            idx = rng.permutation(np.flatnonzero(lengths == length))
            self.schedule += [(int(length), idx[s:s + b]) for s in range(0, len(idx) - b + 1, b)]
        order = rng.permutation(len(self.schedule))
        self.schedule = [self.schedule[i] for i in order]
        self.sentences_used = len(self.schedule) * b
        self.shapes_per_epoch = len({k for k, _ in self.schedule})
        self.waste_per_epoch = 0.0
        self.graphs = GraphCache(lm_factory(self.cfg), memory=self.cfg.memory,
                                 keys=[max(k for k, _ in self.schedule)])
        self.init_model(self.graphs.collect_params())

    def _make(self, length, rows):
        from mxnet import nd

        from bucketrnn import Batch

        data = np.stack([self.data[i][:-1] for i in rows]).astype(np.int32)
        label = np.stack([self.data[i][1:] for i in rows]).astype(np.int32)
        batch = Batch(length, nd.array(data, dtype="int32"),
                      nd.full((len(rows),), length, dtype="int32"),
                      nd.array(label, dtype="int32"), nd.ones(len(rows)), rows.astype(np.int64))
        return batch, length * len(rows)

    def batches(self):
        for i, (length, rows) in enumerate(self.schedule):
            if i == len(self._cache):
                self._cache.append(self._make(length, rows))
            yield self._cache[i]

    warm_set = None


ARMS = {
    "pad_longest": lambda cfg, data: PadLongest(cfg, data),
    "gluonnlp_k10": lambda cfg, data: GluonNLPBuckets(cfg, data, 10),
    "gluonnlp_k32": lambda cfg, data: GluonNLPBuckets(cfg, data, 32),
    "bucketing_module": lambda cfg, data: BucketingModuleArm(cfg, data),
    "bucketrnn_default": lambda cfg, data: BucketRNN(cfg, data),
    "bucketrnn_k16": lambda cfg, data: BucketRNN(cfg, data, 16),
    "bucketrnn_k32": lambda cfg, data: BucketRNN(cfg, data, 32),
    "bucketrnn_fused": lambda cfg, data: BucketRNN(cfg, data, cell="fused"),
    # The library's defaults throughout: BucketLoader() and GraphCache(memory="shared").
    "bucketrnn_shared": lambda cfg, data: BucketRNN(cfg, data, memory="shared"),
    "ceiling": lambda cfg, data: Ceiling(cfg, data),
    # The default arm on one OpenMP thread (ARM_ENV): what every core buys.
    "bucketrnn_1thread": lambda cfg, data: _titled(BucketRNN(cfg, data), "1 thread"),
}

# Environment of an arm's worker process on top of the bench's own (which leaves the thread
# count to bucketrnn: all physical cores).
ARM_ENV = {"bucketrnn_1thread": {"OMP_NUM_THREADS": "1"}}


def _titled(arm, note: str):
    arm.title += f", {note}"
    return arm


def threads_used() -> int | None:
    """OpenMP threads of this process's MXNet: what the user or ``import bucketrnn`` set."""
    import os

    import bucketrnn  # noqa: F401  sets OMP_NUM_THREADS unless the user did

    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else None


def run_arm(name: str, cfg: Config, data, steps: int, start: int = 0, load=None, save=None,
            loss_window: int = 10) -> dict:
    """Warm up and time one window of an arm's schedule; see the module docstring.

    Returns a dict of raw figures: wall and CPU seconds in steps and in the loader, real tokens
    and computed slots of the window, warm-up seconds per shape, the loss, and the per-epoch
    figures. CPU seconds are the whole process's (every MXNet thread): unlike wall time they do
    not grow when other jobs share the machine. The loader's CPU time is the main thread's time
    inside ``next()`` (the loaders run in the training thread, ``num_workers=0``).
    """
    from mxnet import nd

    base = rss_mb()["rss_mb"]
    arm = ARMS[name](cfg, data)
    arm.setup()

    # Scan the window for the shapes it meets (and keep one batch of each for the warm-up).
    met, it = {}, arm.batches()
    for i in range(start + steps):
        batch = next(it, None)
        if batch is None:
            raise ValueError(f"arm {name}: its epoch has only {i} batches, fewer than "
                             f"start + steps = {start + steps}")
        if i >= start:
            met.setdefault(arm.shape(batch), batch)
    del it
    warm = arm.warm_set(met) if getattr(arm, "warm_set", None) else met
    if load:
        arm.load(load)
    nd.waitall()
    after_setup = rss_mb()["rss_mb"]
    warmup = {}
    for shape in sorted(warm, key=lambda s: np.prod(s), reverse=True):
        started = time.perf_counter()
        arm.warm(warm[shape])
        warmup[str(shape)] = time.perf_counter() - started
    del met, warm

    it = arm.batches()
    for _ in range(start):
        next(it)
    losses, tokens, computed = [], [], 0
    load_seconds = load_cpu = 0.0
    nd.waitall()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(steps):
        t, c = time.perf_counter(), time.thread_time()
        batch = next(it)
        load_seconds += time.perf_counter() - t
        load_cpu += time.thread_time() - c
        shape = arm.shape(batch)
        loss_sum, real = arm.step(batch)
        computed += int(np.prod(shape)) if not isinstance(shape, int) else \
            shape * cfg.batch_size
        tokens.append(real)
        if i >= steps - loss_window:
            losses.append((loss_sum, real))
    nd.waitall()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    real_tokens = sum(int(t) if isinstance(t, (int, np.integer)) else int(t.asscalar())
                      for t in tokens)
    loss = float(sum(float(np.asarray(s.asnumpy()).sum()) for s, _ in losses) /
                 sum(float(r) if isinstance(r, (int, np.integer)) else float(r.asscalar())
                     for _, r in losses))
    if save:
        arm.save(save)
    mem = rss_mb()
    return {
        "arm": name, "title": arm.title, "start": start, "steps": steps, "seconds": seconds,
        "load_seconds": load_seconds, "cpu_seconds": cpu_seconds, "load_cpu_seconds": load_cpu,
        "real_tokens": real_tokens, "computed_slots": computed,
        "warmup_seconds": warmup, "loss": loss, "sentences_used": int(arm.sentences_used),
        "sentences_total": len(data), "shapes_per_epoch": int(arm.shapes_per_epoch),
        "waste_per_epoch": float(arm.waste_per_epoch),
        "build_seconds": getattr(arm, "build_seconds", None),
        "rss_base_mb": base, "rss_after_setup_mb": after_setup, "threads": threads_used(),
        **mem,
    }
