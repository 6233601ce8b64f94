"""model=seq2seq dataset=pairs: a tiny run end to end, vocabularies saved, bad input named."""

import json
import sys

import numpy as np
import pytest
from _app import compose_config, pairs_file

from bucketrnn.app.run import run
from bucketrnn.data.datasets import Vocabulary

TINY = ["model=seq2seq", "dataset=pairs", "model.hidden_size=12", "bucketing.num_buckets=3",
        "bucketing.batch_size=8", "trainer.epochs=1", "trainer.max_steps=6",
        "trainer.progress=false", "plots=false"]


def _compose(*overrides):
    return compose_config(*TINY, *overrides)


@pytest.mark.parametrize("shared", [False, True])
def test_tiny_pairs_run_saves_both_vocabularies(tmp_path, shared):
    path = pairs_file(tmp_path)
    extra = ["dataset.shared_vocab=true", "model.share_embeddings=true"] if shared else []
    out = tmp_path / "run"
    summary = run(_compose(f"dataset.path={path}", *extra), str(out), stream=sys.stdout)
    src = Vocabulary.load(str(out / "vocab.json"))
    tgt = Vocabulary.load(str(out / "tgt_vocab.json"))
    assert (src.itos == tgt.itos) == shared
    assert "A" in tgt.stoi and ("A" in src.stoi) == shared
    assert summary["steps"] == 6 and summary["valid"]["perplexity"] > 1
    for split in ("valid", "test"):  # greedy decoding of the held-out pairs
        assert 0 <= summary[split]["exact_match"] <= 1 and 0 <= summary[split]["bleu"] <= 100
        assert summary[split]["pairs"] == 6
    assert summary["graphs_compiled"] >= 1 and summary["tokens_per_s"] > 0
    assert all(isinstance(k, list) and len(k) == 2 for k in summary["plan"]["keys"])
    assert json.loads((out / "config.json").read_text())["model"]["name"] == "seq2seq"


