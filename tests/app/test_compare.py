"""``bucketrnn-compare DIR``: every bad summary.json is skipped with one warning line naming it
and why, the good runs are still tabled, and nothing under DIR is followed, blocked on or run."""

import json
import os

import pytest

from bucketrnn.app import compare
from bucketrnn.app.compare import collect, main

GOOD = {"plan": {"waste": 0.25}, "graphs_compiled": 3, "tokens_per_s": 1234.0,
        "train_seconds": 5.0, "valid": {"perplexity": 80.5}, "test": None,
        "config": {"bucketing": {"num_buckets": 8}}}


def _run(root, name, summary=GOOD, text=None):
    folder = root / name
    folder.mkdir(parents=True)
    path = folder / "summary.json"
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    elif summary is not None:
        path.write_text(json.dumps(summary), encoding="utf-8")
    return path


def _compare(root, capsys):
    code = main([str(root)])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line]


def _good_and(tmp_path, make_bad):
    """A sweep of one good run (num_buckets=8) and one bad one made by ``make_bad(path)``."""
    _run(tmp_path, "0")
    bad = tmp_path / "1" / "summary.json"
    bad.parent.mkdir()
    make_bad(bad)
    return bad


BAD_FILES = {
    "truncated": (lambda p: p.write_text(json.dumps(GOOD)[:30]), "is not valid JSON"),
    "a list": (lambda p: p.write_text("[]"), "holds a JSON list, not an object"),
    "deep to parse": (lambda p: p.write_text("[" * 200_000), "is nested too deeply to parse"),
    "deep config": (lambda p: p.write_text(json.dumps(
        {**GOOD, "config": json.loads('{"a":' * 200 + "1" + "}" * 200)})),
        "is nested more than 64 levels deep"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "dev zero": (lambda p: p.symlink_to("/dev/zero"), "is not a regular file (a character dev"),
    "fifo": (lambda p: os.mkfifo(p), "is not a regular file (a FIFO)"),
    "dangling link": (lambda p: p.symlink_to(p.parent / "gone.json"),
                      "is a symbolic link to a missing file"),
    "not utf-8": (lambda p: p.write_bytes(b'{"plan": "\xff"}'), "is not UTF-8 text"),
    "huge int": (lambda p: p.write_text('{"graphs_compiled": ' + "9" * 5000 + "}"),
                 "could not be parsed (ValueError)"),
    "no plan": (lambda p: p.write_text(json.dumps({k: v for k, v in GOOD.items()
                                                   if k != "plan"})),
                "field 'plan.waste' is missing or not a number"),
    "str graphs": (lambda p: p.write_text(json.dumps({**GOOD, "graphs_compiled": "3"})),
                   "field 'graphs_compiled' is missing or not an integer"),
    "bool tokens": (lambda p: p.write_text(json.dumps({**GOOD, "tokens_per_s": True})),
                    "field 'tokens_per_s' is missing or not a number"),
    "int beyond float": (lambda p: p.write_text(json.dumps({**GOOD, "train_seconds": 10**400})),
                         "field 'train_seconds' is missing or not a number"),
    "str metric": (lambda p: p.write_text(json.dumps({**GOOD, "valid": {"perplexity": "8"}})),
                   "field 'valid.perplexity' is not a number"),
    "list config": (lambda p: p.write_text(json.dumps({**GOOD, "config": [1]})),
                    "field 'config' is not an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_summary_is_one_warning_and_the_good_runs_are_still_tabled(tmp_path, capsys,
                                                                         case):
    make_bad, why = BAD_FILES[case]
    bad = _good_and(tmp_path, make_bad)
    code, out, err = _compare(tmp_path, capsys)
    assert code == 0
    assert len(err) == 1 and err[0].startswith(f"warning: skipped {str(bad)!r}: {why}"), err
    rows = out.splitlines()
    assert len(rows) == 3 and rows[2].startswith("0 ") and "1,234" in rows[2]


def test_an_oversized_summary_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare, "MAX_SUMMARY_BYTES", 1000)
    bad = _good_and(tmp_path, lambda p: p.write_text(json.dumps({**GOOD, "pad": "x" * 1000})))
    size = bad.stat().st_size
    code, out, err = _compare(tmp_path, capsys)
    assert code == 0 and len(out.splitlines()) == 3
    assert err == [f"warning: skipped {str(bad)!r}: is larger than 1000 bytes ({size} bytes)"]


def test_exit_2_only_when_no_run_is_readable(tmp_path, capsys):
    _run(tmp_path, "a", text="{")
    _run(tmp_path, "b", text="[]")
    code, out, err = _compare(tmp_path, capsys)
    assert code == 2 and out == ""
    assert len(err) == 3 and err[-1] == f"error: no readable summary.json under {str(tmp_path)!r}"
    assert main([str(tmp_path / "a")]) == 2  # an unreadable run alone
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1  # nothing to compare at all: unchanged


def test_directory_links_are_not_followed(tmp_path, capsys):
    _run(tmp_path, "a")
    _run(tmp_path, "b", {**GOOD, "config": {"bucketing": {"num_buckets": 1}}})
    (tmp_path / "a" / "up").symlink_to("..")  # a loop
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    _run(outside, "x")
    (tmp_path / "elsewhere").symlink_to(outside)
    assert [r["name"] for r in collect(str(tmp_path))] == ["a", "b"]
    code, out, err = _compare(tmp_path, capsys)
    assert code == 0 and err == [] and len(out.splitlines()) == 4


def test_a_link_to_a_regular_summary_is_read(tmp_path):
    real = _run(tmp_path, "real")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "summary.json").symlink_to(real)
    assert [r["name"] for r in collect(str(tmp_path))] == ["linked", "real"]


def test_values_are_shown_as_text_never_run_nor_sent_to_the_terminal(tmp_path, capsys):
    marker = tmp_path / "pwned"
    code_text = f"__import__('os').system('touch {marker}')"
    _run(tmp_path, "a", {**GOOD, "config": {"model": {"cell": code_text}}})
    _run(tmp_path, "b\x1b[2Jc", {**GOOD, "config": {"model": {"cell": "x\ny\x1b[31m"}}})
    code, out, err = _compare(tmp_path, capsys)
    assert code == 0 and err == [] and not marker.exists()
    assert f"model.cell={code_text}" in out
    assert "\x1b" not in out and len(out.splitlines()) == 4
    assert "b\\x1b[2Jc" in out and "model.cell=x\\ny\\x1b[31m" in out


def test_runs_without_pairs_have_no_translation_columns(tmp_path, capsys):
    _run(tmp_path, "a")
    code = main([str(tmp_path)])
    head = capsys.readouterr().out.splitlines()[0]
    assert code == 0 and "BLEU" not in head and "plan waste%" in head
