"""Using a trained model: :mod:`~bucketrnn.inference.generation` (sampling from a language
model), :mod:`~bucketrnn.inference.translate` (decoding sequence pairs) and
:mod:`~bucketrnn.inference.bleu` (corpus BLEU)."""

__all__: list = []
