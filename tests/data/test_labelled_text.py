"""The labelled text API: read_labelled, split_indices, labelled_text_file."""

import numpy as np
import pytest

from bucketrnn.data.datasets import (
    LabelledText,
    labelled_text_file,
    read_labelled,
    split_indices,
)


def _file(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_tags_split_on_the_last_slash(tmp_path):
    path = _file(tmp_path, "The/DT cat/NN\n\n1/2/CD and/CC/CC http://x.org/URL\n")
    text = read_labelled(path, "tags")
    assert text.sentences == [["The", "cat"], ["1/2", "and/CC", "http://x.org"]]
    assert text.labels == [["DT", "NN"], ["CD", "CC", "URL"]]
    assert text.sentences.line_numbers.tolist() == [1, 3] and text.per_token
    assert text.classes() == ["CC", "CD", "DT", "NN", "URL"]
    ids = text.label_ids(text.classes())
    assert [i.tolist() for i in ids] == [[2, 3], [1, 0, 4]]
    assert all(i.dtype == np.int32 for i in ids)


@pytest.mark.parametrize("line, item, what", [
    ("The/DT cat sat/VB", "cat", "no tag"),
    ("The/DT cat/ sat/VB", "cat/", "no tag"),
    ("The/DT /NN", "/NN", "no token before its '/'"),
])
def test_an_item_without_a_tag_names_file_line_and_item(tmp_path, line, item, what):
    path = _file(tmp_path, f"a/DT b/NN\n{line}\n")
    with pytest.raises(ValueError, match=rf"tagged file {path!r} line 2: item {item!r} has "
                                         rf"{what}; write every item as token/TAG"):
        read_labelled(path, "tags")


def test_a_huge_item_or_label_is_shortened_in_the_message(tmp_path):
    huge = "q" * 10**6
    path = _file(tmp_path, f"a/DT {huge}\n")
    with pytest.raises(ValueError, match=r"item 'q{40}'\.\.\. \(1,000,000 characters\) has "
                                         r"no tag") as info:
        read_labelled(path, "tags")
    assert len(str(info.value)) < 500
    path = _file(tmp_path, f"{huge} a fine film\n", "labels.txt")
    with pytest.raises(ValueError, match=r"label 'q{40}'\.\.\. \(1,000,000 characters\) is not "
                                         r"one of the 1 classes") as info:
        read_labelled(path, "first_token").label_ids(["pos"])
    assert len(str(info.value)) < 500


@pytest.mark.parametrize("label, line", [
    ("first_token", "pos ok\n\x1b[31mneg\x1b[0m bad\n"),  # a terminal colour escape
    ("first_token", "pos ok\n\u202eneg bad\n"),  # a right-to-left override (a format char)
    ("tags", "the/DT cat/NN\nthe/DT dog/\x1b]0;owned\x07NN\n"),  # an escape setting a title
])
def test_a_class_or_tag_with_an_unprintable_character_is_refused(tmp_path, label, line):
    # predict writes class and tag names to the terminal: an escape sequence must never get there.
    path = _file(tmp_path, line)
    with pytest.raises(ValueError, match=rf"{path!r} line 2: .* holds an unprintable character"):
        read_labelled(path, label)


def test_first_token_and_contains(tmp_path):
    path = _file(tmp_path, "pos a fine film\nneg dull\n")
    text = read_labelled(path, "first_token")
    assert text.sentences == [["a", "fine", "film"], ["dull"]] and text.labels == ["pos", "neg"]
    assert text.label_ids(["neg", "pos"]).tolist() == [1, 0]
    text = read_labelled(path, "contains:dull")
    assert text.sentences[1] == ["neg", "dull"] and text.labels == ["0", "1"]
    with pytest.raises(ValueError, match=rf"{path!r} line 2: label 'neg' is not one of the 1 "
                                         r"classes \['pos'\]"):
        read_labelled(path, "first_token").label_ids(["pos"])
    lonely = _file(tmp_path, "pos a\nneg\n", "lonely.txt")
    with pytest.raises(ValueError, match="line 2 has no token after its label 'neg'"):
        read_labelled(lonely, "first_token")


@pytest.mark.parametrize("label, tokens, match", [
    ("last_token", "whitespace", "label must be one of"),
    ("contains:", "whitespace", "label must be one of"),
    ("tags", "char", "label='tags' reads whitespace-separated token/TAG items, got "
                     "tokens='char'"),
])
def test_bad_arguments_are_named(tmp_path, label, tokens, match):
    with pytest.raises(ValueError, match=match):
        read_labelled(_file(tmp_path, "a/B\n"), label, tokens=tokens)


def test_split_indices_is_seeded_disjoint_and_complete():
    train, valid, test = split_indices(100, 0.1, 0.2, seed=3)
    assert (len(train), len(valid), len(test)) == (70, 10, 20)
    everything = np.concatenate([train, valid, test])
    assert sorted(everything.tolist()) == list(range(100))
    for part in (train, valid, test):
        assert (np.diff(part) > 0).all()
    again = split_indices(100, 0.1, 0.2, seed=3)
    assert all((a == b).all() for a, b in zip(again, (train, valid, test)))
    assert not (split_indices(100, 0.1, 0.2, seed=4)[1] == valid).all()
    # The permutation the app has always used (a run's split must not change under it).
    perm = np.random.default_rng([3, 0x5EED]).permutation(100)
    assert valid.tolist() == sorted(perm[:10].tolist())
    with pytest.raises(ValueError, match="valid_fraction must be a number in"):
        split_indices(10, 1.5)
    with pytest.raises(ValueError, match="valid_fraction \\+ test_fraction must be < 1"):
        split_indices(10, 0.6, 0.4)


def test_labelled_text_file_splits_and_maps_classes(tmp_path):
    lines = [f"{'pos' if i % 3 else 'neg'} w{i} x" for i in range(30)]
    path = _file(tmp_path, "\n".join(lines) + "\n")
    splits = labelled_text_file(path, "first_token", valid_fraction=0.2, test_fraction=0.1,
                                seed=0)
    assert splits.classes == ["neg", "pos"]
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (21, 6, 3)
    numbers = np.concatenate([p.sentences.line_numbers for p in
                              (splits.train, splits.valid, splits.test)])
    assert sorted(numbers.tolist()) == list(range(1, 31))
    for part in ("train", "valid", "test"):
        text = getattr(splits, part)
        for ids, words, n in zip(splits.label_ids(part), text.sentences,
                                 text.sentences.line_numbers):
            assert words == [f"w{n - 1}", "x"]
            assert splits.classes[ids] == ("pos" if (n - 1) % 3 else "neg")


def test_classes_come_from_every_file_and_errors_name_the_argument(tmp_path):
    train = _file(tmp_path, "a/X b/Y\n", "train.txt")
    held = _file(tmp_path, "a/X c/Z\n", "held.txt")
    splits = labelled_text_file(train, "tags", valid_path=held)
    assert splits.classes == ["X", "Y", "Z"] and splits.test is None
    assert [i.tolist() for i in splits.label_ids("valid")] == [[0, 2]]
    bad = _file(tmp_path, "a/X b\n", "bad.txt")
    with pytest.raises(ValueError, match=rf"^valid_path={bad!r}: tagged file {bad!r} line 1: "
                                         "item 'b' has no tag"):
        labelled_text_file(train, "tags", valid_path=bad)
    with pytest.raises(FileNotFoundError, match=r"^test_path='.*nope.txt': text file not found"):
        labelled_text_file(train, "tags", test_path=str(tmp_path / "nope.txt"))
    two = _file(tmp_path, "a/X\nb/Y\n", "two.txt")
    with pytest.raises(ValueError, match=rf"path={two!r} leaves no training lines after holding "
                                         "out valid_fraction=0.49 and test_fraction=0.49 of 2"):
        labelled_text_file(two, "tags", valid_fraction=0.49, test_fraction=0.49)


def test_subset_keeps_lines_and_labels():
    from bucketrnn.data.datasets import Lines, OverflowCounts

    text = LabelledText(Lines([["a"], ["b"], ["c"]], "f", [1, 4, 9], OverflowCounts()),
                        ["x", "y", "z"])
    sub = text.subset([2, 0])
    assert sub.sentences == [["c"], ["a"]] and sub.labels == ["z", "x"]
    assert sub.sentences.line_numbers.tolist() == [9, 1] and sub.sentences.path == "f"
