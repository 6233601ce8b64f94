"""Encoder-decoder with attention for one ``(src_len, tgt_len)`` bucket, exact on both sides.

The source runs through a :class:`~bucketrnn.models.RecurrentEncoder` (exact under padding:
outputs past a row's valid length are zero, final states are taken at its last valid step). The
decoder is a stack of LSTM/GRU cells unrolled over the target length with input feeding (Luong
et al., 2015): at step ``t`` it reads the embedding of the previous target token and the
previous attentional state, attends over the encoder outputs of the *valid* source steps only
(the scores of padded steps get ``-1e9``, so their weights are exactly 0), and predicts token
``t``. Target padding sits after the valid steps and the decoder is causal, so it changes no
valid step; the loss is summed over the first ``label_length`` steps of each row.

The same parameters serve three roles, each its own graph (``role=``): ``"train"`` (teacher
forcing over a ``(src_len, tgt_len)`` key), ``"encode"`` (one source bucket: encoder outputs,
attention keys and the decoder's first states) and ``"step"`` (one decoder step for any batch:
previous token, attentional state and recurrent states in, log-probabilities and the new states
out). :mod:`bucketrnn.models.decode` builds the last two from a trained model for greedy and
beam-search decoding.
"""

from __future__ import annotations

import numpy as np
from mxnet import gluon
from mxnet.gluon import rnn

from bucketrnn.models.base import BucketModel, masked_token_loss
from bucketrnn.models.encoder import MODES, RecurrentEncoder, check_positive
from bucketrnn.validation import check_choice, check_int

__all__ = ["ATTENTION", "ROLES", "Seq2Seq"]

ATTENTION = ("dot", "mlp")
ROLES = ("train", "encode", "step")
_MASKED = -1e9  # added to the attention score of a padded source step: exp() is exactly 0


