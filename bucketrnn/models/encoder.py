"""Recurrent encoder for one bucket length (or any length), exact under padding.

The reference models (:class:`~bucketrnn.models.LanguageModel`,
:class:`~bucketrnn.models.SequenceClassifier`, :class:`~bucketrnn.models.SequenceTagger` and the
encoder of :class:`~bucketrnn.models.Seq2Seq`) run their sequences through a
:class:`RecurrentEncoder`. It is built for one fixed length (the bucket length), or for every
length with ``cell="foreach"``, and guarantees that outputs at valid steps and final states equal
those of the unpadded sequence:

* ``cell="unrolled"``: ``LSTMCell``/``GRUCell`` unrolled over the length with
  ``valid_length`` (states are taken at the last valid step, outputs past it are zero); the
  input products of all steps run as one product before the loop
  (:func:`bucketrnn.models.unroll.unroll`), the state products step by step.
* ``cell="fused"``: one fused ``gluon.rnn.LSTM``/``GRU`` layer per layer and direction. The
  fused CPU kernel ignores sequence lengths, so padding is handled explicitly: pads sit after the
  valid part (causal, so valid steps are unaffected), the reverse direction reverses the valid
  part only (``SequenceReverse(use_sequence_length=True)``), and final hidden states are picked
  with ``SequenceLast``. The fused kernel does not expose the LSTM memory cell at the last valid
  step, so fused models report hidden states ``h`` only.
* ``cell="foreach"``: the same ``LSTMCell``/``GRUCell`` (same parameter names and shapes as
  ``"unrolled"``, so the two load each other's parameters), its step traced once and looped by
  ``F.contrib.foreach`` over the time axis: one hybridized graph serves every length
  (:attr:`RecurrentEncoder.length_agnostic`). States are carried over valid steps only
  (``where(t < valid_length, new, old)``), so the final states are those at the last valid step,
  ``[h, c]`` for LSTM; outputs past the valid part are zero. The step mask is made from the
  inputs' own shape (``SequenceMask`` of ones), never a separate mask input, so shape inference
  inside the loop needs nothing but ``x`` (keras-mxnet's ``unroll=False`` masking fed an
  ``Embedding`` mask into ``foreach`` and failed there).
"""

from __future__ import annotations

from mxnet import gluon
from mxnet.gluon import rnn

from bucketrnn.models.unroll import unroll
from bucketrnn.validation import check_choice, check_int

__all__ = ["AGNOSTIC_CELLS", "CELLS", "MODES", "RecurrentEncoder", "check_positive",
           "reverse_valid"]

MODES = ("lstm", "gru")
CELLS = ("unrolled", "fused", "foreach")
# Cells whose one graph runs at any length: the models' factories build one block for all.
AGNOSTIC_CELLS = ("foreach",)


def check_positive(name: str, value, allow_none: bool = False) -> None:
    """An integer >= 1 (or None when ``allow_none``): the models' size arguments."""
    check_int(name, value, low=1, allow_none=allow_none)


def reverse_valid(F, x, valid_length):
    """Reverse ``x`` (``NTC``) along time over each row's valid part only; pads stay at the end."""
    return F.swapaxes(
        F.SequenceReverse(F.swapaxes(x, 0, 1), valid_length, use_sequence_length=True), 0, 1
    )


