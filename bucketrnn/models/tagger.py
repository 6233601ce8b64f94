"""LSTM/GRU sequence tagger for one bucket length: a class per token, masked per-token loss."""

from __future__ import annotations

import numpy as np

from bucketrnn.data.datasets import FlatSequences
from bucketrnn.data.loader import BucketLoader
from bucketrnn.data.plan import with_longest
from bucketrnn.models.base import masked_token_loss
from bucketrnn.models.classifier import SequenceClassifier

__all__ = ["SequenceTagger", "tag_batch", "tag_sentences"]


class SequenceTagger(SequenceClassifier):
    """Embedding (or float features), stacked (bi)directional LSTM/GRU, a softmax per token.

    The layers and parameters are those of :class:`~bucketrnn.models.SequenceClassifier` (the
    same arguments); the output layer scores every step instead of the last one.

    Every valid step's output (both directions with ``bidirectional=True``: the reverse one
    reads the valid part only) is scored against ``num_classes`` tags; the loss is the
    cross-entropy summed over each row's valid steps (:func:`~bucketrnn.models.masked_token_loss`),
    so padding never changes it.

    Parameters
    ----------
    length : int
        Bucket length.
    num_classes : int
        Number of tags.
    vocab_size : int, optional
        Token ids in ``data`` (int ``(B, length)``). Give either this or ``input_size``.
    input_size : int, optional
        Float features in ``data`` (``(B, length, input_size)``).
    embed_size : int, optional
        Defaults to ``hidden_size``.
    hidden_size, num_layers, mode, bidirectional, dropout, cell, use_sequence_length :
        See :class:`~bucketrnn.models.RecurrentEncoder`.
    outputs : tuple of {"loss", "logits", "states"}
        ``logits`` is ``(B, length, num_classes)``; ``states`` expands to the final states per
        layer and direction.

    Notes
    -----
    Forward: ``(data, valid_length, label, weight)`` with ``label`` the tags ``(B, length)``
    (``BucketLoader(..., task="tag")``). The loss is ``(B,)``: each row's summed per-token
    cross-entropy times ``weight`` (fill rows give exactly 0); divide its sum by the number of
    real tokens (:func:`~bucketrnn.models.loss_normalizer`) for the mean per token.

    Examples
    --------
    >>> import mxnet as mx
    >>> tagger = SequenceTagger(5, num_classes=3, vocab_size=20, hidden_size=8,
    ...                         bidirectional=True, outputs=("loss", "logits"))
    >>> tagger.initialize()
    >>> ids = mx.nd.ones((2, 5), dtype="int32")
    >>> vl = mx.nd.array([5, 2], dtype="int32")
    >>> loss, logits = tagger(ids, vl, mx.nd.zeros((2, 5)), mx.nd.ones(2))
    >>> loss.shape, logits.shape
    ((2,), (2, 5, 3))
    """

    def _compute(self, F, data, valid_length, label, weight, out_weight, out_bias,
                 embed_weight=None):
        hidden, states = self._encode(F, data, valid_length, embed_weight)
        if self.dropout:
            hidden = F.Dropout(hidden, p=self.dropout)
        logits = F.FullyConnected(hidden, out_weight, out_bias, num_hidden=self.num_classes,
                                  flatten=False)
        loss = masked_token_loss(F, logits, label, valid_length, weight)
        return {"loss": loss, "logits": logits, "states": states}


def tag_batch(graphs, batch):
    """Predicted tag ids of one padded batch: a list with an ``int`` array per real row.

    ``graphs`` is a :class:`~bucketrnn.GraphCache` of a :class:`SequenceTagger` factory built
    with ``outputs=("loss", "logits")`` (the app's ``model=tagger`` is); ``batch`` comes from a
    ``BucketLoader(..., task="tag")``, whose ``label`` may hold any tags (e.g. zeros: the loss is
    ignored here). Row ``j`` of the result is the argmax tag of each valid token of the ``j``-th
    real row, in batch order (``batch.indices[batch.indices >= 0]`` names their examples). Map
    the ids to names with the class map (``tags.json`` of an app run).
    """
    out = graphs(batch)
    if not isinstance(out, (list, tuple)) or len(out) < 2:
        raise ValueError("tag_batch needs a tagger built with outputs=('loss', 'logits'), got "
                         f"{1 if not isinstance(out, (list, tuple)) else len(out)} output(s)")
    pred = out[1].argmax(axis=-1).asnumpy().astype(np.int64)
    lengths = batch.valid_length.asnumpy().astype(np.int64)
    real = np.flatnonzero(np.asarray(batch.indices) >= 0)
    return [pred[j, :lengths[j]] for j in real]


def tag_sentences(graphs, sentences, vocab, classes=None, batch_size: int = 32,
                  num_buckets: int = 8, boundaries=None, ctx=None) -> list:
    """Tag sentences with a trained tagger, bucketed like training data, in input order.

    Parameters
    ----------
    graphs : GraphCache
        Of a :class:`SequenceTagger` factory built with ``outputs=("loss", "logits")``.
    sentences : list of list of str
        Token lists (e.g. ``line.split()``); an empty one gets an empty result.
    vocab : Vocabulary
        The vocabulary the tagger was trained with (unknown words become ``<unk>``).
    classes : list of str, optional
        The class map (``tags.json`` of an app run): tag names are returned; ids without it.
    batch_size, num_buckets
        The batches: sentences are planned into at most ``num_buckets`` length buckets.
    boundaries : sequence of int, optional
        Bucket boundaries to use instead (e.g. the training plan's ``plan.boundaries``, so the
        compiled graphs are reused); one more is added for a longer sentence.
    ctx : mxnet.Context, optional
        Where the batches go (the graphs' context).

    Returns
    -------
    list
        Per sentence, a list of tag names (or an ``int64`` array of tag ids without
        ``classes``), as long as the sentence.

    Examples
    --------
    >>> import mxnet as mx
    >>> from bucketrnn import GraphCache
    >>> from bucketrnn.data.datasets import Vocabulary
    >>> vocab = Vocabulary.build([["the", "cat"]])
    >>> graphs = GraphCache(SequenceTagger.factory(num_classes=2, vocab_size=len(vocab),
    ...                     hidden_size=8, outputs=("loss", "logits")))
    >>> graphs.initialize(mx.init.Xavier())
    >>> tags = tag_sentences(graphs, [["the", "cat"], [], ["cat"]], vocab, classes=["A", "B"])
    >>> [len(t) for t in tags], set(tags[0]) <= {"A", "B"}
    ([2, 0, 1], True)
    """
    ids = [vocab.encode(list(s)) for s in sentences]
    keep = [i for i, s in enumerate(ids) if s.size]
    out = [[] if classes is not None else np.zeros(0, np.int64) for _ in ids]
    if not keep:
        return out
    kept = [ids[i] for i in keep]
    ds = FlatSequences.from_sequences(kept, tags=[np.zeros(s.size, np.int32) for s in kept])
    lengths = ds.lengths()
    plan = {"num_buckets": min(num_buckets, np.unique(lengths).size)}
    if boundaries is not None:
        plan = {"strategy": "fixed", "boundaries": with_longest(boundaries, lengths)}
    loader = BucketLoader(ds, batch_size=batch_size, shuffle=False, task="tag", ctx=ctx,
                          vocab_size=len(vocab), **plan)
    for batch in loader:
        real = np.asarray(batch.indices)[np.asarray(batch.indices) >= 0]
        for j, pred in zip(real, tag_batch(graphs, batch)):
            out[keep[int(j)]] = [classes[t] for t in pred] if classes is not None else pred
    return out
