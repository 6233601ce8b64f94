"""LSTM/GRU sequence classifier for one bucket length: the last valid state decides."""

from __future__ import annotations

from bucketrnn.models.base import BucketModel
from bucketrnn.models.encoder import RecurrentEncoder, check_positive

__all__ = ["SequenceClassifier"]


class SequenceClassifier(BucketModel):
    """Embedding (or float features), stacked (bi)directional LSTM/GRU, dense softmax.

    The class scores come from the state at each row's last valid step
    (``SequenceLast``); with ``bidirectional=True`` the reverse direction runs over the valid
    part only (``SequenceReverse(use_sequence_length=True)``), so its final state is the one
    after reading the first token, exactly as on the unpadded sequence.

    Parameters
    ----------
    length : int or None
        Bucket length; None with ``cell="foreach"`` (any length).
    num_classes : int
    vocab_size : int, optional
        Token ids in ``data`` (int ``(B, length)``). Give either this or ``input_size``.
    input_size : int, optional
        Float features in ``data`` (``(B, length, input_size)``).
    embed_size : int, optional
        Defaults to ``hidden_size``.
    hidden_size, num_layers, mode, bidirectional, dropout, cell, use_sequence_length :
        See :class:`~bucketrnn.models.RecurrentEncoder`; with ``cell="foreach"`` one graph
        serves every length (``length`` may be None; :meth:`factory` returns one model).
    outputs : tuple of {"loss", "logits", "states"}
        ``logits`` is ``(B, num_classes)``; ``states`` expands to the final states per layer and
        direction.

    Notes
    -----
    Forward: ``(data, valid_length, label, weight)`` with ``label`` class ids ``(B,)``. The loss
    is the cross-entropy per row times ``weight``: ``(B,)``; divide its sum by
    ``weight.sum()`` for the mean.

    Examples
    --------
    >>> import mxnet as mx
    >>> clf = SequenceClassifier(5, num_classes=3, vocab_size=20, hidden_size=8,
    ...                          bidirectional=True)
    >>> clf.initialize()
    >>> ids = mx.nd.ones((2, 5), dtype="int32")
    >>> vl = mx.nd.array([5, 2], dtype="int32")
    >>> clf(ids, vl, mx.nd.array([0, 2]), mx.nd.ones(2)).shape
    (2,)
    """

    def __init__(
        self,
        length: int,
        num_classes: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        embed_size: int | None = None,
        hidden_size: int = 128,
        num_layers: int = 1,
        mode: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        cell: str = "unrolled",
        use_sequence_length: bool = False,
        outputs=("loss",),
        prefix: str | None = None,
        params=None,
    ):
        super().__init__(length, outputs=outputs, prefix=prefix, params=params)
        check_positive("num_classes", num_classes)
        check_positive("hidden_size", hidden_size)
        if (vocab_size is None) == (input_size is None):
            raise ValueError(
                "give exactly one of vocab_size (token ids) or input_size (float features), "
                f"got vocab_size={vocab_size!r}, input_size={input_size!r}"
            )
        check_positive("vocab_size", vocab_size, allow_none=True)
        check_positive("input_size", input_size, allow_none=True)
        check_positive("embed_size", embed_size, allow_none=True)
        self.embed_ids = vocab_size is not None
        self.vocab_size, self.num_classes = vocab_size, num_classes
        self.dropout = float(dropout)
        size = input_size
        with self.name_scope():
            if self.embed_ids:
                size = embed_size or hidden_size
                self.embed_weight = self.params.get("embed_weight", shape=(vocab_size, size))
            self.encoder = RecurrentEncoder(
                length,
                input_size=size,
                hidden_size=hidden_size,
                num_layers=num_layers,
                mode=mode,
                bidirectional=bidirectional,
                dropout=dropout,
                cell=cell,
                use_sequence_length=use_sequence_length,
                prefix="enc_",
            )
            self.out_weight = self.params.get(
                "out_weight", shape=(num_classes, self.encoder.output_size)
            )
            self.out_bias = self.params.get("out_bias", shape=(num_classes,), init="zeros")

    def _compute(self, F, data, valid_length, label, weight, out_weight, out_bias,
                 embed_weight=None):
        hidden, states = self._encode(F, data, valid_length, embed_weight)
        last = F.SequenceLast(hidden, valid_length, use_sequence_length=True, axis=1)
        if self.encoder.directions == 2:
            # The reverse half of the last valid output is only its first step; the reverse
            # direction's summary is its state after the whole (valid) sequence: step 0.
            half = self.encoder.hidden_size
            first = F.slice_axis(F.slice_axis(hidden, axis=1, begin=0, end=1), axis=2,
                                 begin=half, end=2 * half)
            last = F.concat(F.slice_axis(last, axis=1, begin=0, end=half),
                            F.reshape(first, shape=(0, -1)), dim=1)
        if self.dropout:
            last = F.Dropout(last, p=self.dropout)
        logits = F.FullyConnected(last, out_weight, out_bias, num_hidden=self.num_classes)
        loss = -F.pick(F.log_softmax(logits, axis=-1), label, axis=-1) * weight
        return {"loss": loss, "logits": logits, "states": states}