class RecurrentEncoder(gluon.HybridBlock):
    """Stacked (bi)directional LSTM/GRU over sequences padded to one fixed ``length``.

    Parameters
    ----------
    length : int or None
        Padded length of the inputs (the bucket length); fixed into the unrolled graph. With
        ``cell="foreach"`` the graph takes any length: ``length`` may be None and is not
        checked.
    input_size : int
        Feature size of each step.
    hidden_size : int
        Units per layer and direction.
    num_layers : int
        Stacked layers.
    mode : {"lstm", "gru"}
    bidirectional : bool
        Add a reverse direction per layer; outputs are concatenated (``2 * hidden_size``).
    dropout : float
        Dropout between layers (not after the last one).
    cell : {"unrolled", "fused", "foreach"}
    use_sequence_length : bool
        Fused only: also hand the lengths to the fused kernel. Only the GPU kernel honours them,
        so this is refused on CPU by :meth:`check_context`.

    Notes
    -----
    ``hybrid_forward(x, valid_length)`` returns ``(outputs, states)``: outputs ``(B, length,
    hidden_size * directions)``, zero past each row's valid length, and a list of final states,
    per layer then per direction: ``[h, c]`` for unrolled and foreach LSTM, ``[h]`` otherwise.

    Examples
    --------
    >>> import mxnet as mx
    >>> enc = RecurrentEncoder(5, input_size=3, hidden_size=4)
    >>> enc.initialize()
    >>> out, states = enc(mx.nd.ones((2, 5, 3)), mx.nd.array([5, 2], dtype="int32"))
    >>> out.shape, len(states)
    ((2, 5, 4), 2)
    """

    def __init__(
        self,
        length: int,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        mode: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        cell: str = "unrolled",
        use_sequence_length: bool = False,
        prefix: str | None = None,
        params=None,
    ):
        super().__init__(prefix=prefix, params=params)
        check_choice("cell", cell, CELLS)
        check_positive("length", length, allow_none=cell in AGNOSTIC_CELLS)
        check_positive("input_size", input_size)
        check_positive("hidden_size", hidden_size)
        check_positive("num_layers", num_layers)
        check_choice("mode", mode, MODES)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got dropout={dropout!r}")
        if use_sequence_length and cell != "fused":
            raise ValueError(
                "use_sequence_length applies to cell='fused' only, got "
                f"use_sequence_length=True with cell={cell!r}"
            )
        self.length = None if length is None else int(length)
        #: One graph for every length (``cell="foreach"``): ``length`` is not fixed into it.
        self.length_agnostic = cell in AGNOSTIC_CELLS
        self.mode, self.cell = mode, cell
        self.num_layers, self.hidden_size = num_layers, hidden_size
        self.directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        self.use_sequence_length = bool(use_sequence_length)
        self.output_size = hidden_size * self.directions
        self._layers = []
        with self.name_scope():
            size = input_size
            for layer in range(num_layers):
                pair = []
                for d in range(self.directions):
                    block = self._make(size, hidden_size, prefix=f"l{layer}{'fb'[d]}_")
                    self.register_child(block)
                    pair.append(block)
                self._layers.append(pair)
                size = self.output_size

    def _make(self, input_size, hidden_size, prefix):
        if self.cell in ("unrolled", "foreach"):
            cls = rnn.LSTMCell if self.mode == "lstm" else rnn.GRUCell
            return cls(hidden_size, input_size=input_size, prefix=prefix)
        cls = rnn.LSTM if self.mode == "lstm" else rnn.GRU
        return cls(
            hidden_size,
            num_layers=1,
            layout="NTC",
            input_size=input_size,
            use_sequence_length=self.use_sequence_length,
            prefix=prefix,
        )

    def check_context(self, ctx) -> None:
        """Refuse settings the kernel for ``ctx`` would silently ignore."""
        if self.use_sequence_length and getattr(ctx, "device_type", "cpu") == "cpu":
            raise ValueError(
                f"use_sequence_length=True is not supported on {ctx}: the fused CPU kernel "
                "ignores the lengths; use use_sequence_length=False (padding is masked "
                "explicitly) or a GPU context"
            )

    def _direction(self, F, block, x, valid_length):
        if self.cell == "unrolled":
            return unroll(F, block, x, valid_length, self.length, self.mode)
        if self.cell == "foreach":
            return self._foreach(F, block, x, valid_length)
        out = block(x, None, valid_length) if self.use_sequence_length else block(x)
        # The fused kernel runs over the pads too; the pads come after the valid part, so valid
        # steps are exact and only the tail has to be zeroed and the last valid step picked.
        out = F.SequenceMask(out, valid_length, use_sequence_length=True, axis=1)
        return out, [F.SequenceLast(out, valid_length, use_sequence_length=True, axis=1)]

    def _foreach(self, F, block, x, valid_length):
        seq = F.swapaxes(x, 0, 1)  # (T, B, C): foreach slices axis 0
        # 1 at valid steps, 0 past them, shaped from x itself: (T, B).
        ones = F.ones_like(F.slice_axis(seq, axis=2, begin=0, end=1))
        mask = F.reshape(F.SequenceMask(ones, valid_length, use_sequence_length=True, axis=0),
                         shape=(0, -1))
        column = F.reshape(F.slice_axis(ones, axis=0, begin=0, end=1), shape=(-1, 1))
        # One zero (B, hidden) node per state: foreach wants distinct input names.
        begin = [F.broadcast_axis(F.zeros_like(column), axis=1, size=self.hidden_size)
                 for _ in range(2 if self.mode == "lstm" else 1)]
        block.reset()

        def step(inputs, states):
            x_t, valid = inputs
            out, new = block(x_t, states)
            # A row past its valid length keeps its state and outputs zero (exact selects).
            kept = [F.where(valid, n, s) for n, s in zip(new, states)]
            return F.where(valid, out, F.zeros_like(out)), kept

        out, states = F.contrib.foreach(step, [seq, mask], begin)
        return F.swapaxes(out, 0, 1), list(states)

    def hybrid_forward(self, F, x, valid_length):
        states = []
        for index, pair in enumerate(self._layers):
            if index and self.dropout:
                x = F.Dropout(x, p=self.dropout)
            out, st = self._direction(F, pair[0], x, valid_length)
            states.extend(st)
            if self.directions == 2:
                back, st = self._direction(F, pair[1], reverse_valid(F, x, valid_length),
                                           valid_length)
                states.extend(st)
                out = F.concat(out, reverse_valid(F, back, valid_length), dim=2)
            x = out
        return x, states
