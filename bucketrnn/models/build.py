"""The model a config describes: one function from a plain model dict to a bucket factory.

The app's ``model`` config group (``conf/model/*.yaml``) and a trained run's ``config.json``
describe a model by name and sizes; :func:`build_model` turns that into the ``build(length)``
factory a :class:`~bucketrnn.GraphCache` takes. It lives in the library so that a trained run can
be loaded without the app.
"""

from __future__ import annotations

from bucketrnn.models.classifier import SequenceClassifier
from bucketrnn.models.language_model import LanguageModel
from bucketrnn.models.seq2seq import Seq2Seq
from bucketrnn.models.tagger import SequenceTagger

__all__ = ["MODEL_NAMES", "build_model"]

MODEL_NAMES = ("lstm_lm", "gru_lm", "classifier", "tagger", "seq2seq")


def build_model(m: dict, vocab_size, num_classes: int | None = None):
    """The ``build(length)`` factory a model config describes (shared parameters).

    ``m`` is a plain dict as the app's ``model`` config group holds it (``name``: one of
    :data:`MODEL_NAMES`, and the sizes); ``vocab_size`` is ``(source, target)`` sizes for
    ``"seq2seq"``; ``num_classes`` is a classifier's or tagger's class count."""
    if m.get("name") not in MODEL_NAMES:
        raise ValueError(f"model name must be one of {', '.join(MODEL_NAMES)}, got "
                         f"name={m.get('name')!r}")
    if m["name"] == "seq2seq":
        src, tgt = vocab_size
        # Targets end with <eos> and the decoder starts from it (bucketrnn.data.pairs): id 1.
        return Seq2Seq.factory(
            src_vocab_size=src, tgt_vocab_size=tgt, bos_id=1,
            share_embeddings=m["share_embeddings"], embed_size=m["embed_size"],
            hidden_size=m["hidden_size"], num_layers=m["num_layers"], mode=m["mode"],
            bidirectional=m["bidirectional"], attention=m["attention"], dropout=m["dropout"],
            cell=m["cell"])
    common = {"vocab_size": vocab_size, "embed_size": m["embed_size"],
              "hidden_size": m["hidden_size"], "num_layers": m["num_layers"],
              "dropout": m["dropout"], "cell": m["cell"], "mode": m["mode"]}
    if m["name"] == "classifier":
        return SequenceClassifier.factory(num_classes=num_classes,
                                          bidirectional=m["bidirectional"],
                                          outputs=("loss", "logits"), **common)
    if m["name"] == "tagger":
        return SequenceTagger.factory(num_classes=num_classes, bidirectional=m["bidirectional"],
                                      outputs=("loss", "logits"), **common)
    return LanguageModel.factory(tie_weights=m["tie_weights"], **common)
