"""Greedy and beam-search decoding of a trained :class:`~bucketrnn.models.Seq2Seq`, batched.

Decoding reuses compiled graphs: one hybridized *encoder* graph per source bucket length (the
source side is padded to its bucket like training data, and masked the same way) and one
hybridized *decoder step* graph for every batch (token, attentional state and recurrent states
in; log-probabilities and the new states out). The step graph runs once per output position for
the whole batch (times the beam); selection happens on the host in numpy. All graphs share the
trained model's parameters (no copy).

Scores are sums of token log-probabilities (the end-of-sequence token included). With
``length_penalty=a > 0`` hypotheses are ranked by ``score / length ** a`` (``length`` counts the
tokens including ``<eos>``); the raw sum is still what the search extends.

Examples
--------
>>> import mxnet as mx
>>> from bucketrnn.models import Seq2Seq
>>> model = Seq2Seq((4, 4), src_vocab_size=9, tgt_vocab_size=7, bos_id=1, hidden_size=8)
>>> model.initialize(mx.init.Xavier())
>>> dec = Seq2SeqDecoder(model, eos_id=1)
>>> src = [[3, 4, 5], [6, 2]]
>>> greedy = dec.greedy(src, max_length=5)
>>> beam = dec.beam(src, beam_size=1, max_length=5)
>>> [h[0][0] for h in beam] == [g[0] for g in greedy]
True
>>> len(dec.encoders), dec.steps > 0
(1, True)
"""

from __future__ import annotations

import warnings

import numpy as np
from mxnet import name as mx_name
from mxnet import nd
from mxnet import symbol as sym

from bucketrnn.compat import MAX_ARRAY_ELEMENTS
from bucketrnn.errors import GraphTooLargeError
from bucketrnn.graphs.cache import NODE_BYTES, PROBE, format_bytes
from bucketrnn.graphs.shared import available_memory, graph_bytes
from bucketrnn.models.seq2seq import Seq2Seq
from bucketrnn.validation import check_int, is_int

__all__ = ["Seq2SeqDecoder"]



