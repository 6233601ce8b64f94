import mxnet as mx
import pytest

from bucketrnn import Vocabulary
from bucketrnn.inference.translate import translate
from bucketrnn.models import Seq2Seq
from bucketrnn.models.decode import Seq2SeqDecoder

SRC = Vocabulary.build([list("abcdefg")])
TGT = Vocabulary.build([list("ABCDEFG")])


def model():
    mx.random.seed(0)
    m = Seq2Seq((4, 4), src_vocab_size=len(SRC), tgt_vocab_size=len(TGT), bos_id=1,
                hidden_size=8, bidirectional=True)
    m.initialize(mx.init.Xavier())
    return m


@pytest.mark.parametrize("beam_size", [1, 3])
def test_bucketed_batches_come_back_in_input_order(beam_size):
    m = model()
    dec = Seq2SeqDecoder(m, eos_id=1)
    sources = ["a b c d e f", "b", "c d", "a a a a a a a a a", "g f e", "b c"]
    together = translate(m, SRC, TGT, sources, beam_size=beam_size, max_length=6,
                         batch_size=2, num_buckets=3, decoder=dec)
    alone = [translate(m, SRC, TGT, [s], beam_size=beam_size, max_length=6)[0]
             for s in sources]
    assert together == alone
    assert all(set(t.split()) <= set(TGT.itos) for t in together)
    assert 2 <= len(dec.encoders) <= 3  # one encoder graph per source bucket


def test_char_tokens_and_token_lists():
    m = model()
    by_text = translate(m, SRC, TGT, ["abc", "ga"], tokens="char", max_length=5)
    by_list = translate(m, SRC, TGT, [list("abc"), list("ga")], tokens="char", max_length=5)
    assert by_text == by_list and all(" " not in t for t in by_text)


def test_empty_source_is_named():
    with pytest.raises(ValueError, match=r"source 1 is empty \('  '\)"):
        translate(model(), SRC, TGT, ["a", "  "])


def test_translate_file_answers_each_line(tmp_path):
    from bucketrnn.inference.translate import translate_file

    m = model()
    path = tmp_path / "in.txt"
    path.write_text("a b c\n\nc a\tREFERENCE IGNORED\nz b\n")
    got = translate_file(m, SRC, TGT, str(path), max_length=5)
    assert got["line_numbers"].tolist() == [1, 3, 4]
    assert got["outputs"] == translate(m, SRC, TGT, ["a b c", "c a", "z b"], max_length=5)
    assert got["notes"] == ["1 source token(s) not in the run's vocabulary, read as <unk>: 'z'"]
    path.write_text("a\n\tb\n")
    with pytest.raises(ValueError, match=r"line 2 has an empty source"):
        translate_file(m, SRC, TGT, str(path))


def test_translate_file_refuses_a_far_longer_line_naming_it_before_any_graph(tmp_path):
    # A 10**6-token line among short ones would be traced into a 10**6-step encoder for hours.
    from bucketrnn.inference.translate import translate_file

    m = model()
    path = tmp_path / "in.txt"
    path.write_text("a b\n\nc a b\n" + "a " * 100_000 + "\nb\n")
    dec = Seq2SeqDecoder(m, eos_id=TGT["<eos>"])
    with pytest.raises(ValueError, match=rf"file {str(path)!r} line 4 is a source of 100000 "
                                         r"tokens, far more than the rest need \(3 at most"):
        translate_file(m, SRC, TGT, str(path), decoder=dec)
    assert dec.encoders == {}  # refused before any encoder graph was built


