import numpy as np
import pytest

from bucketrnn.datasets import FlatSequences, Vocabulary, penn_treebank, text_file


def test_flat_sequences_roundtrip_and_subset():
    seqs = [[1, 2, 3], [4, 5], [6]]
    ds = FlatSequences.from_sequences(seqs, labels=[0, 1, 0])
    assert len(ds) == 3
    assert [ds[i][0].tolist() for i in range(3)] == seqs
    sub = ds.subset([2, 0])
    assert [sub[i][0].tolist() for i in range(2)] == [[6], [1, 2, 3]]
    assert sub.labels.tolist() == [0, 0]


def test_flat_sequences_validates_offsets():
    with pytest.raises(ValueError, match="offsets must be 1-D, start at 0 and end at len"):
        FlatSequences(np.arange(5), [0, 2, 4])
    with pytest.raises(ValueError,
                       match=r"offsets must be non-decreasing, got offsets\[1:3\]=\[3, 2\]"):
        FlatSequences(np.arange(5), [0, 3, 2, 5])
    with pytest.raises(TypeError, match="tokens must be a 1-D integer array"):
        FlatSequences(np.zeros(3, np.float32), [0, 3])


def test_vocabulary_save_load(tmp_path):
    vocab = Vocabulary.build([["b", "a", "b"]])
    assert vocab.itos == ["<unk>", "<eos>", "b", "a"]
    vocab.save(str(tmp_path / "v.json"))
    assert Vocabulary.load(str(tmp_path / "v.json")).itos == vocab.itos
    assert vocab.encode(["a", "zz"]).tolist() == [3, 0]


def test_text_file_whitespace_and_char(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b c\n\nb c\n", encoding="utf-8")
    ds, vocab = text_file(str(path))
    assert len(ds) == 2
    eos = vocab["<eos>"]
    assert ds[1].tolist() == [eos, vocab["b"], vocab["c"], eos]
    chars, cv = text_file(str(path), tokens="char")
    assert len(chars[0]) == len("a b c") + 2


def test_text_file_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="text file not found"):
        text_file(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has no sequences \(read 2 lines\)"):
        text_file(str(empty))
    with pytest.raises(ValueError, match="tokens must be 'whitespace' or 'char'"):
        text_file(str(empty), tokens="bpe")


def test_penn_treebank_sizes():
    ds, vocab = penn_treebank("valid", limit=100)
    assert len(ds) == 100 and len(vocab) == 10000
    assert ds[0][0] == vocab["<eos>"] and ds[0][-1] == vocab["<eos>"]


def test_held_out_lines_do_not_leak_into_the_vocabulary(tmp_path):
    from bucketrnn.plan import load_data

    path = tmp_path / "t.txt"
    path.write_text("".join(f"common w{i}\n" for i in range(40)), encoding="utf-8")
    data = load_data({"name": "text", "path": str(path), "tokens": "whitespace",
                      "max_length": None, "min_count": 1, "valid_path": None, "test_path": None,
                      "valid_fraction": 0.25, "test_fraction": 0.25, "limit": None,
                      "valid_limit": None, "test_limit": None, "label": None}, seed=0)
    train_words = {data.vocab.itos[t] for t in data.train.tokens}
    assert set(data.vocab.itos) == train_words | {"<unk>", "<eos>"}
    held = [data.vocab.itos[t] for part in (data.valid, data.test) for t in part.tokens]
    assert "<unk>" in held  # the held-out lines' own words are unknown to the model