class Seq2Seq(BucketModel):
    """LSTM/GRU encoder-decoder with masked attention, trained by teacher forcing.

    Parameters
    ----------
    length : tuple of int
        The bucket key ``(src_len, tgt_len)``: padded source and target steps.
    src_vocab_size : int
        Source token ids in ``data`` lie in ``[0, src_vocab_size)``.
    tgt_vocab_size : int, optional
        Target vocabulary; defaults to ``src_vocab_size`` (one shared vocabulary).
    bos_id : int
        Target id fed to the decoder before the first target token.
    share_embeddings : bool
        One embedding matrix for source and target (needs equal vocabulary sizes).
    embed_size : int, optional
        Defaults to ``hidden_size``.
    hidden_size, num_layers, mode, bidirectional, cell :
        The encoder (:class:`~bucketrnn.models.RecurrentEncoder`); the decoder has
        ``num_layers`` unrolled ``mode`` cells of ``hidden_size``.
    attention : {"dot", "mlp"}
        ``"dot"``: score = decoder state . (W encoder output) (Luong's "general");
        ``"mlp"``: score = v . tanh(W encoder output + U decoder state) (Bahdanau's "concat").
    dropout : float
        On the embeddings, between encoder layers and on the attentional state.
    outputs : tuple of {"loss", "logits", "states"}
        ``logits`` is ``(B, tgt_len, tgt_vocab_size)``; ``states`` the decoder's final states.
    role : {"train", "encode", "step"}
        Which graph this block is (see the module docstring); ``"step"`` ignores ``length``.

    Notes
    -----
    Forward (``role="train"``): ``(data, valid_length, label, weight, label_length)``, the
    :class:`~bucketrnn.Batch` of a ``task="seq2seq"`` loader: source ids ``(B, src_len)``,
    source lengths, target ids ``(B, tgt_len)`` (end the targets with an end-of-sequence token
    so decoding knows where to stop), row weights and target lengths. Returns the summed
    cross-entropy of each row's target tokens times ``weight``: ``(B,)``; divide its sum by
    :func:`~bucketrnn.models.loss_normalizer` (target tokens) for the mean per token.

    Examples
    --------
    >>> import mxnet as mx
    >>> from bucketrnn import GraphCache
    >>> build = Seq2Seq.factory(src_vocab_size=12, tgt_vocab_size=10, bos_id=1, hidden_size=8)
    >>> build.vocab_size, build.batch_inputs[-1]
    ((12, 10), 'label_length')
    >>> model = build((5, 4))
    >>> model.initialize()
    >>> src, tgt = mx.nd.ones((2, 5), dtype="int32"), mx.nd.ones((2, 4), dtype="int32")
    >>> vl, tl = mx.nd.array([5, 2], dtype="int32"), mx.nd.array([4, 1], dtype="int32")
    >>> model(src, vl, tgt, mx.nd.ones(2), tl).shape
    (2,)
    """

    batch_inputs = ("data", "valid_length", "label", "weight", "label_length")
    pair_keys = True

    @property
    def length_agnostic(self) -> bool:
        """False: the decoder is unrolled over ``tgt_len``, so a graph serves one key even with
        a ``cell="foreach"`` encoder (GraphCache read the encoder's True and ran every key on
        the first block built, refusing the next batch's shape)."""
        return False

    def __init__(
        self,
        length: tuple,
        src_vocab_size: int,
        tgt_vocab_size: int | None = None,
        bos_id: int = 1,
        share_embeddings: bool = False,
        embed_size: int | None = None,
        hidden_size: int = 128,
        num_layers: int = 1,
        mode: str = "lstm",
        bidirectional: bool = False,
        attention: str = "dot",
        dropout: float = 0.0,
        cell: str = "unrolled",
        outputs=("loss",),
        role: str = "train",
        prefix: str | None = None,
        params=None,
    ):
        check_choice("role", role, ROLES)
        if not (isinstance(length, tuple) and len(length) == 2):
            raise ValueError(f"length must be a (src_len, tgt_len) pair, got length={length!r}")
        check_positive("src_len", length[0])
        check_positive("tgt_len", length[1])
        super().__init__(tuple(int(n) for n in length), outputs=outputs, prefix=prefix,
                         params=params)
        check_positive("src_vocab_size", src_vocab_size)
        check_positive("tgt_vocab_size", tgt_vocab_size, allow_none=True)
        check_positive("embed_size", embed_size, allow_none=True)
        check_positive("hidden_size", hidden_size)
        check_positive("num_layers", num_layers)
        check_choice("mode", mode, MODES)
        check_choice("attention", attention, ATTENTION)
        tgt_vocab_size = tgt_vocab_size or src_vocab_size
        check_int("bos_id", bos_id, low=0)
        if bos_id >= tgt_vocab_size:
            raise ValueError(f"bos_id must be a target id below tgt_vocab_size={tgt_vocab_size},"
                             f" got bos_id={bos_id}")
        if share_embeddings and tgt_vocab_size != src_vocab_size:
            raise ValueError("share_embeddings=True needs one vocabulary, got src_vocab_size="
                             f"{src_vocab_size} and tgt_vocab_size={tgt_vocab_size}")
        self.role, self.bos_id, self.attention = role, int(bos_id), attention
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.vocab_size = (src_vocab_size, tgt_vocab_size)
        self.share_embeddings = bool(share_embeddings)
        self.hidden_size, self.num_layers, self.mode = hidden_size, num_layers, mode
        self.embed_size = embed_size = embed_size or hidden_size
        self.dropout = float(dropout)
        self.states_per_layer = 2 if mode == "lstm" else 1
        with self.name_scope():
            self.src_embed_weight = self.params.get("src_embed_weight",
                                                    shape=(src_vocab_size, embed_size))
            if not self.share_embeddings:
                self.tgt_embed_weight = self.params.get("tgt_embed_weight",
                                                        shape=(tgt_vocab_size, embed_size))
            self.encoder = RecurrentEncoder(
                length[0], input_size=embed_size, hidden_size=hidden_size,
                num_layers=num_layers, mode=mode, bidirectional=bidirectional, dropout=dropout,
                cell=cell, prefix="enc_")
            enc = self.encoder.output_size
            self.bridge_weight = self.params.get(
                "bridge_weight", shape=(num_layers, hidden_size, enc))
            self.bridge_bias = self.params.get("bridge_bias", shape=(num_layers, hidden_size),
                                               init="zeros")
            self.key_weight = self.params.get("key_weight", shape=(hidden_size, enc))
            if attention == "mlp":
                self.query_weight = self.params.get("query_weight",
                                                    shape=(hidden_size, hidden_size))
                self.score_weight = self.params.get("score_weight", shape=(1, hidden_size))
            self.combine_weight = self.params.get("combine_weight",
                                                  shape=(hidden_size, enc + hidden_size))
            self.out_weight = self.params.get("out_weight", shape=(tgt_vocab_size, hidden_size))
            self.out_bias = self.params.get("out_bias", shape=(tgt_vocab_size,), init="zeros")
            cls = rnn.LSTMCell if mode == "lstm" else rnn.GRUCell
            self.decoder = gluon.nn.HybridSequential(prefix="dec_")
            with self.decoder.name_scope():
                for layer in range(num_layers):
                    size = embed_size + hidden_size if layer == 0 else hidden_size
                    self.decoder.add(cls(hidden_size, input_size=size, prefix=f"l{layer}_"))

    @classmethod
    def declared_vocab_size(cls, kwargs):
        src = kwargs.get("src_vocab_size")
        return None if src is None else (src, kwargs.get("tgt_vocab_size") or src)

    def config(self) -> dict:
        """The constructor arguments other than ``length``, ``outputs``, ``role``, ``prefix``
        and ``params``: build the decoding graphs of this model with them."""
        enc = self.encoder
        return dict(src_vocab_size=self.src_vocab_size, tgt_vocab_size=self.tgt_vocab_size,
                    bos_id=self.bos_id, share_embeddings=self.share_embeddings,
                    embed_size=self.embed_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, mode=self.mode,
                    bidirectional=enc.directions == 2, attention=self.attention,
                    dropout=self.dropout, cell=enc.cell)

    @property
    def num_states(self) -> int:
        """Recurrent state arrays the decoder carries (per layer: ``h, c`` or ``h``)."""
        return self.num_layers * self.states_per_layer

    # -------------------------------------------------------------------- checks
    def validate_inputs(self, ctx, data, *rest) -> None:
        """Context, integer ids and the ``(src_len, tgt_len)`` shapes of a training batch."""
        self.check_context(ctx)
        if self.role != "train":
            return
        if np.dtype(data.dtype).kind not in "iu":
            raise TypeError(f"data must hold integer token ids for Seq2Seq, got data dtype "
                            f"{np.dtype(data.dtype).name}")
        src, tgt = self.length
        if data.ndim != 2 or data.shape[1] != src:
            raise ValueError(f"data must be shaped (batch, {src}) for this model of key "
                             f"{self.length}, got data.shape={data.shape}")
        if len(rest) != 4:
            raise ValueError("Seq2Seq takes (data, valid_length, label, weight, label_length), "
                             f"got {1 + len(rest)} inputs")
        label = rest[1]
        if label is None or label.ndim != 2 or label.shape[1] != tgt:
            raise ValueError(f"label must be target ids shaped (batch, {tgt}) for this model of "
                             f"key {self.length}, got label.shape="
                             f"{None if label is None else label.shape}")

    # -------------------------------------------------------------------- pieces
    def _encode(self, F, data, valid_length, p):
        """Encoder outputs ``(B, S, E)``, attention keys ``(B, S, H)``, first decoder states."""
        x = F.Embedding(data, p["src_embed_weight"], input_dim=self.src_vocab_size,
                        output_dim=self.embed_size)
        if self.dropout:
            x = F.Dropout(x, p=self.dropout)
        memory, states = self.encoder(x, valid_length)
        keys = F.FullyConnected(memory, p["key_weight"], no_bias=True,
                                num_hidden=self.hidden_size, flatten=False)
        # Final hidden states per layer: h of each direction (an unrolled LSTM also gives c).
        per_dir = 2 if (self.mode == "lstm" and self.encoder.cell == "unrolled") else 1
        dirs = self.encoder.directions
        first = []
        for layer in range(self.num_layers):
            hs = [states[(layer * dirs + d) * per_dir] for d in range(dirs)]
            h = hs[0] if dirs == 1 else F.concat(*hs, dim=1)
            w = F.reshape(F.slice_axis(p["bridge_weight"], axis=0, begin=layer, end=layer + 1),
                          shape=(-3, -2))
            b = F.reshape(F.slice_axis(p["bridge_bias"], axis=0, begin=layer, end=layer + 1),
                          shape=(-1,))
            h0 = F.tanh(F.FullyConnected(h, w, b, num_hidden=self.hidden_size))
            first.append(h0)
            if self.mode == "lstm":
                first.append(F.zeros_like(h0))
        return memory, keys, first

    def _step(self, F, emb, feed, states, memory, keys, bias, p):
        """One decoder step: new attentional state ``(B, H)`` and recurrent states."""
        x = F.concat(emb, feed, dim=1)
        new = []
        per = self.states_per_layer
        for layer, cell in enumerate(self.decoder):
            x, st = cell(x, states[layer * per:(layer + 1) * per])
            new.extend(st)
        query = x
        if self.attention == "dot":
            scores = F.batch_dot(keys, F.expand_dims(query, axis=2))  # (B, S, 1)
        else:
            q = F.FullyConnected(query, p["query_weight"], no_bias=True,
                                 num_hidden=self.hidden_size)
            hidden = F.tanh(F.broadcast_add(keys, F.expand_dims(q, axis=1)))
            scores = F.FullyConnected(hidden, p["score_weight"], no_bias=True, num_hidden=1,
                                      flatten=False)
        scores = F.broadcast_add(F.reshape(scores, shape=(0, -1)), bias)  # (B, S)
        alpha = F.softmax(scores, axis=-1)
        context = F.reshape(F.batch_dot(F.expand_dims(alpha, axis=1), memory), shape=(0, -1))
        feed = F.tanh(F.FullyConnected(F.concat(context, query, dim=1), p["combine_weight"],
                                       no_bias=True, num_hidden=self.hidden_size))
        if self.dropout:
            feed = F.Dropout(feed, p=self.dropout)
        return feed, new

    def _tgt_embed(self, F, ids, p):
        w = p["src_embed_weight"] if self.share_embeddings else p["tgt_embed_weight"]
        x = F.Embedding(ids, w, input_dim=self.tgt_vocab_size, output_dim=self.embed_size)
        return F.Dropout(x, p=self.dropout) if self.dropout else x

    @staticmethod
    def _source_bias(F, memory, valid_length):
        """``(B, S)``: 0 on a row's valid source steps, ``-1e9`` on its padding."""
        steps = F.contrib.arange_like(memory, axis=1)  # (S,)
        pad = F.broadcast_greater_equal(F.expand_dims(steps, axis=0),
                                        F.expand_dims(F.cast(valid_length, "float32"), axis=1))
        return pad * _MASKED

    def _logits(self, F, feed, p):
        return F.FullyConnected(feed, p["out_weight"], p["out_bias"],
                                num_hidden=self.tgt_vocab_size, flatten=False)

    # -------------------------------------------------------------------- graphs
    def hybrid_forward(self, F, *inputs, **p):
        if self.role == "encode":
            data, valid_length = inputs
            memory, keys, first = self._encode(F, data, valid_length, p)
            return (memory, keys, self._source_bias(F, memory, valid_length), *first)
        if self.role == "step":
            prev, feed, memory, keys, bias, *states = inputs
            feed, states = self._step(F, self._tgt_embed(F, prev, p), feed, states, memory,
                                      keys, bias, p)
            return (F.log_softmax(self._logits(F, feed, p), axis=-1), feed, *states)
        data, valid_length, label, weight, label_length = inputs
        memory, keys, states = self._encode(F, data, valid_length, p)
        bias = self._source_bias(F, memory, valid_length)
        tgt_len = self.length[1]
        bos = F.ones_like(F.slice_axis(label, axis=1, begin=0, end=1)) * self.bos_id
        prev = bos if tgt_len == 1 else F.concat(
            bos, F.slice_axis(label, axis=1, begin=0, end=tgt_len - 1), dim=1)
        emb = self._tgt_embed(F, prev, p)
        feed = F.zeros_like(F.sum(keys, axis=1))  # (B, H): no attentional state yet
        steps = (F.split(emb, num_outputs=tgt_len, axis=1, squeeze_axis=True) if tgt_len > 1
                 else [F.reshape(emb, shape=(0, -1))])
        outs = []
        for x in steps:
            feed, states = self._step(F, x, feed, states, memory, keys, bias, p)
            outs.append(F.expand_dims(feed, axis=1))
        logits = self._logits(F, F.concat(*outs, dim=1) if tgt_len > 1 else outs[0], p)
        loss = masked_token_loss(F, logits, label, label_length, weight)
        result = {"loss": loss, "logits": logits, "states": states}
        out = []
        for name in self.outputs:
            out.extend(result["states"]) if name == "states" else out.append(result[name])
        return out[0] if len(out) == 1 else tuple(out)
