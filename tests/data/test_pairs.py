import numpy as np
import pytest

from bucketrnn.data.pairs import decode_ids, encode_pairs, pair_vocabularies, read_pairs


def write(tmp_path, text, name="pairs.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_whitespace_and_char_pairs_with_line_numbers(tmp_path):
    path = write(tmp_path, "a b\tb a\n\nab c\tc ba\n")
    pairs = read_pairs(path)
    assert pairs == [(["a", "b"], ["b", "a"]), (["ab", "c"], ["c", "ba"])]
    assert pairs.line_numbers.tolist() == [1, 3]
    chars = read_pairs(path, tokens="char")
    assert chars[1] == (list("ab c"), list("c ba"))


@pytest.mark.parametrize("text, match", [
    ("a b\tb a\nno tab here\n", r"line 2 has 0 tabs: each line must be one source<TAB>target"),
    ("a\tb\tc\n", r"line 1 has 2 tabs"),
    ("a b\tb a\n \tb\n", r"line 2 has an empty source"),
    ("a b\tb a\nx y\t  \n", r"line 2 has an empty target"),
    # A line of only its separator is no blank line: it was skipped, pairs lost unnamed.
    ("a b\tb a\n\t\nc\td\n", r"line 2 has an empty source"),
    ("a b\tb a\n \t \t\n", r"line 2 has 2 tabs"),
    # The end-of-target marker inside a target: decoding would stop there, the rest lost.
    ("a b\tb a\nx y\tY <eos> X\n", r"line 2 has '<eos>' in its target at token 2: it is the "
                                     r"end-of-target marker"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=match) as e:
        read_pairs(path)
    assert path in str(e.value)


def test_max_length_error_truncate_drop_are_counted(tmp_path):
    path = write(tmp_path, "a b c d\tx\na\tb\n")
    with pytest.raises(ValueError, match=r"line 1 has a side of 4 tokens, more than max_length=2"):
        read_pairs(path, max_length=2)
    cut = read_pairs(path, max_length=2, on_overflow="truncate")
    assert cut[0] == (["a", "b"], ["x"]) and cut.overflow.lines_truncated == 1
    assert cut.overflow.tokens_cut == 2
    kept = read_pairs(path, max_length=2, on_overflow="drop")
    assert kept == [(["a"], ["b"])] and kept.line_numbers.tolist() == [2]
    assert kept.overflow.lines_dropped == 1


def test_separate_and_shared_vocabularies_and_eos_targets(tmp_path):
    pairs = read_pairs(write(tmp_path, "a b\tx\nb\ty x\n"))
    src, tgt = pair_vocabularies(pairs)
    assert src.itos == ["<unk>", "<eos>", "b", "a"] and tgt.itos == ["<unk>", "<eos>", "x", "y"]
    shared, same = pair_vocabularies(pairs, shared=True)
    assert shared is same and set(shared.itos) == {"<unk>", "<eos>", "a", "b", "x", "y"}
    ex = encode_pairs(pairs, src, tgt)
    assert ex[1][0].tolist() == [2] and ex[1][1].tolist() == [3, 2, 1]
    assert ex[0][1].dtype == np.int32
    assert decode_ids(ex[1][1], tgt) == "y x"
    assert decode_ids([3, 2, 1, 2], tgt, tokens="char") == "yx"


def test_toy_pairs_tasks_and_length_spread():
    from bucketrnn.data.pairs import toy_pairs

    rev = toy_pairs(2000, "reverse", seed=3)
    lengths = np.array([len(s) for s, _ in rev])
    assert lengths.min() == 3 and lengths.max() == 40 and np.median(lengths) < 12
    assert all(t == s[::-1] for s, t in rev)
    assert all(t == s for s, t in toy_pairs(5, "copy"))
    src, tgt = toy_pairs(1, "translit", max_length=3, seed=1)[0]
    assert tgt == ["A", "A", "L", "J"]
    with pytest.raises(ValueError, match="task"):
        toy_pairs(3, "sort")


def test_blank_lines_are_still_skipped_with_their_numbers_kept(tmp_path):
    path = write(tmp_path, "a\tb\n\n   \r\nc\td\n")
    pairs = read_pairs(path)
    assert list(pairs) == [(["a"], ["b"]), (["c"], ["d"])]
    assert pairs.line_numbers.tolist() == [1, 4]
