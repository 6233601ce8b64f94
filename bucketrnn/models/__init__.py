"""Reference models built for one bucket length each, exact under padding."""

from bucketrnn.models.base import BucketModel, loss_normalizer, masked_token_loss
from bucketrnn.models.build import MODEL_NAMES, build_model
from bucketrnn.models.classifier import SequenceClassifier
from bucketrnn.models.encoder import RecurrentEncoder
from bucketrnn.models.language_model import LanguageModel
from bucketrnn.models.seq2seq import Seq2Seq
from bucketrnn.models.tagger import SequenceTagger, tag_batch, tag_sentences

__all__ = [
    "BucketModel",
    "LanguageModel",
    "MODEL_NAMES",
    "RecurrentEncoder",
    "Seq2Seq",
    "SequenceClassifier",
    "SequenceTagger",
    "build_model",
    "loss_normalizer",
    "masked_token_loss",
    "tag_batch",
    "tag_sentences",
]