def test_a_line_without_tab_is_named_with_the_config_key(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("a b\tB A\nc d e\n")
    with pytest.raises(ValueError, match=r"dataset.path=.*line 2 has 0 tabs"):
        run(_compose(f"dataset.path={path}"), str(tmp_path / "run"))


@pytest.mark.parametrize("overrides, match", [
    (["dataset=text"], "must be seq2seq exactly when dataset=pairs"),
    (["model.share_embeddings=true"], "needs dataset.shared_vocab=true"),
])
def test_config_mismatches_are_named(tmp_path, overrides, match):
    path = pairs_file(tmp_path, 10)
    with pytest.raises(ValueError, match=match):
        run(_compose(f"dataset.path={path}", *overrides), str(tmp_path / "run"))


def test_resumed_pairs_run_matches_an_uninterrupted_one(tmp_path):
    from bucketrnn.training import checkpoint as ckpt
    path = pairs_file(tmp_path)
    base = [f"dataset.path={path}", "trainer.max_steps=null", "trainer.epochs=2",
            "trainer.checkpoint_every=0"]
    run(_compose(*base), str(tmp_path / "whole"))
    part = tmp_path / "part"
    run(_compose(*base, "trainer.max_steps=4"), str(part))
    (part / "tgt_vocab.json").write_text('["<unk>", "<eos>", "Z"]')
    with pytest.raises(ValueError, match="tgt_vocab.json' does not match the vocabulary"):
        run(_compose(*base, f"resume={part}"), str(tmp_path / "elsewhere"))
    Vocabulary.load(str(tmp_path / "whole" / "tgt_vocab.json")).save(str(part / "tgt_vocab.json"))
    summary = run(_compose(*base, f"resume={part}"), str(tmp_path / "elsewhere"))
    assert summary["resumed"] and summary["epochs_done"] == 2
    a = ckpt.load(str(tmp_path / "whole" / "checkpoint.npz")).params
    b = ckpt.load(str(part / "checkpoint.npz")).params
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_decoder_too_large_for_mxnet_is_refused_before_training(tmp_path):
    # Decoder layer 0 reads embedding + attentional state: 4 x 20000 x 40000 > 2**31 - 1
    # (4 x 20000 x 20000 alone is not).
    path = pairs_file(tmp_path, 10)
    with pytest.raises(ValueError, match=r"model.hidden_size .* 4 gates x 20000 x 40000"):
        run(_compose(f"dataset.path={path}", "model.hidden_size=20000"), str(tmp_path / "r"))


def test_a_trained_pairs_run_is_loaded_and_translates_files_in_input_order(tmp_path):
    import io

    import bucketrnn
    from bucketrnn.app import commands
    from bucketrnn.inference.translate import translate

    path = pairs_file(tmp_path)
    run_dir = str(tmp_path / "run")
    summary = run(_compose(f"dataset.path={path}"), run_dir, stream=io.StringIO())
    trained = bucketrnn.load_run(run_dir)
    assert trained.task == "seq2seq" and "A" in trained.tgt_vocab.stoi
    got = trained.evaluate("valid")  # loss, perplexity, exact match and BLEU as in training
    for key in ("loss", "exact_match", "bleu"):
        assert got[key] == pytest.approx(summary["valid"][key], rel=1e-6, abs=1e-9), key
    sources = ["a b c d e f a b", "a", "", "f e"]
    (tmp_path / "src.txt").write_text("\n".join(sources) + "\n")
    out = io.StringIO()
    assert commands.main(["translate", run_dir, str(tmp_path / "src.txt")], out=out) == 0
    lines = out.getvalue().split("\n")[:len(sources)]
    assert lines[2] == ""  # a blank line answers a blank line
    model = trained.graphs.block((1, 1))
    for line, src in zip(lines, sources):
        if src:  # each line as it is translated alone
            assert line == translate(model, trained.vocab, trained.tgt_vocab, [src.split()])[0]


@pytest.mark.parametrize("memory", ["shared", "static"])
def test_a_foreach_encoder_trains_pairs_per_key_like_the_unrolled_one(tmp_path, memory):
    # GraphCache took the foreach encoder's length_agnostic for the whole model and ran every
    # (src_len, tgt_len) key on the first block (its shape check refused the next batch); with
    # separate per-key graphs, memory=static's static_shape then made gradients inf.
    path = pairs_file(tmp_path)
    base = [f"dataset.path={path}", f"memory={memory}", "trainer.max_steps=8"]
    got = run(_compose(*base, "model.cell=foreach"), str(tmp_path / "foreach"))
    want = run(_compose(*base, "model.cell=unrolled"), str(tmp_path / "unrolled"))
    assert got["graphs_compiled"] == want["graphs_compiled"] > 1
    assert got["valid"]["loss"] == pytest.approx(want["valid"]["loss"], rel=1e-5)


def test_a_resume_writes_a_missing_target_vocabulary_again(tmp_path):
    # It resumed without it and left a run directory load_run refuses (no tgt_vocab.json).
    import bucketrnn

    path = pairs_file(tmp_path)
    base = [f"dataset.path={path}", "trainer.max_steps=null", "trainer.epochs=1",
            "trainer.checkpoint_every=0"]
    part = tmp_path / "part"
    run(_compose(*base, "trainer.max_steps=3"), str(part))
    saved = (part / "tgt_vocab.json").read_bytes()
    (part / "tgt_vocab.json").unlink()
    summary = run(_compose(*base, f"resume={part}"), str(tmp_path / "elsewhere"))
    assert summary["resumed"] and (part / "tgt_vocab.json").read_bytes() == saved
    assert bucketrnn.load_run(str(part)).tgt_vocab.itos == json.loads(saved)


def test_more_buckets_than_distinct_lengths_names_the_config_key(tmp_path):
    # A 2-line file has at most 2 distinct lengths; the default asks for 8 buckets.
    path = tmp_path / "two.tsv"
    path.write_text("a b\tB A\nc d e\tE D C\n")
    with pytest.raises(ValueError, match=r"^bucketing\.num_buckets=8 is more than the 2 "
                                         r"distinct \(source, target\) length pairs"):
        run(_compose(f"dataset.path={path}", "bucketing.num_buckets=8",
                     "dataset.valid_fraction=0", "dataset.test_fraction=0"),
            str(tmp_path / "run"))


def test_translate_refuses_a_lone_huge_line_as_predict_does(tmp_path, no_long_encoder):
    # predict and evaluate refused a 10**6-token line in seconds; translate ran until killed.
    import io
    import time

    from bucketrnn.app import commands

    run_dir = str(tmp_path / "run")
    run(_compose(f"dataset.path={pairs_file(tmp_path)}"), run_dir, stream=io.StringIO())
    src = tmp_path / "huge.txt"
    src.write_text("\n" + "c " * 10**6 + "\n")  # alone: no rest to be an outlier against
    err = io.StringIO()
    saved, sys.stderr = sys.stderr, err
    started = time.perf_counter()
    try:
        status = commands.main(["translate", run_dir, str(src)], out=io.StringIO())
    finally:
        sys.stderr = saved
    assert status == 2 and time.perf_counter() - started < 60
    message = err.getvalue()
    assert message.startswith(f"error: file {str(src)!r} is too long to decode here: "), message
    assert "its longest source, line 2, is 1000000 tokens: split or cut long lines" in message


def test_evaluate_refuses_a_lone_pair_too_long_to_unroll_at_once(tmp_path, monkeypatch):
    # A sequence-pair model has no length-agnostic graph (its decoder is unrolled): a pair past
    # its graphs' unroll_limit is refused before any graph of it is built, not bound for minutes.
    import io

    from bucketrnn.app import commands
    from bucketrnn.models.encoder import RecurrentEncoder

    built = RecurrentEncoder.__init__

    def guarded(self, length, *args, **kwargs):  # fail at once where main unrolled the pair
        assert length is None or length <= 4096, f"an encoder graph of {length} steps"
        built(self, length, *args, **kwargs)

    run_dir = str(tmp_path / "run")
    run(_compose(f"dataset.path={pairs_file(tmp_path)}"), run_dir, stream=io.StringIO())
    monkeypatch.setattr(RecurrentEncoder, "__init__", guarded)
    path = tmp_path / "long.tsv"
    path.write_text("a " * 3000 + "\t" + "B " * 10 + "\n")  # alone: no rest to be an outlier
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert commands.main(["evaluate", run_dir, str(path)], out=io.StringIO()) == 2
    assert err.getvalue() == (
        f"error: line 1 of {str(path)!r} is 3,011 steps long (3,000 source + 11 target), more "
        "than the 2,048 steps this model's graphs unroll (unroll_limit; a sequence-pair model "
        "has no length-agnostic graph to run it on, and binding an unrolled graph costs about "
        "1 ms and 100 kB per step): split or cut such lines, or raise the limit "
        "(load_run(...).graphs.unroll_limit = N)\n")
