"""What the reference models have in common: one length per block, shared parameters, checks.

A model here is a ``HybridBlock`` built for one bucket length, or for every length when its
encoder is length-agnostic (``cell="foreach"``, :attr:`BucketModel.length_agnostic`). Its
forward takes the arrays of a :class:`~bucketrnn.Batch` in the :class:`~bucketrnn.GraphCache`
default order ``(data, valid_length, label, weight)`` and returns the per-row loss already
multiplied by ``weight`` (fill rows contribute exactly 0), optionally followed by more outputs
(``outputs=``).
"""

from __future__ import annotations

import numpy as np
from mxnet import gluon, nd

from bucketrnn.models.encoder import AGNOSTIC_CELLS
from bucketrnn.tasks import host_counts

__all__ = ["BucketModel", "OUTPUTS", "loss_normalizer", "masked_token_loss"]

OUTPUTS = ("loss", "logits", "states")


class BucketModel(gluon.HybridBlock):
    """Base class: the length, the ``outputs=`` selection, input checks and :meth:`factory`.

    Subclasses set ``self.encoder`` (a :class:`~bucketrnn.models.RecurrentEncoder`),
    ``self.embed_ids`` (whether ``data`` holds token ids), ``self.vocab_size`` and
    ``self.num_classes``, and implement ``_compute(F, data, valid_length, label, weight,
    **params) -> dict`` with keys ``loss``, ``logits`` and ``states`` (a list).

    Attributes
    ----------
    vocab_size : int or None
        Token ids in ``data`` (and next-token labels of a language model) must lie in
        ``[0, vocab_size)``; None for a model of float features.
    num_classes : int or None
        Class labels must be integers in ``[0, num_classes)``; None for a language model.
        Both are also attributes of the :meth:`factory` callable, so a training loop can hand
        them to the loader's host-side check (``BucketLoader(..., vocab_size=,
        num_classes=)``) before any model is built.

    Notes
    -----
    Out-of-range ids are not caught by MXNet: on CPU ``Embedding`` clips them (an id
    ``>= vocab_size`` reads the last row, a negative id row 0) and ``pick`` clips a label the
    same way (and truncates a fractional one), so the loss is silently wrong. Checking an
    ``NDArray`` would cost a device sync per step: the loader checks each batch on the host
    while it is still numpy, with the limits these attributes give.
    """

    def __init__(self, length: int, outputs=("loss",), prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        if isinstance(outputs, str):
            outputs = (outputs,)
        outputs = tuple(outputs)
        bad = [o for o in outputs if o not in OUTPUTS]
        if not outputs or bad:
            raise ValueError(f"outputs must be a non-empty subset of {OUTPUTS}, got "
                             f"outputs={outputs!r}")
        self.length = length
        self.outputs = outputs
        self.embed_ids = True
        self.vocab_size = None
        self.num_classes = None

    @classmethod
    def factory(cls, prefix: str | None = None, **kwargs):
        """A ``build(length) -> model`` callable whose models all share one parameter set.

        The first model built owns the parameters; the next ones are built with the same
        ``prefix`` and ``params=first.collect_params()``, so every bucket length uses the same
        arrays. Pass the result to :class:`~bucketrnn.GraphCache`. The callable carries the
        models' ``vocab_size`` and ``num_classes`` (None where they do not apply) as attributes,
        and ``length_agnostic``: True for a length-agnostic cell (``cell="foreach"``), whose
        callable builds one model (of length None) and returns it for every length.
        An unrolled model's callable also carries ``any_length``: a length-agnostic factory of
        the same model with ``cell="foreach"`` on the same parameters (built once), which
        :class:`~bucketrnn.GraphCache` runs a key longer than its ``unroll_limit`` on outside
        training; None for other cells and for sequence-pair models. ``unrolled`` says
        whether the models' graphs grow with the length (False for a fused or foreach cell; True
        for a sequence-pair model, whose decoder is unrolled).

        Examples
        --------
        >>> from bucketrnn.models import LanguageModel
        >>> build = LanguageModel.factory(vocab_size=20, hidden_size=8)
        >>> a, b = build(5), build(9)
        >>> a.collect_params()[a.embed_weight.name] is b.collect_params()[b.embed_weight.name]
        True
        >>> build.vocab_size, build.num_classes
        (20, None)

        With ``cell="foreach"`` every length gets the same block (one graph for all):

        >>> one = LanguageModel.factory(vocab_size=20, hidden_size=8, cell="foreach")
        >>> one(5) is one(9), one.length_agnostic
        (True, True)

        The unrolled factory's length-agnostic twin shares its parameters:

        >>> twin = build.any_length(30000)
        >>> twin.length_agnostic, twin.embed_weight is a.embed_weight
        (True, True)
        """
        prefix = prefix or cls.__name__.lower() + "_"
        shared = {}
        pairs = bool(getattr(cls, "pair_keys", False))

        def build(length):
            if isinstance(length, tuple) != pairs or (pairs and len(length) != 2):
                want = "a (src_len, tgt_len) pair" if pairs else "one length"
                raise ValueError(
                    f"{cls.__name__} takes {want} per bucket, got bucket key {length!r}"
                )
            if build.length_agnostic:
                if "block" not in shared:
                    shared["block"] = cls(None, prefix=prefix, **kwargs)
                return shared["block"]
            block = cls(length, prefix=prefix, params=shared.get("params"), **kwargs)
            shared.setdefault("params", block.collect_params())
            return block

        def any_length(length):
            # The same model with its encoder looped by foreach: one graph for every length,
            # on the parameters of the unrolled blocks (the two cells' parameters have the
            # same names and shapes), built once.
            if "agnostic" not in shared:
                params = shared.get("params") or build(build.param_key).collect_params()
                shared["agnostic"] = cls(None, prefix=prefix, params=params,
                                         **{**kwargs, "cell": AGNOSTIC_CELLS[0]})
            return shared["agnostic"]

        build.__qualname__ = f"{cls.__name__}.factory"
        # Any length builds the same parameters: GraphCache uses this one to own them before
        # it knows a bucket key.
        build.param_key = (1, 1) if pairs else 1
        # A length-agnostic cell: the callable returns its one block for every length, and
        # says so (GraphCache then keeps one graph for all bucket keys). Pair models keep one
        # block per key (their decoder is unrolled).
        build.length_agnostic = kwargs.get("cell") in AGNOSTIC_CELLS and not pairs
        # An unrolled model offers that length-agnostic twin for keys too long to unroll
        # (GraphCache's unroll_limit); a fused or foreach cell does not grow with the length.
        unrolled = kwargs.get("cell", "unrolled") == "unrolled" and not pairs
        build.any_length = any_length if unrolled else None
        # Whether a graph grows with its key (a pair model's decoder is always unrolled).
        build.unrolled = unrolled or pairs
        if unrolled:
            any_length.__qualname__ = f"{cls.__name__}.factory.any_length"
            any_length.length_agnostic = True
            any_length.param_key = build.param_key
            any_length.vocab_size = cls.declared_vocab_size(kwargs)
            any_length.num_classes = kwargs.get("num_classes")
            any_length.batch_inputs = cls.batch_inputs
        build.vocab_size = cls.declared_vocab_size(kwargs)
        build.batch_inputs = cls.batch_inputs
        build.num_classes = kwargs.get("num_classes")
        return build

    #: The :class:`~bucketrnn.Batch` attributes the forward takes, in order (GraphCache's
    #: ``inputs`` when built from this model's :meth:`factory`).
    batch_inputs = ("data", "valid_length", "label", "weight")
    #: Whether bucket keys are ``(src_len, tgt_len)`` pairs (sequence-pair models).
    pair_keys = False

    @classmethod
    def declared_vocab_size(cls, kwargs):
        """The ``vocab_size`` a factory built with ``kwargs`` declares (None if none)."""
        return kwargs.get("vocab_size")

    @property
    def length_agnostic(self) -> bool:
        """True if one graph of this model runs at any length (its encoder's ``cell="foreach"``):
        the time axis of ``data`` is then not checked against :attr:`length`."""
        return self.uses_foreach

    @property
    def uses_foreach(self) -> bool:
        """True if a graph of this model holds ``F.contrib.foreach`` (a ``cell="foreach"``
        encoder), length-agnostic or not: GraphCache then hybridizes it without
        ``static_shape``, which MXNet 1.9.1's foreach backward does not survive across graphs."""
        return bool(getattr(getattr(self, "encoder", None), "length_agnostic", False))

    def _encode(self, F, data, valid_length, embed_weight=None):
        """``(hidden, states)`` of the encoder over ``data``: token ids embedded first (when
        :attr:`embed_ids`), dropout on its input (when ``self.dropout``). The shared start of
        the single-sequence models' ``_compute``."""
        x = data
        if self.embed_ids:
            x = F.Embedding(data, embed_weight, input_dim=self.vocab_size,
                            output_dim=self.embed_weight.shape[1])
        if self.dropout:
            x = F.Dropout(x, p=self.dropout)
        return self.encoder(x, valid_length)

    def check_context(self, ctx) -> None:
        """Raise ``ValueError`` if this model cannot run exactly on ``ctx``."""
        self.encoder.check_context(ctx)

    def validate_inputs(self, ctx, data, *rest) -> None:
        """Check the arrays a forward receives (by :meth:`forward`, and by ``GraphCache`` for a
        shared executor, which does not go through it): context, dtype and shape.

        ``rest`` is ``(valid_length, label, weight)``. The ranges of token ids and labels are
        not checked here (on an ``NDArray`` that would wait for the device every step): the
        loader checks them on the host while the batch is still numpy
        (``BucketLoader(..., vocab_size=, num_classes=)``, which ``TrainLoop`` sets from
        :attr:`vocab_size` and :attr:`num_classes`).
        """
        self.check_context(ctx)
        kind = np.dtype(data.dtype).kind
        if self.embed_ids and kind not in "iu":
            raise TypeError(
                f"data must hold integer token ids for {type(self).__name__} (an embedding "
                f"model), got data dtype {np.dtype(data.dtype).name}"
            )
        if not self.embed_ids and kind != "f":
            raise TypeError(
                f"data must hold float features for {type(self).__name__} built with "
                f"input_size=, got data dtype {np.dtype(data.dtype).name}"
            )
        if data.ndim < 2 and self.length_agnostic:
            raise ValueError(f"data must be shaped (batch, length, ...), got data.shape="
                             f"{data.shape}")
        if data.ndim < 2 or (data.shape[1] != self.length and not self.length_agnostic):
            raise ValueError(
                f"data must be shaped (batch, {self.length}, ...) for this model of length "
                f"{self.length}, got data.shape={data.shape}"
            )

    def forward(self, data, *args):
        if isinstance(data, nd.NDArray):
            self.validate_inputs(data.context, data, *args)
        return super().forward(data, *args)

    def hybrid_forward(self, F, data, valid_length, label, weight, **params):
        result = self._compute(F, data, valid_length, label, weight, **params)
        out = []
        for name in self.outputs:
            if name == "states":
                out.extend(result["states"])
            else:
                out.append(result[name])
        return out[0] if len(out) == 1 else tuple(out)


def masked_token_loss(F, logits, label, valid_length, weight):
    """Per-row summed cross-entropy over the valid steps, times the row weight: ``(B,)``."""
    nll = -F.pick(F.log_softmax(logits, axis=-1), label, axis=-1)
    nll = F.SequenceMask(nll, valid_length, use_sequence_length=True, axis=1)
    return F.sum(nll, axis=1) * weight


def loss_normalizer(batch, per: str = "token"):
    """How many real tokens (``per="token"``) or rows (``per="row"``) a batch holds, as a float.

    Divide the summed loss of a batch by it to get a mean that fill rows do not distort. The
    tokens counted are the ones a loss is computed on: ``valid_length`` for a language model,
    and for a sequence-pair (seq2seq) batch, which has ``label_length``, the target tokens.
    A loader's batch brings the counts in ``batch.meta`` (no copy from the device); after
    editing its ``weight`` or ``valid_length`` by hand, clear ``batch.meta``.

    Examples
    --------
    >>> import mxnet as mx, numpy as np
    >>> from bucketrnn import Batch
    >>> b = Batch(4, mx.nd.zeros((2, 4)), mx.nd.array([3, 3]), None, mx.nd.array([1, 0]),
    ...           np.array([7, -1]))
    >>> loss_normalizer(b), loss_normalizer(b, per="row")
    (3.0, 1.0)
    """
    meta = host_counts(batch)  # counted on the host by the loader, when still true
    if per == "row":
        return float(meta["rows"]) if "rows" in meta else float(batch.weight.sum().asscalar())
    if per == "token":
        side = "tokens" if batch.label_length is None else "target_tokens"
        if side in meta:
            return float(meta[side])
        lengths = batch.valid_length if batch.label_length is None else batch.label_length
        return float((lengths.astype("float32") * batch.weight).sum().asscalar())
    raise ValueError(f"per must be 'token' or 'row', got per={per!r}")
