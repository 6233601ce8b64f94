"""GraphCache.load treats an export directory as untrusted data (DESIGN invariant 7)."""

import json
import os
import pickle
import traceback

import pytest
from _graphs import BATCHES, make

from bucketrnn.graphs.cache import GraphCache

SECRET = "TOPSECRET-hunter2"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    graphs = make("shared", keys=(4, 6))
    for batch in BATCHES[1:3]:
        graphs(batch)
    graphs.export(str(folder / "lm"))
    return folder


def crafted(exported, tmp_path, **changes):
    """A copy of the export in ``tmp_path/exp`` whose index has ``changes`` applied."""
    folder = tmp_path / "exp"
    folder.mkdir()
    for name in os.listdir(exported):
        (folder / name).write_bytes((exported / name).read_bytes())
    index = json.loads((folder / "lm-graphs.json").read_text())
    symbol = changes.pop("symbol", None)
    if symbol is not None:
        index["graphs"][0]["symbol"] = symbol
    index.update(changes)
    (folder / "lm-graphs.json").write_text(json.dumps(index))
    return str(folder / "lm")


def refused(prefix, match, exc=ValueError):
    with pytest.raises(exc, match=match) as info:
        GraphCache.load(prefix)
    text = "".join(traceback.format_exception(info.value))
    assert SECRET not in text, "an error message quotes the content of a file"
    return str(info.value)


def test_the_untouched_export_loads(exported):
    loaded = GraphCache.load(str(exported / "lm"))
    for batch in BATCHES[1:3]:
        loaded(batch)
    assert loaded.keys == [6, 4]


@pytest.mark.parametrize("field", ["symbol", "params"])
@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/../../x.json", ".."])
def test_file_names_escaping_the_directory_are_refused(exported, tmp_path, field, name):
    prefix = crafted(exported, tmp_path, **{field: name})
    message = refused(prefix, "not a plain file name in the export directory")
    assert "lm-graphs.json lists the file" in message


@pytest.mark.parametrize("field", ["symbol", "params"])
def test_symlinks_leading_out_of_the_directory_are_refused(exported, tmp_path, field):
    outside = tmp_path / "secret.txt"
    outside.write_text(SECRET)
    prefix = crafted(exported, tmp_path, **{field: "link.json"})
    os.symlink(outside, tmp_path / "exp" / "link.json")
    refused(prefix, "a symbolic link leading out of the export directory")


@pytest.mark.parametrize("field, match", [("symbol", "is not a symbol file MXNet can read"),
                                          ("params", "is not an MXNet NDArray file")])
@pytest.mark.parametrize("content", [SECRET + " line\n", '{"nodes": "' + SECRET + '"}'])
def test_a_listed_secret_file_is_never_echoed(exported, tmp_path, field, match, content):
    # MXNet's own JSON parse error would quote the text ("around ^`...`").
    prefix = crafted(exported, tmp_path, **{field: "notes.txt"})
    (tmp_path / "exp" / "notes.txt").write_text(content)
    assert "notes.txt" in refused(prefix, match)


class _Payload:
    def __reduce__(self):
        return (open, (_Payload.marker, "w"))


def test_a_pickle_as_params_runs_no_code(exported, tmp_path):
    # mx.nd.load reads MXNet's binary NDArray format in C++, never pickle.
    prefix = crafted(exported, tmp_path)
    _Payload.marker = str(tmp_path / "ran")
    (tmp_path / "exp" / "lm.params").write_bytes(pickle.dumps({"w": _Payload()}))
    refused(prefix, r"lm.params \(listed in .*\) is not an MXNet NDArray file")
    assert not os.path.exists(_Payload.marker)


def test_a_broken_index_is_named_not_quoted(exported, tmp_path):
    prefix = crafted(exported, tmp_path)
    index = tmp_path / "exp" / "lm-graphs.json"
    index.write_text(SECRET)
    refused(prefix, "lm-graphs.json is not a JSON export index")
    index.write_text(json.dumps({"format": 1, "graphs": [{"symbol": 3}], "params": "lm.params",
                                 "inputs": ["data"]}))
    refused(prefix, r"graphs\[0\] must have a 'symbol' file name")
    index.write_text(json.dumps({"format": SECRET}))
    refused(prefix, "has format='str', expected 1")


def test_a_missing_listed_file_is_named(exported, tmp_path):
    prefix = crafted(exported, tmp_path, symbol="lm-99-symbol.json")
    refused(prefix, "lm-99-symbol.json, listed in .* is missing", FileNotFoundError)


def _index_with(exported, tmp_path, **changes):
    prefix = crafted(exported, tmp_path)
    index = json.loads((tmp_path / "exp" / "lm-graphs.json").read_text())
    index.update(changes)
    (tmp_path / "exp" / "lm-graphs.json").write_text(json.dumps(index))
    return prefix, index


@pytest.mark.parametrize("text", ["[" * 200_000, '{"format": ' + "[" * 200_000,
                                  '{"format": ' + "9" * 5000 + "}"])
def test_deep_or_huge_json_is_the_malformed_index_error_naming_the_file(exported, tmp_path,
                                                                         text):
    prefix = crafted(exported, tmp_path)
    (tmp_path / "exp" / "lm-graphs.json").write_text(text)
    refused(prefix, "lm-graphs.json is not a JSON export index")


@pytest.mark.parametrize("make, what", [
    (lambda p: p.mkdir(), "it is a directory"),
    (lambda p: os.mkfifo(p), r"it is not a regular file \(a FIFO\)"),
    (lambda p: p.symlink_to("/dev/zero"), r"it is not a regular file \(a character device\)"),
])
def test_an_index_that_is_not_a_regular_file_is_never_read(exported, tmp_path, make, what):
    prefix = crafted(exported, tmp_path)
    (tmp_path / "exp" / "lm-graphs.json").unlink()
    make(tmp_path / "exp" / "lm-graphs.json")
    refused(prefix, "lm-graphs.json is not a JSON export index: " + what)


@pytest.mark.parametrize("key", [0, -3, 2**31, 10**30, True, 4.0, "4", [], [4], [4, 5, 6],
                                 [4, 0], [4, 2**31], [[4], 5]])
def test_a_key_that_is_no_bucket_key_is_refused(exported, tmp_path, key):
    prefix, index = _index_with(exported, tmp_path)
    index["graphs"][0]["key"] = key
    (tmp_path / "exp" / "lm-graphs.json").write_text(json.dumps(index))
    refused(prefix, r"graphs\[0\] must have a 'symbol' file name and a bucket 'key': a length "
                    r"in \[1, 2147483647\] or a \[source, target\] pair")


def test_a_repeated_key_is_refused(exported, tmp_path):
    prefix, index = _index_with(exported, tmp_path)
    index["graphs"][1]["key"] = index["graphs"][0]["key"]
    (tmp_path / "exp" / "lm-graphs.json").write_text(json.dumps(index))
    refused(prefix, r"lm-graphs.json is not a valid export index: graphs\[1\] repeats the key")


def test_too_many_graphs_are_refused_before_any_is_loaded(exported, tmp_path):
    prefix, index = _index_with(exported, tmp_path)
    entry = index["graphs"][0]
    index["graphs"] = [{**entry, "key": k} for k in range(1, 100_002)]
    (tmp_path / "exp" / "lm-graphs.json").write_text(json.dumps(index))
    refused(prefix, "'graphs' lists 100001 graphs, more than 100000")
