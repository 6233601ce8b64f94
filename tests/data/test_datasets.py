import os

import numpy as np
import pytest

from bucketrnn.data.datasets import (
    FlatSequences,
    OverflowCounts,
    Vocabulary,
    penn_treebank,
    read_lines,
    text_file,
)
from bucketrnn.data.plan import find_outliers


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


def test_vocabulary_save_writes_no_file_outside_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / "vocab.json"
    (run_dir / "vocab.json.tmp").symlink_to(victim)  # the old fixed temporary name
    Vocabulary.build([["a"]]).save(str(path))
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and Vocabulary.load(str(path)).itos == ["<unk>", "<eos>", "a"]
    path.unlink()
    path.symlink_to(victim)  # a link at the target itself is replaced, not written through
    Vocabulary.build([["b"]]).save(str(path))
    assert victim.read_text() == "precious\n"
    assert not path.is_symlink() and Vocabulary.load(str(path)).itos == ["<unk>", "<eos>", "b"]
    assert sorted(os.listdir(run_dir)) == ["vocab.json", "vocab.json.tmp"]  # no temporary left


def test_text_file_whitespace_and_char(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b c\n\nb c\n", encoding="utf-8")
    ds, vocab = text_file(str(path))
    assert len(ds) == 2
    eos = vocab["<eos>"]
    assert ds[1].tolist() == [eos, vocab["b"], vocab["c"], eos]
    chars, cv = text_file(str(path), tokens="char")
    assert len(chars[0]) == len("a b c") + 2


def test_read_lines_says_what_a_non_regular_path_is_and_never_reads_it(tmp_path):
    with pytest.raises(ValueError, match=r"text file path='.*' is a directory"):
        read_lines(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: reading it would block for ever
    with pytest.raises(ValueError, match=r"text file '.*fifo' is not a regular file \(a FIFO\)"):
        read_lines(str(fifo))
    with pytest.raises(ValueError, match=r"'/dev/zero' is not a regular file \(a character devic"):
        read_lines("/dev/zero")  # would never end
    (tmp_path / "to_zero").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="is not a regular file"):
        read_lines(str(tmp_path / "to_zero"))
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="text file not found"):
        read_lines(str(tmp_path / "dangling"))
    (tmp_path / "ok.txt").write_text("a b\n", encoding="utf-8")
    (tmp_path / "link.txt").symlink_to(tmp_path / "ok.txt")
    assert read_lines(str(tmp_path / "link.txt")) == [["a", "b"]]


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
    from bucketrnn.app.experiment import load_data

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


def test_penn_treebank_has_no_outliers_in_words_or_characters():
    import treebank

    for split in ("train", "valid", "test"):
        ds, _ = penn_treebank(split)
        found = find_outliers(ds.lengths() - 1)
        assert not found and found.rest_max <= 83 and found.limit == 1024, (split, found)
    chars = [len(s) for s in treebank.penn["train"].split("\n") if s.strip()]
    found = find_outliers(chars)
    assert not found and max(chars) < found.limit / 4  # longest 520 chars, limit 8 x 371


def test_invalid_utf8_names_the_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    good = "first line\r\nzweite Zeile\n\n".encode()
    path.write_bytes(good + "caf\u00e9 au lait\n".encode("latin-1"))
    offset = len(good) + 3
    with pytest.raises(ValueError) as info:
        read_lines(str(path))
    msg = str(info.value)
    assert f"text file {str(path)!r} is not valid UTF-8: line 4, byte offset {offset}" in msg
    assert "0xe9" in msg and "re-encode the file as UTF-8" in msg


@pytest.mark.parametrize("tokens, first", [("whitespace", ["the", "cat"]),
                                           ("char", ["t", "h", "e", " ", "c", "a", "t"])])
def test_a_byte_order_mark_is_not_glued_to_the_first_token(tmp_path, tokens, first):
    # Windows editors save UTF-8 with a BOM: it must not make '\ufeffthe' a word of its own.
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfthe cat\r\nthe\tdog\r\n")
    lines = read_lines(str(path), tokens=tokens)
    assert lines[0] == first and lines.line_numbers.tolist() == [1, 2]
    assert not any("\ufeff" in t for line in lines for t in line)
    # Only a leading mark is one; inside the text U+FEFF stays what it is.
    path.write_bytes(b"a\nb\xef\xbb\xbf\n")
    assert read_lines(str(path)) == [["a"], ["b\ufeff"]]


def test_long_lines_are_an_error_by_default_naming_file_line_and_length(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b\n\nc d e f\ng\nh i j k l\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t.txt' line 3 has 4 tokens, more than max_length=3 "
                                         r"\(2 line\(s\) are longer\); pass on_overflow="):
        read_lines(str(path), max_length=3)
    with pytest.raises(ValueError, match="on_overflow='drop' needs max_length"):
        read_lines(str(path), on_overflow="drop")
    with pytest.raises(ValueError, match="on_overflow must be one of"):
        read_lines(str(path), max_length=3, on_overflow="skip")
    with pytest.raises(TypeError, match="max_length must be None or an int, got max_length=True"):
        read_lines(str(path), max_length=True)
    with pytest.raises(ValueError, match="max_length must be an integer >= 1, got max_length=0"):
        read_lines(str(path), max_length=0)


def test_truncate_and_drop_count_what_they_cut(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b\n\nc d e f\ng\nh i j k l\n", encoding="utf-8")
    whole = read_lines(str(path))
    assert whole.line_numbers.tolist() == [1, 3, 4, 5] and not whole.overflow
    cut = read_lines(str(path), max_length=3, on_overflow="truncate")
    assert cut == [["a", "b"], ["c", "d", "e"], ["g"], ["h", "i", "j"]]
    assert cut.overflow == OverflowCounts(lines_truncated=2, tokens_cut=1 + 2)
    dropped = read_lines(str(path), max_length=3, on_overflow="drop")
    assert dropped == [["a", "b"], ["g"]] and dropped.line_numbers.tolist() == [1, 4]
    assert dropped.overflow.to_dict() == {"lines_dropped": 2, "lines_truncated": 0,
                                          "tokens_cut": 9}
    ds, _ = text_file(str(path), max_length=3, on_overflow="drop")
    assert len(ds) == 2 and ds.line_numbers.tolist() == [1, 4]
    assert ds.overflow.lines_dropped == 2


def test_line_numbers_survive_subsets_and_splits(tmp_path):
    from bucketrnn.app.experiment import load_data

    path = tmp_path / "t.txt"
    path.write_text("".join(f"w{i}{' x' if i % 2 else ''}\n" + ("\n" if i % 3 == 0 else "")
                            for i in range(40)))
    data = load_data({"name": "text", "path": str(path), "tokens": "whitespace",
                      "max_length": None, "min_count": 1, "valid_path": None, "test_path": None,
                      "valid_fraction": 0.25, "test_fraction": 0.25, "limit": None,
                      "valid_limit": None, "test_limit": None, "label": "contains:x"}, seed=0)
    lines = path.read_text().split("\n")
    seen = []
    for part in (data.train, data.valid, data.test):  # labelled subsets of a seeded split
        for i in range(len(part)):
            number = int(part.line_numbers[i])
            expect = [w if w in data.vocab.stoi else "<unk>" for w in lines[number - 1].split()]
            assert [data.vocab.itos[t] for t in part[i][0][1:-1]] == expect
            seen.append(number)
    assert sorted(seen) == [n + 1 for n, ln in enumerate(lines) if ln.strip()]
    assert data.overflow == {"lines_dropped": 0, "lines_truncated": 0, "tokens_cut": 0}
