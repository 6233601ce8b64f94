"""Prepared corpora: bucketrnn-prepare writes what the in-memory readers build, in bounded memory,
atomically; the memory-mapped dataset refuses damaged files and works in the loader."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from bucketrnn.data import datasets as D
from bucketrnn.data import pairs as P
from bucketrnn.data.loader import BucketLoader
from bucketrnn.data.prepare import PrepareOptions, prepare
from bucketrnn.data.prepared import PreparedDataset, is_prepared

# Every kind of line break, a byte-order mark, blank and whitespace-only lines, non-ASCII text.
TEXT = ("\ufeffthe cat sat\r\nthe dog\n\n   \nzoë — naïve the\rcat cat dog\n"
        "a b c d e f g h\n" + "".join(f"w{i % 7} the w{i % 3}\n" for i in range(40))
        + "last line no break")


def _write(tmp_path, text, name="in.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def _prep(path, tmp_path, **kw):
    # chunk_bytes=64: many chunks (and chunk boundaries inside every kind of line break).
    kw.setdefault("workers", 2)
    kw.setdefault("chunk_bytes", 64)
    return prepare(path, str(tmp_path / "out"), progress=False, **kw)


def _items(ds):
    out = []
    for i in range(len(ds)):
        item = ds[i]
        out.append(tuple(np.asarray(x).tolist() for x in item) if isinstance(item, tuple)
                   else np.asarray(item).tolist())
    return out


@pytest.mark.parametrize("tokens", ["whitespace", "char"])
@pytest.mark.parametrize("opts", [{}, {"min_count": 2}, {"max_size": 6},
                                  {"max_length": 4, "on_overflow": "truncate"},
                                  {"max_length": 4, "on_overflow": "drop"}])
def test_text_round_trip_equals_the_in_memory_encoding(tmp_path, tokens, opts):
    path = _write(tmp_path, TEXT)
    if tokens == "char" and "max_length" in opts:
        opts = {**opts, "max_length": 10}  # some lines are longer, many shorter
    ds = _prep(path, tmp_path, tokens=tokens, **opts)
    lines = D.read_lines(path, tokens, opts.get("max_length"), opts.get("on_overflow", "error"))
    vocab = D.Vocabulary.build(lines, min_count=opts.get("min_count", 1),
                               max_size=opts.get("max_size"))
    ref = D.encode_lines(lines, vocab)
    assert ds.vocab.itos == vocab.itos
    assert _items(ds) == _items(ref)
    assert ds.lengths().tolist() == ref.lengths().tolist()
    assert ds.line_numbers.tolist() == ref.line_numbers.tolist()
    assert ds.manifest["counts"]["overflow"] == lines.overflow.to_dict()
    assert ds.tokens.dtype == np.uint8  # the narrowest type that holds the vocabulary
    assert ds.manifest["counts"]["chunks"] > 5


@pytest.mark.parametrize("label", ["first_token", "contains:the"])
def test_labelled_round_trip(tmp_path, label):
    path = _write(tmp_path, TEXT)
    ds = _prep(path, tmp_path, label=label)
    text = D.read_labelled(path, label)
    splits = D.LabelledSplits.build(text, None, None, label)
    vocab = D.Vocabulary.build(text.sentences)
    ref = D.encode_lines(text.sentences, vocab)
    assert ds.vocab.itos == vocab.itos and ds.classes == splits.classes
    assert [s for s, _ in _items(ds)] == _items(ref)
    assert ds.labels.tolist() == splits.label_ids("train").tolist()
    assert ds.line_numbers.tolist() == text.sentences.line_numbers.tolist()


def test_tagged_round_trip(tmp_path):
    lines = ["The/DT cat/NN sat/VBD", "", "1/2/CD cup/NN", "a/DT b/NN\r\nc/VB"] * 20
    path = _write(tmp_path, "\n".join(lines) + "\n")
    ds = _prep(path, tmp_path, format="tagged")
    text = D.read_labelled(path, "tags")
    vocab = D.Vocabulary.build(text.sentences)
    ids = text.label_ids(text.classes())
    assert ds.vocab.itos == vocab.itos and ds.classes == text.classes()
    assert _items(ds) == [(vocab.encode(s).tolist(), t.tolist())
                          for s, t in zip(text.sentences, ids)]


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("tokens", ["whitespace", "char"])
def test_pairs_round_trip(tmp_path, shared, tokens):
    lines = [f"a b{i % 5} c\tx y{i % 3}" for i in range(30)] + ["", "q r s t u\tv"]
    path = _write(tmp_path, "\r\n".join(lines))
    ds = _prep(path, tmp_path, format="pairs", shared_vocab=shared, tokens=tokens,
               max_length=4, on_overflow="truncate")
    pairs = P.read_pairs(path, tokens=tokens, max_length=4, on_overflow="truncate")
    src, tgt = P.pair_vocabularies(pairs, shared=shared)
    ref = P.encode_pairs(pairs, src, tgt)
    assert ds.vocab.itos == src.itos and ds.tgt_vocab.itos == tgt.itos
    assert _items(ds) == [(a.tolist(), b.tolist()) for a, b in ref]
    assert ds.lengths().tolist() == [[len(a), len(b)] for a, b in ref]
    assert ds.manifest["counts"]["overflow"] == pairs.overflow.to_dict()


BAD = {
    "utf8": ("text", {}, b"ok line\nfine\r\nstill fine\nbad \xff byte\nmore\n"),
    "overflow": ("text", {"max_length": 3}, b"a b\n" * 30 + b"a b c d\n" + b"x\n" * 30
                 + b"1 2 3 4 5\n"),
    "no_label_token": ("text", {"label": "first_token"}, b"pos a b\n" * 30 + b"neg\n"),
    "tag": ("tagged", {}, b"a/X b/Y\n" * 30 + b"a/X b\n"),
    "pair": ("pairs", {}, b"a\tb\n" * 30 + b"a b c\n"),
    "blank": ("text", {}, b"\n \n\n"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_the_message_of_the_in_memory_reader(tmp_path, case):
    fmt, opts, data = BAD[case]
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    path = str(path)
    with pytest.raises(ValueError) as ours:
        _prep(path, tmp_path, format=fmt, **opts)
    with pytest.raises(ValueError) as theirs:
        if fmt == "pairs":
            P.read_pairs(path, **opts)
        elif fmt == "tagged":
            D.read_labelled(path, "tags", **opts)
        elif "label" in opts:
            D.read_labelled(path, **opts)
        else:
            D.read_lines(path, **opts)
    assert str(ours.value) == str(theirs.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_overflow_error_wins_over_a_later_label_error_as_in_memory(tmp_path):
    path = _write(tmp_path, "pos a b\nneg\n" + "pos a b c d e\n")
    with pytest.raises(ValueError, match="line 3 has 6 tokens, more than max_length=4"):
        _prep(path, tmp_path, label="first_token", max_length=4)


def test_reuse_and_a_changed_source_is_refused(tmp_path):
    path = _write(tmp_path, TEXT)
    first = _prep(path, tmp_path)
    stamp = os.stat(os.path.join(first.path, "manifest.json")).st_mtime_ns
    again = _prep(path, tmp_path)  # same source, same options: reused, nothing rewritten
    assert os.stat(os.path.join(again.path, "manifest.json")).st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other options.*min_count=1->2"):
        _prep(path, tmp_path, min_count=2)
    with open(path, "a") as f:
        f.write("\nnew words here\n")
    with pytest.raises(ValueError, match="the source changed since.*--force"):
        _prep(path, tmp_path)
    fresh = _prep(path, tmp_path, overwrite=True)
    assert len(fresh) == len(first) + 1 and fresh[len(fresh) - 1].size == 5


def test_an_unprepared_out_dir_is_not_overwritten(tmp_path):
    path = _write(tmp_path, TEXT)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="is not a prepared directory"):
        _prep(path, tmp_path)
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


@pytest.fixture
def prepared(tmp_path):
    return _prep(_write(tmp_path, TEXT), tmp_path).path


def test_a_truncated_token_file_is_refused_naming_it(prepared):
    where = os.path.join(prepared, "tokens.npy")
    os.truncate(where, os.path.getsize(where) - 3)
    with pytest.raises(ValueError, match=r"tokens\.npy' has \d+ bytes, the manifest says"):
        PreparedDataset(prepared)


def test_offsets_past_the_end_are_refused_naming_the_file(prepared):
    offsets = np.load(os.path.join(prepared, "offsets.npy"), mmap_mode="r+")
    offsets[3] = offsets[-1] + 100
    offsets.flush()
    del offsets
    with pytest.raises(ValueError, match=r"offsets\.npy' is damaged: offsets\[2:4\]"):
        PreparedDataset(prepared)


def test_a_changed_file_fails_its_digest_and_a_wrong_manifest_digest_too(prepared):
    where = os.path.join(prepared, "tokens.npy")
    data = bytearray(open(where, "rb").read())
    data[-1] ^= 1  # same size: only the digest can tell
    open(where, "wb").write(bytes(data))
    PreparedDataset(prepared)  # sizes, dtypes and offsets still agree
    with pytest.raises(ValueError, match=r"tokens\.npy' does not match its SHA-256"):
        PreparedDataset(prepared, verify=True)
    data[-1] ^= 1
    open(where, "wb").write(bytes(data))
    PreparedDataset(prepared, verify=True)
    manifest_path = os.path.join(prepared, "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["files"]["lengths.npy"]["sha256"] = "0" * 64
    open(manifest_path, "w").write(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"lengths\.npy' does not match its SHA-256"):
        PreparedDataset(prepared, verify=True)


def test_a_directory_without_manifest_is_not_a_prepared_corpus(prepared):
    os.unlink(os.path.join(prepared, "manifest.json"))
    assert not is_prepared(prepared)
    with pytest.raises(ValueError, match="has no manifest.json .*run bucketrnn-prepare"):
        PreparedDataset(prepared)


def test_workers_reopen_the_files_and_get_the_same_batches(tmp_path):
    path = _write(tmp_path, TEXT * 5)
    ds = _prep(path, tmp_path)
    blob = pickle.dumps(ds)
    assert len(blob) < 2000 and b"tokens" not in blob  # its path, not its arrays
    assert _items(pickle.loads(blob)) == _items(ds)
    ref, _ = D.text_file(path)

    def batches(dataset, workers, **kw):
        loader = BucketLoader(dataset, batch_size=4, num_buckets=3, seed=1, task="lm",
                              num_workers=workers, **kw)
        out = [(b.bucket_key, b.data.asnumpy().tolist(), b.valid_length.asnumpy().tolist())
               for b in loader]
        loader.close()
        return out

    expect = batches(ref, 0)
    assert batches(ds, 0) == expect
    assert batches(ds, 2) == expect
    view = ds.subset(np.arange(len(ds))[::-1])  # an index view: no flat arrays, item by item
    assert not hasattr(view, "tokens")
    assert batches(view, 2) == batches(ref.subset(np.arange(len(ref))[::-1]), 0)
    shards = [batches(ds, 0, num_shards=2, shard_index=i) for i in (0, 1)]
    assert len(shards[0]) == len(shards[1]) > 0


KILLED = textwrap.dedent("""
    import sys
    from bucketrnn.data.prepare import prepare
    prepare(sys.argv[1], sys.argv[2], workers=2, chunk_bytes=1 << 16, progress=False)