def test_an_unknown_reference_token_matches_nothing_with_unk_id():
    # A model emitting <unk> was credited for a reference word outside the vocabulary.
    import numpy as np

    from bucketrnn.inference.translate import decode_ids, score_pairs

    dec = Seq2SeqDecoder(model(), eos_id=TGT["<eos>"])
    sources = [np.array([2, 3, 4]), np.array([5, 2])]
    hyps = decode_ids(dec, sources, max_length=4)
    assert all(hyps)  # every output has a token
    examples = [(s, np.array(h + [TGT["<eos>"]])) for s, h in zip(sources, hyps)]
    assert score_pairs(dec, examples, max_length=4)["exact_match"] == 1.0
    # Read the first output token as the target vocabulary's <unk>: those references now hold
    # an unknown word, which the same outputs no longer match.
    got = score_pairs(dec, examples, unk_id=hyps[0][0], max_length=4)
    assert got["exact_match"] < 1.0
    with pytest.raises(ValueError, match="unk_id"):
        score_pairs(dec, examples, unk_id=-1)


def test_a_huge_unknown_source_token_is_shortened_in_the_note(tmp_path):
    from bucketrnn.inference.translate import translate_file

    path = tmp_path / "in.txt"
    path.write_text("a " + "x" * 10**6 + " b\n")
    note, = translate_file(model(), SRC, TGT, str(path), max_length=3)["notes"]
    assert len(note) < 300 and "(1,000,000 characters)" in note and "'xxxx" in note


def test_a_lone_source_too_long_to_decode_is_refused_before_its_encoder_is_built(
        tmp_path, no_long_encoder):
    # One 10**6-token line has no rest to be an outlier against: decoding it was traced into a
    # 10**6-step encoder (killed at 150 s, 4.6 GB and growing). The decoder's memory estimate
    # refuses it first, naming the file and line.
    import time

    from bucketrnn.errors import GraphTooLargeError
    from bucketrnn.inference.translate import translate_file

    m = model()
    path = tmp_path / "in.txt"
    path.write_text("\n" + "a b " * 500_000 + "\n")
    dec = Seq2SeqDecoder(m, eos_id=TGT["<eos>"])
    started = time.perf_counter()
    with pytest.raises(GraphTooLargeError, match=rf"file {str(path)!r} is too long to decode "
                                                 r"here: .* 1000000 steps .* needs about "
                                                 r"[\d.]+ GB \(estimated before building it\) "
                                                 r"but only .* available on cpu\(0\); its "
                                                 r"longest source, line 2, is 1000000 tokens"):
        translate_file(m, SRC, TGT, str(path), decoder=dec)
    assert time.perf_counter() - started < 30
    assert dec.encoders == {}


def test_the_decoders_memory_limit_and_estimate():
    from bucketrnn.errors import GraphTooLargeError

    m = model()
    dec = Seq2SeqDecoder(m, eos_id=1, memory_limit=10_000)
    with pytest.raises(GraphTooLargeError, match=r"decoding 2 source\(s\) of 3 steps \(beam "
                                                 r"size 1\) needs about [\d.]+ MB .* but "
                                                 r"memory_limit=10000"):
        dec.greedy([[3, 4, 5], [6, 2]], max_length=5)
    assert dec.encoders == {} and dec.steps == 0
    small = dec.estimate_memory(50, rows=2)
    assert 0 < small < dec.estimate_memory(100, rows=2) < dec.estimate_memory(100, rows=8)
    assert dec.estimate_memory(100, rows=2, beam_size=4) > dec.estimate_memory(100, rows=2)
    free = Seq2SeqDecoder(m, eos_id=1, memory_limit=None)  # no check, no estimate
    assert len(free.greedy([[3, 4, 5]], max_length=3)) == 1 and free._fits == {}
    for bad in ("8GB", 0, -1, True):
        with pytest.raises(ValueError, match="memory_limit must be 'auto', a number of bytes > 0 "
                                             "or None"):
            Seq2SeqDecoder(m, eos_id=1, memory_limit=bad)


def test_the_decoders_linear_estimate_equals_tracing_the_length_itself():
    # An unrolled encoder grows linearly in the source length: the fit from two short traces
    # must predict a longer one exactly.
    dec = Seq2SeqDecoder(model(), eos_id=1)
    assert dec.estimate_memory(60, rows=3) == dec._estimate(60, 3, 1, fit=False)