class Seq2SeqDecoder:
    """Encoder graphs per source length and one step graph, sharing ``model``'s parameters.

    Parameters
    ----------
    model : Seq2Seq
        Any block of the trained model (e.g. ``graphs.block(key)``); its parameters are used.
    eos_id : int
        The target id that ends a hypothesis (``<eos>``: id 1 in the app's vocabularies).
    ctx : mx.Context, optional
        Where the graphs run; default the context of the model's parameters.
    memory_limit : "auto", int or None
        Refuse (:class:`~bucketrnn.errors.GraphTooLargeError`) to decode a batch whose
        :meth:`estimate_memory` exceeds this many bytes (``"auto"``: the memory available on
        ``ctx``), before its encoder graph is built, as :class:`~bucketrnn.GraphCache` does for
        training graphs. None turns the check off.
    """

    def __init__(self, model, eos_id: int = 1, ctx=None, memory_limit="auto"):
        if not isinstance(model, Seq2Seq):
            raise TypeError(f"model must be a Seq2Seq block, got {type(model).__name__}")
        check_int("eos_id", eos_id, low=0)
        if eos_id >= model.tgt_vocab_size:
            raise ValueError(f"eos_id must be a target id below tgt_vocab_size="
                             f"{model.tgt_vocab_size}, got eos_id={eos_id}")
        if not (memory_limit is None or memory_limit == "auto"
                or (is_int(memory_limit) and memory_limit > 0)):
            raise ValueError(f"memory_limit must be 'auto', a number of bytes > 0 or None, got "
                             f"memory_limit={memory_limit!r}")
        self.memory_limit = memory_limit
        self._fits: dict = {}  # rows -> the encoder's sizes at two probe lengths
        self._checked: set = set()
        self.model, self.eos_id, self.bos_id = model, int(eos_id), model.bos_id
        self._config = model.config()
        self._params = model.collect_params()
        first = next(iter(self._params.values()))
        self.ctx = ctx or first.list_ctx()[0]
        self.encoders: dict = {}
        self._ran: set = set()
        self._step = self._graph((1, 1), "step")
        self.steps = 0  # step-graph calls, for tests and reports

    def _graph(self, key, role):
        block = Seq2Seq(key, role=role, prefix=self.model.prefix, params=self._params,
                        **self._config)
        block.hybridize(active=True)
        return block

    def _run(self, block, *args):
        if block in self._ran:
            return block(*args)
        # An encoder graph does not use the decoder's parameters and the step graph not the
        # encoder's: Gluon warns about that once, when it builds the graph. It is intended.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is not used by any computation")
            out = block(*args)
        self._ran.add(block)
        return out

    def encoder(self, src_len: int):
        """The (hybridized) encoder graph of one source bucket length, built once."""
        if src_len not in self.encoders:
            self.encoders[src_len] = self._graph((int(src_len), 1), "encode")
        return self.encoders[src_len]

    # ------------------------------------------------------------------ memory
    def estimate_memory(self, src_len: int, rows: int = 1, beam_size: int = 1) -> int | None:
        """Bytes decoding ``rows`` sources padded to ``src_len`` steps with ``beam_size``
        hypotheses each is expected to need, estimated without building a graph of that
        length; None if it cannot be estimated.

        The sum of the encoder graph's arrays and :data:`~bucketrnn.graphs.cache.NODE_BYTES`
        per node (as :meth:`GraphCache.estimate_memory <bucketrnn.GraphCache.estimate_memory>`
        counts a graph), extrapolated linearly in ``src_len`` from two traces at
        :data:`~bucketrnn.graphs.cache.PROBE` and twice that (exact for an unrolled encoder;
        a ``foreach`` encoder's per-step arrays are not counted), and the step graph's arrays
        and nodes with its inputs (the encoder's outputs for ``rows * beam_size`` rows), its
        shapes inferred at ``src_len``. The trained parameters exist already: not counted.
        """
        check_int("src_len", src_len, low=1)
        check_int("rows", rows, low=1)
        check_int("beam_size", beam_size, low=1)
        return self._estimate(int(src_len), int(rows), int(beam_size))

    def _estimate(self, src_len, rows, beam, fit=True):
        try:
            if fit:
                if rows not in self._fits:
                    self._fits[rows] = [self._encoder_sizes(n, rows) for n in (PROBE, 2 * PROBE)]
                (a0, n0, s0), (a1, n1, s1) = self._fits[rows]
                grow = (src_len - PROBE) / PROBE
                activations, nodes = a0 + (a1 - a0) * grow, n0 + (n1 - n0) * grow
                # An output's axis that grew with the probe length is the source axis.
                shapes = [tuple(int(d0 + (d1 - d0) * grow) for d0, d1 in zip(x0, x1))
                          for x0, x1 in zip(s0, s1)]
            else:
                activations, nodes, shapes = self._encoder_sizes(src_len, rows)
            step_activations, step_nodes, step_inputs = self._step_sizes(shapes, rows * beam)
        except Exception:  # best effort, as GraphCache's: no estimate, never a broken decode
            return None
        return int(max(activations, 0) + step_activations + step_inputs
                   + NODE_BYTES * (max(nodes, 0) + step_nodes))

    def _encoder_sizes(self, src_len, rows):
        """(activations, nodes, output shapes) of the encoder graph traced at ``src_len``."""
        # A name manager of its own, as GraphCache's probes: these blocks must not advance
        # the counter that names real blocks.
        with mx_name.NameManager():
            block = Seq2Seq((src_len, 1), role="encode", prefix=self.model.prefix,
                            params=self._params, **self._config)
            out = block(sym.var("data"), sym.var("valid_length"))
        graph = sym.Group(list(out))
        shapes = {"data": (rows, src_len), "valid_length": (rows,)}
        dtypes = {"data": np.int32, "valid_length": np.int32}
        got = graph_bytes(graph, shapes, dtypes)
        _, out_shapes, _ = graph.infer_shape(**shapes)
        return float(got["activations"]), float(got["nodes"]), [tuple(s) for s in out_shapes]

    def _step_sizes(self, encoded, rows):
        """(activations, nodes, input bytes) of the step graph for ``rows`` rows attending
        over encoder outputs shaped ``encoded`` (for the encoder's own rows)."""
        names = ["prev", "feed"] + [f"in{i}" for i in range(len(encoded))]
        with mx_name.NameManager():
            out = self._step(*[sym.var(n) for n in names])
        graph = sym.Group(list(out))
        shapes = {"prev": (rows,), "feed": (rows, self.model.hidden_size)}
        shapes.update({n: (rows,) + s[1:] for n, s in zip(names[2:], encoded)})
        dtypes = {n: np.float32 for n in names}
        dtypes["prev"] = np.int32
        got = graph_bytes(graph, shapes, dtypes)
        inputs = sum(4 * int(np.prod(s, dtype=np.int64)) for s in shapes.values())
        return float(got["activations"]), float(got["nodes"]), float(inputs)

    def check_memory(self, src_len: int, rows: int, beam_size: int = 1) -> None:
        """Refuse (:class:`~bucketrnn.errors.GraphTooLargeError`) decoding ``rows`` sources of
        ``src_len`` steps whose :meth:`estimate_memory` exceeds ``memory_limit``, and a beam
        whose arrays MXNet cannot index (``ValueError``); a size that passed once is not
        estimated again."""
        key = (int(src_len), int(rows), int(beam_size))
        self._check_array_size(*key)
        if self.memory_limit is None or key in self._checked:
            return
        estimate = self.estimate_memory(*key)
        auto = self.memory_limit == "auto"
        limit = available_memory(self.ctx) if auto else int(self.memory_limit)
        if estimate is not None and limit is not None and estimate > limit:
            where = (f"only {format_bytes(limit)} is available on {self.ctx}" if auto
                     else f"memory_limit={self.memory_limit} ({format_bytes(limit)})")
            raise GraphTooLargeError(
                f"decoding {rows} source(s) of {src_len} steps (beam size {beam_size}) needs "
                f"about {format_bytes(estimate)} (estimated before building it) but {where}: lower "
                "the largest bucket length (split or cut long sources), decode fewer sources "
                "a batch (batch_size), or pass memory_limit= (None turns this check off)")
        self._checked.add(key)

    # ------------------------------------------------------------------ inputs
    def _pad(self, sources, src_len):
        lengths = np.array([len(s) for s in sources], dtype=np.int64)
        if (lengths < 1).any():
            raise ValueError(f"source {int(np.flatnonzero(lengths < 1)[0])} is empty: every "
                             "source needs at least one token")
        src_len = int(lengths.max()) if src_len is None else int(src_len)
        if lengths.max() > src_len:
            raise ValueError(f"source {int(np.argmax(lengths))} has {int(lengths.max())} tokens, "
                             f"more than src_len={src_len}")
        data = np.zeros((len(sources), src_len), dtype=np.int32)
        for i, s in enumerate(sources):
            ids = np.asarray(s, dtype=np.int64)
            if ids.min() < 0 or ids.max() >= self.model.src_vocab_size:
                raise ValueError(f"source {i} has token id {int(ids.max())}; ids must be in "
                                 f"[0, {self.model.src_vocab_size})")
            data[i, :ids.size] = ids
        return (nd.array(data, ctx=self.ctx, dtype="int32"),
                nd.array(lengths, ctx=self.ctx, dtype="int32"), src_len)

    def _check_array_size(self, src_len, sources, repeat):
        if repeat > 1:
            # Every array of the search holds rows = sources x beam_size: the repeated encoder
            # outputs and each step's log-probabilities must fit MXNet's int32 array size.
            rows, width = sources * repeat, self.model.hidden_size * (
                self.model.encoder.directions)
            widest = max(src_len * width, self.model.tgt_vocab_size)
            if rows * widest > MAX_ARRAY_ELEMENTS:
                most = max(MAX_ARRAY_ELEMENTS // (sources * widest), 1)
                raise ValueError(
                    f"beam_size={repeat} is too large for {sources} source(s) of "
                    f"{src_len} steps: its arrays would hold {rows} x {widest} = "
                    f"{rows * widest} values, more than {MAX_ARRAY_ELEMENTS} (MXNet's int32 "
                    f"array size); use beam_size <= {most} or fewer sources a batch")

    def _start(self, sources, src_len, repeat):
        data, vl, src_len = self._pad(sources, src_len)
        self.check_memory(src_len, len(sources), repeat)  # before its encoder graph exists
        memory, keys, bias, *states = self._run(self.encoder(src_len), data, vl)
        if repeat > 1:
            memory, keys, bias = (a.repeat(repeat, axis=0) for a in (memory, keys, bias))
            states = [s.repeat(repeat, axis=0) for s in states]
        rows = len(sources) * repeat
        feed = nd.zeros((rows, self.model.hidden_size), ctx=self.ctx)
        prev = nd.full((rows,), self.bos_id, ctx=self.ctx, dtype="int32")
        return (memory, keys, bias), feed, states, prev, src_len

    def _advance(self, prev, feed, fixed, states):
        self.steps += 1
        logp, feed, *states = self._run(self._step, prev, feed, *fixed, *states)
        return logp.asnumpy().astype(np.float64), feed, states

    @staticmethod
    def _limits(max_length, sources) -> np.ndarray:
        """Most tokens per source (``<eos>`` included): ``max_length``, or ``2 x`` the
        source's own length ``+ 10``: never its bucket's, so a source decodes the same
        whatever it is batched or padded with."""
        if max_length is None:
            return np.array([2 * len(src) + 10 for src in sources], dtype=np.int64)
        return np.full(len(sources), check_int("max_length", max_length, low=1), np.int64)

    # ------------------------------------------------------------------ search
    def greedy(self, sources, max_length: int | None = None, src_len: int | None = None):
        """The most probable next token at every step, for a batch of sources.

        Parameters
        ----------
        sources : list of sequences of int
            Source token ids (not padded).
        max_length : int, optional
            Most tokens generated per source (``<eos>`` included); default ``2 x`` the source's
            own length ``+ 10`` (not its bucket's: the result does not depend on the batch).
        src_len : int, optional
            Pad the sources to this length (their bucket); default the longest source.

        Returns
        -------
        list of (list of int, float)
            Per source: the target ids without ``<eos>``, and the summed log-probability.
        """
        limits = self._limits(max_length, sources)
        fixed, feed, states, prev, src_len = self._start(sources, src_len, 1)
        n = len(sources)
        out = [[] for _ in range(n)]
        score = np.zeros(n)
        done = np.zeros(n, dtype=bool)
        for t in range(int(limits.max())):
            done |= limits <= t  # a source that had its tokens stops where it would alone
            if done.all():
                break
            logp, feed, states = self._advance(prev, feed, fixed, states)
            tok = logp.argmax(axis=1)
            live = ~done
            score[live] += logp[live, tok[live]]
            for i in np.flatnonzero(live & (tok != self.eos_id)):
                out[i].append(int(tok[i]))
            done |= tok == self.eos_id
            if done.all():
                break
            prev = nd.array(tok, ctx=self.ctx, dtype="int32")
        return [(ids, float(s)) for ids, s in zip(out, score)]

    def beam(self, sources, beam_size: int = 4, max_length: int | None = None,
             length_penalty: float = 0.0, n_best: int | None = None,
             src_len: int | None = None):
        """Beam search over a batch of sources, ``beam_size`` hypotheses each.

        Parameters
        ----------
        sources, max_length, src_len :
            As for :meth:`greedy`.
        beam_size : int
        length_penalty : float
            Rank by ``score / length ** length_penalty`` (0: by the summed log-probability).
        n_best : int, optional
            Hypotheses returned per source (default ``beam_size``).

        Returns
        -------
        list of list of (list of int, float)
            Per source, hypotheses best first: target ids without ``<eos>`` and the ranking
            score (the summed log-probability when ``length_penalty=0``).
        """
        k = check_int("beam_size", beam_size, low=1)
        n_best = k if n_best is None else check_int("n_best", n_best, low=1)
        if not (isinstance(length_penalty, (int, float)) and length_penalty >= 0):
            raise ValueError(f"length_penalty must be a number >= 0, got "
                             f"length_penalty={length_penalty!r}")
        limits = self._limits(max_length, sources)
        fixed, feed, states, prev, src_len = self._start(sources, src_len, k)
        n, eos = len(sources), self.eos_id
        scores = np.full((n, k), -np.inf)
        scores[:, 0] = 0.0  # the k beams start identical: expand one
        fin = np.zeros((n, k), dtype=bool)
        lengths = np.zeros((n, k), dtype=np.int64)
        history = []  # per step: (beam each hypothesis came from, its token)
        for t in range(int(limits.max())):
            # A source that had its tokens: its hypotheses end here (they continue with <eos>
            # for free), as they would decoded alone.
            fin[limits <= t] = True
            if fin.all():
                break
            logp, feed, states = self._advance(prev, feed, fixed, states)
            vocab = logp.shape[1]
            logp = logp.reshape(n, k, vocab)
            logp[fin] = -np.inf  # a finished hypothesis only continues with <eos>, for free
            logp[fin, eos] = 0.0
            cand = (scores[:, :, None] + logp).reshape(n, k * vocab)
            top = np.argsort(-cand, axis=1, kind="stable")[:, :k]
            origin, tok = top // vocab, top % vocab
            scores = np.take_along_axis(cand, top, axis=1)
            was_fin = np.take_along_axis(fin, origin, axis=1)
            lengths = np.take_along_axis(lengths, origin, axis=1) + ~was_fin
            fin = was_fin | (tok == eos)
            history.append((origin, tok))
            rows = (np.arange(n)[:, None] * k + origin).ravel()
            index = nd.array(rows, ctx=self.ctx, dtype="int64")
            feed = feed.take(index)
            states = [s.take(index) for s in states]
            if fin.all():
                break
            prev = nd.array(tok.ravel(), ctx=self.ctx, dtype="int32")
        rank = scores / np.maximum(lengths, 1) ** length_penalty if length_penalty else scores
        results = []
        for i in range(n):
            hyps = []
            for j in np.argsort(-rank[i], kind="stable"):
                if not np.isfinite(rank[i, j]):
                    continue
                ids, beam = [], j
                for origin, tok in reversed(history):
                    ids.append(int(tok[i, beam]))
                    beam = origin[i, beam]
                ids.reverse()
                if eos in ids:
                    ids = ids[:ids.index(eos)]
                hyps.append((ids, float(rank[i, j])))
            results.append(hyps[:n_best])
        return results
