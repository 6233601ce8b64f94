"""Reading a run directory's files back: each a JSON document the run wrote, or a clear error.

The names live in :mod:`bucketrnn.training.rundir`; here is what each file must hold when it is
read again (resuming a run, loading a trained one). Nothing is evaluated: a ``config.json``
holding an OmegaConf interpolation (``${...}``) is refused, since resolving it could read the
environment or call a resolver, and bucketrnn writes plain values only.
"""

from __future__ import annotations

import hashlib
import json
import os

from bucketrnn.errors import StateMismatchError
from bucketrnn.files import atomic_write, read_json
from bucketrnn.training.rundir import CLASSES, TAGS, TGT_VOCAB, VOCAB

__all__ = ["DIGESTED", "check_file_digests", "check_saved_vocab", "file_digests", "load_tags",
           "read_config", "read_run_file", "save_tags", "write_json"]

# The files whose order gives a checkpoint's ids their meaning (token id -> word, class id ->
# name): a training run records their SHA-256 in every checkpoint (meta "run_files"), so the
# same names in another order are refused instead of turning every answer into another one.
DIGESTED = (VOCAB, TGT_VOCAB, CLASSES, TAGS)


def write_json(path: str, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically (:func:`atomic_write`)."""
    atomic_write(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_run_file(path: str, what: str):
    """The JSON value of a run directory's file, or None when there is none; a ``ValueError``
    naming the file for anything bucketrnn did not write there (a directory, a FIFO, a link
    to a device, a huge file, not JSON, ...)."""
    try:
        return read_json(path)
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ValueError(f"{path!r} is not a {what} written by bucketrnn: it {e}; restore it or "
                         "start a new run") from None


def _read_config(path: str) -> dict:
    """A run's ``config.json``: a JSON object, or a ``ValueError`` naming the file."""
    saved = read_run_file(path, "config")
    if not isinstance(saved, dict) or not all(isinstance(saved.get(k), dict) for k in (
            "dataset", "model", "bucketing", "trainer", "memory")):
        raise ValueError(f"{path!r} is not a config written by bucketrnn (expected an object "
                         "with dataset, model, bucketing, trainer and memory sections)")
    key = _interpolation(saved)
    if key is not None:
        # OmegaConf would resolve it (an environment variable, a resolver): data read from a run
        # directory is never evaluated, and bucketrnn writes plain values only.
        raise ValueError(f"{path!r} is not a config written by bucketrnn: {key} holds an "
                         "interpolation ('${'), which is never evaluated from a run directory; "
                         "restore the file or start a new run")
    return saved


def read_config(path: str) -> dict:
    """A run's ``config.json`` as a plain dict: ``ValueError`` naming the file for anything the
    app did not write (not JSON, a section missing, an interpolation), ``FileNotFoundError``
    when there is none."""
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{path!r} does not exist")
    return _read_config(path)


def _interpolation(value, key: str = "") -> str | None:
    """The dotted key of the first string (value or key) holding ``${``, else None."""
    if isinstance(value, str):
        return key or "<top>" if "${" in value else None
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        name = f"{key}.{k}" if key else str(k)
        if isinstance(k, str) and "${" in k:
            return name
        found = _interpolation(v, name)
        if found is not None:
            return found
    return None


def check_saved_vocab(path: str, vocab) -> None:
    """Refuse to resume when the run's ``vocab.json`` is not the vocabulary built now: the data
    changed, and the checkpoint's token ids would mean other words."""
    saved = read_run_file(path, "vocabulary")
    if saved is None or saved == list(vocab.itos):
        return
    if not isinstance(saved, list):
        raise ValueError(f"{path!r} is not a vocabulary written by bucketrnn (expected a list "
                         "of tokens); restore it or start a new run")
    first = next((i for i, (a, b) in enumerate(zip(saved, vocab.itos)) if a != b),
                 min(len(saved), len(vocab)))
    raise ValueError(f"{path!r} does not match the vocabulary built from the data now "
                     f"({len(saved)} tokens saved, {len(vocab)} now; first difference at id "
                     f"{first}): the data changed since the run started, so the checkpoint's "
                     "token ids would mean other words; restore the data or start a new run")


def save_tags(path: str, classes) -> None:
    """Write a tagger's class map (a JSON list of tag names, index = tag id) atomically."""
    write_json(path, list(classes))


def load_tags(path: str) -> list:
    """The class map :func:`save_tags` wrote (``tags.json`` of a tagger's run directory): a
    list of tag names, index = tag id; ``ValueError`` naming the file for anything else."""
    tags = read_run_file(path, "tag map")
    if tags is None:
        raise FileNotFoundError(f"no tag map {path!r}: not the run directory of a tagger")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags) \
            or len(set(tags)) != len(tags):
        raise ValueError(f"{path!r} is not a tag map written by bucketrnn (expected a JSON list "
                         "of distinct tag names)")
    bad = [t for t in tags if not t.strip() or t != "".join(t.split())]
    if bad:  # predict prints token/TAG items split by spaces: a tag with a blank breaks them
        raise ValueError(f"{path!r} is not a tag map written by bucketrnn: tag {bad[0]!r} is "
                         "empty or holds whitespace")
    bad = [t for t in tags if not t.isprintable()]
    if bad:  # predict writes tags to the terminal: an escape sequence would act on it
        raise ValueError(f"{path!r} is not a tag map written by bucketrnn: tag {bad[0]!r} holds "
                         "an unprintable character (a control or format character, such as a "
                         "terminal escape)")
    return tags


def file_digests(run_dir: str) -> dict:
    """``{name: SHA-256 hex}`` of each file of :data:`DIGESTED` that ``run_dir`` holds: of its
    JSON document in a canonical form (keys sorted, no spaces), so the same content laid out
    otherwise (indented by hand) has the same digest, and the same names in another order do
    not. A file that is not JSON is a ``ValueError`` naming it."""
    digests = {}
    for name in DIGESTED:
        path = os.path.join(run_dir, name)
        if not os.path.lexists(path):
            continue
        canonical = json.dumps(read_run_file(path, name), sort_keys=True,
                               separators=(",", ":"), ensure_ascii=False)
        digests[name] = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return digests


def check_file_digests(run_dir: str, recorded: dict, checkpoint: str) -> None:
    """Refuse run files that are not the ones ``checkpoint`` was trained with: a
    ``StateMismatchError`` naming the first file of ``recorded`` (the checkpoint's
    ``run_files``) that ``run_dir`` lacks or holds with another SHA-256."""
    now = file_digests(run_dir)
    for name in sorted(recorded):
        path = os.path.join(run_dir, name)
        if name not in now:
            raise StateMismatchError(f"{path!r} is missing, and the checkpoint {checkpoint!r} "
                                     "was trained with it: restore the run's own file")
        if now[name] != recorded[name]:
            raise StateMismatchError(
                f"{path!r} is not the file the checkpoint {checkpoint!r} was trained with (its "
                "SHA-256 differs from the one recorded there): the same names in another order "
                "would turn every token or class id into another one. Restore the run's own "
                f"{name}")