""")


def test_a_killed_prepare_leaves_nothing_that_looks_complete(tmp_path):
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(2000)])
    path = tmp_path / "big.txt"
    with open(path, "w") as f:
        for _ in range(40):
            f.write("\n".join(" ".join(words[rng.integers(0, 2000, 20)]) for _ in range(5000)))
            f.write("\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path), str(out)],
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not [p for p in os.listdir(tmp_path) if ".tmp-" in p]:
        assert proc.poll() is None and time.monotonic() < deadline, "prepare never started"
        time.sleep(0.01)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # the prepare and its workers, as an OOM kill would
    proc.wait()
    left = [p for p in os.listdir(tmp_path) if ".tmp-" in p]
    assert not out.exists() and left
    for name in left:
        assert not is_prepared(str(tmp_path / name))
        with pytest.raises(ValueError, match="no manifest.json"):
            PreparedDataset(str(tmp_path / name))
    ds = prepare(str(path), str(out), progress=False)  # a new run finishes
    assert len(ds) == 200_000


RSS = textwrap.dedent("""
    import resource, sys
    from bucketrnn.data.prepare import prepare
    prepare(sys.argv[1], sys.argv[2], workers=2, chunk_bytes=1 << 20, progress=False)
    # VmHWM, not RUSAGE_SELF: ru_maxrss survives exec, so it would start at the size of the
    # process that started this one.
    own = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(own, kids)
