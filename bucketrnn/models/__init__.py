"""Reference models built for one bucket length each, exact under padding."""

from bucketrnn.models.base import BucketModel, loss_normalizer, masked_token_loss
from bucketrnn.models.classifier import SequenceClassifier
from bucketrnn.models.encoder import RecurrentEncoder
from bucketrnn.models.language_model import LanguageModel
from bucketrnn.models.seq2seq import Seq2Seq

__all__ = [
    "BucketModel",
    "LanguageModel",
    "RecurrentEncoder",
    "Seq2Seq",
    "SequenceClassifier",
    "loss_normalizer",
    "masked_token_loss",
]
