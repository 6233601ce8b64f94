"""Every test a document cites exists: the docs say which test proves a claim, and a renamed or
removed test must not leave the claim pointing at nothing."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]
# `tests/x.py`, `tests/x.py::test_y`, and `::test_z` after one (the same file as before it).
CITE = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?|(?<![\w/.])::(test_\w+)")


def _citations():
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            last = None
            for path, name, continued in CITE.findall(line):
                last = path or last
                if path or continued:
                    yield doc.name, number, last, name or continued or None


CITATIONS = list(_citations())


def test_the_docs_cite_tests():
    assert len(CITATIONS) > 50  # the guarantees of docs/reliability.md name their tests


@pytest.mark.parametrize("doc, line, path, name", CITATIONS,
                         ids=[f"{d}:{n}" for d, n, _, _ in CITATIONS])
def test_a_cited_test_exists(doc, line, path, name):
    assert path is not None, f"{doc}:{line} cites ::{name} without a file before it"
    source = ROOT / path
    assert source.is_file(), f"{doc}:{line} cites {path}, which does not exist"
    if name:
        assert re.search(rf"^\s*(async )?def {name}\(", source.read_text(), re.M), \
            f"{doc}:{line} cites {path}::{name}, which does not exist"