""")


def test_memory_stays_bounded_as_the_file_grows(tmp_path):
    """Peak RSS (KB, of the prepare and of its largest worker) on a 3 MB and a 32 MB file: the
    in-memory reader needs ~20x the file; prepare about the same for both (a chunk or two)."""
    rng = np.random.default_rng(0)
    words = np.array([f"word{i}" for i in range(5000)])
    line = "\n".join(" ".join(words[rng.integers(0, 5000, 12)]) for _ in range(4000)) + "\n"
    peaks = []
    for copies in (habit := (8, 80)):
        path = tmp_path / f"c{copies}.txt"
        path.write_text(line * copies)
        out = subprocess.run([sys.executable, "-c", RSS, str(path), str(tmp_path / f"o{copies}")],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        peaks.append([int(x) for x in out.stdout.split()])
    size_mb = [os.path.getsize(tmp_path / f"c{c}.txt") / 2**20 for c in habit]
    grew_mb = [(big - small) / 1024 for small, big in zip(*peaks)]
    assert size_mb[1] > 30
    # 28+ MB more text: neither the prepare nor a worker grows by more than a few chunks.
    assert max(grew_mb) < 24, (peaks, size_mb)


@pytest.mark.parametrize("kw, match", [
    ({"format": "csv"}, "format must be one of 'text', 'tagged', 'pairs', got format='csv'"),
    ({"on_overflow": "drop"}, "on_overflow='drop' needs max_length"),
    ({"format": "tagged", "label": "first_token"}, "label is 'first_token' or 'contains"),
    ({"format": "tagged", "tokens": "char"}, "format='tagged' reads whitespace"),
    ({"shared_vocab": True}, "shared_vocab is for format='pairs'"),
    ({"min_count": 0}, "min_count"),
])
def test_bad_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        PrepareOptions(**kw)
