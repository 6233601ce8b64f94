"""Held-out splits and labels of text-file sequences (the app's rules, as a library API)."""

import numpy as np
import pytest

from bucketrnn.datasets import Vocabulary, encode_lines, read_lines
from bucketrnn.splits import class_names, holdout, label_sequences


def test_holdout_is_a_seeded_partition():
    train, valid, test = holdout(101, valid_fraction=0.1, test_fraction=0.2, seed=3)
    assert (valid.size, test.size, train.size) == (10, 20, 71)
    every = np.concatenate([train, valid, test])
    assert sorted(every.tolist()) == list(range(101))
    assert all((np.diff(p) > 0).all() for p in (train, valid, test))
    again = holdout(101, valid_fraction=0.1, test_fraction=0.2, seed=3)
    assert all((a == b).all() for a, b in zip(again, (train, valid, test)))
    assert not (holdout(101, 0.1, 0.2, seed=4)[1] == valid).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"valid_fraction": 0.5}, r"valid_fraction must be a number in \[0, 0.5\), got "
                              "valid_fraction=0.5"),
    ({"test_fraction": -0.1}, "test_fraction must be a number"),
    ({"test_fraction": True}, "test_fraction must be a number"),
    ({"seed": -1}, "seed"),
])
def test_holdout_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        holdout(10, **kwargs)


def test_first_token_labels_from_a_file(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_text("pos good film\n\nneg dull\npos fine acting\nneg bad plot\n")
    lines = read_lines(str(path))
    vocab = Vocabulary.build(lines)
    ds, classes = label_sequences(encode_lines(lines, vocab), "first_token", vocab)
    assert class_names("first_token", classes, vocab) == ["pos", "neg"]
    assert ds.labels.tolist() == [0, 1, 0, 1]
    assert vocab.decode(ds[2][0]) == ["fine", "acting"]
    assert ds.line_numbers.tolist() == [1, 3, 4, 5]
    # Held-out lines are labelled with the training split's classes.
    path.write_text("neg so so\nmeh what\n")
    held = read_lines(str(path))
    both = Vocabulary.build(lines + held)
    _, train_classes = label_sequences(encode_lines(lines, both), "first_token", both)
    with pytest.raises(ValueError, match=r"labels \['meh'\] do not occur in the training split"):
        label_sequences(encode_lines(held, both), "first_token", both, train_classes)
    path.write_text("pos fine\nneg\n")
    with pytest.raises(ValueError, match="needs a label and at least one token per line; "
                                         "line 2 has none"):
        label_sequences(encode_lines(read_lines(str(path)), vocab), "first_token", vocab)


def test_contains_labels_and_bad_labels():
    lines = [["a", "N", "b"], ["c"], ["N"]]
    vocab = Vocabulary.build(lines)
    ds, classes = label_sequences(encode_lines(lines, vocab), "contains:N", vocab)
    assert ds.labels.tolist() == [1, 0, 1] and classes == [0, 1]
    assert class_names("contains:N", classes, vocab) == ["0", "1"]
    assert vocab.decode(ds[0][0]) == ["a", "N", "b"]  # the token stays in the input
    with pytest.raises(ValueError, match="label='contains:zz': the token 'zz' is not in"):
        label_sequences(encode_lines(lines, vocab), "contains:zz", vocab)
    with pytest.raises(ValueError, match="label must be 'first_token' or 'contains:<token>', "
                                         "got label='last'"):
        label_sequences(encode_lines(lines, vocab), "last", vocab)
