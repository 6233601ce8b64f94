"""Word-level LSTM/GRU language model for one bucket length, masked over the valid steps."""

from __future__ import annotations

from bucketrnn.models.base import BucketModel, masked_token_loss
from bucketrnn.models.encoder import RecurrentEncoder, check_positive

__all__ = ["LanguageModel"]


class LanguageModel(BucketModel):
    """Embedding, stacked LSTM/GRU, tied or untied softmax; the graph for one bucket length.

    Parameters
    ----------
    length : int or None
        Bucket length (padded time steps); None with ``cell="foreach"`` (any length).
    vocab_size : int
    embed_size : int, optional
        Defaults to ``hidden_size``.
    hidden_size : int
    num_layers : int
    mode : {"lstm", "gru"}
    dropout : float
        Dropout on the embeddings, between layers and before the output layer.
    tie_weights : bool
        Use the embedding matrix as output weights (needs ``embed_size == hidden_size``).
    cell : {"unrolled", "fused", "foreach"}
        See :class:`~bucketrnn.models.RecurrentEncoder`. ``"foreach"`` builds one graph for
        every length (``length`` may then be None; :meth:`factory` returns one model for all).
    use_sequence_length : bool
        Fused only, GPU only.
    outputs : tuple of {"loss", "logits", "states"}
        What the forward returns, in order. ``"states"`` expands to the final states per layer
        (``[h, c]`` for unrolled and foreach LSTM, ``[h]`` otherwise), each ``(B, hidden_size)``.
    prefix, params :
        Gluon parameter sharing; use :meth:`factory` to get one shared set across lengths.

    Notes
    -----
    Forward: ``(data, valid_length, label, weight)`` with ``data`` int token ids ``(B, length)``,
    ``label`` next-token ids ``(B, length)``, ``weight`` ``(B,)``. The loss is the cross-entropy
    summed over each row's valid steps, times ``weight``: ``(B,)``. Divide its sum by
    ``(valid_length * weight).sum()`` (:func:`~bucketrnn.models.loss_normalizer`) for the mean
    per token. Logits are ``(B, length, vocab_size)``.

    Examples
    --------
    >>> import mxnet as mx
    >>> lm = LanguageModel(6, vocab_size=20, hidden_size=8)
    >>> lm.initialize()
    >>> ids = mx.nd.ones((2, 6), dtype="int32")
    >>> vl, w = mx.nd.array([6, 3], dtype="int32"), mx.nd.ones(2)
    >>> lm(ids, vl, ids, w).shape
    (2,)
    """

    def __init__(
        self,
        length: int,
        vocab_size: int,
        embed_size: int | None = None,
        hidden_size: int = 200,
        num_layers: int = 2,
        mode: str = "lstm",
        dropout: float = 0.0,
        tie_weights: bool = True,
        cell: str = "unrolled",
        use_sequence_length: bool = False,
        outputs=("loss",),
        prefix: str | None = None,
        params=None,
    ):
        super().__init__(length, outputs=outputs, prefix=prefix, params=params)
        check_positive("vocab_size", vocab_size)
        check_positive("embed_size", embed_size, allow_none=True)
        check_positive("hidden_size", hidden_size)
        embed_size = embed_size or hidden_size
        if tie_weights and embed_size != hidden_size:
            raise ValueError(
                "tie_weights=True needs embed_size == hidden_size, got "
                f"embed_size={embed_size} and hidden_size={hidden_size}"
            )
        self.vocab_size, self.tie_weights = vocab_size, bool(tie_weights)
        self.dropout = float(dropout)
        with self.name_scope():
            self.embed_weight = self.params.get("embed_weight", shape=(vocab_size, embed_size))
            self.encoder = RecurrentEncoder(
                length,
                input_size=embed_size,
                hidden_size=hidden_size,
                num_layers=num_layers,
                mode=mode,
                dropout=dropout,
                cell=cell,
                use_sequence_length=use_sequence_length,
                prefix="enc_",
            )
            if not tie_weights:
                self.out_weight = self.params.get("out_weight", shape=(vocab_size, hidden_size))
            self.out_bias = self.params.get("out_bias", shape=(vocab_size,), init="zeros")

    def _compute(self, F, data, valid_length, label, weight, embed_weight, out_bias,
                 out_weight=None):
        hidden, states = self._encode(F, data, valid_length, embed_weight)
        if self.dropout:
            hidden = F.Dropout(hidden, p=self.dropout)
        w = embed_weight if self.tie_weights else out_weight
        logits = F.FullyConnected(hidden, w, out_bias, num_hidden=self.vocab_size, flatten=False)
        loss = masked_token_loss(F, logits, label, valid_length, weight)
        return {"loss": loss, "logits": logits, "states": states}
