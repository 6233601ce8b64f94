"""Vocabulary special tokens and decode."""

import json

import numpy as np
import pytest

from bucketrnn.data.datasets import Vocabulary, encode_lines


def test_default_vocabulary_keeps_its_ids_and_uses_eos_as_bos():
    vocab = Vocabulary.build([["a", "b", "a"]])
    assert vocab.itos == ["<unk>", "<eos>", "a", "b"]
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 1, 0)
    ds = encode_lines([["a", "b"]], vocab)
    assert ds[0][0] == vocab.bos_id and ds[0][-1] == vocab.eos_id


def test_pad_and_bos_on_request(tmp_path):
    vocab = Vocabulary.build([["a", "<pad>"]], specials=("<bos>", "<pad>"))
    assert vocab.itos == ["<unk>", "<eos>", "<bos>", "<pad>", "a"]
    assert (vocab.pad_id, vocab.bos_id) == (3, 2)
    path = str(tmp_path / "v.json")
    vocab.save(path)
    assert Vocabulary.load(path).pad_id == 3 and json.loads(open(path).read())[3] == "<pad>"
    with pytest.raises(ValueError, match="specials must be distinct tokens among"):
        Vocabulary.build([["a"]], specials=("<sep>",))
    with pytest.raises(ValueError, match="specials must be distinct tokens among"):
        Vocabulary.build([["a"]], specials="<pad>")


def test_decode_round_trips_and_refuses_bad_ids():
    vocab = Vocabulary.build([["x", "y", "z"]], specials=("<pad>",))
    ids = vocab.encode(["y", "q", "x"])
    assert vocab.decode(ids) == ["y", "<unk>", "x"]
    assert vocab.decode([1, vocab["z"], 2, 2]) == ["z"]
    assert vocab.decode([1, vocab["z"], 2], skip_special=False) == ["<eos>", "z", "<pad>"]
    assert vocab.decode(np.array([3.0, 4.0])) == ["x", "y"]
    assert vocab.unknown(["x", "q", "r", "q"]) == ["q", "r"]
    with pytest.raises(ValueError, match=r"ids\[1\]=9 is outside \[0, 6\)"):
        vocab.decode([3, 9])
    with pytest.raises(ValueError, match=r"ids\[0\]=-1 is outside"):
        vocab.decode([-1])
    with pytest.raises(ValueError, match="1-D sequence of integer token ids"):
        vocab.decode([[1, 2]])
    with pytest.raises(ValueError, match="1-D sequence of integer token ids"):
        vocab.decode([1.5])
