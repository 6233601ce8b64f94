"""Prepare a text corpus once, in bounded memory, for a memory-mapped dataset.

:func:`prepare` (the ``bucketrnn-prepare`` command) streams a UTF-8 file of any size: the file is
cut into chunks of about ``chunk_bytes`` at line boundaries and worker processes read the chunks
in three passes, each holding one chunk at a time:

1. check: every chunk is valid UTF-8; count its line breaks (so every later error names the
   file's line);
2. count: tokens (the vocabulary), labels or tags, sequences and tokens per chunk, lines longer
   than ``max_length``;
3. encode: each worker writes its chunk's ids, offsets, lengths, line numbers (and labels, tags
   or targets) straight into the output arrays, at the places the counts give.

Memory is one chunk per worker plus the token counts (one entry per distinct token), whatever
the corpus size. The output goes to ``OUT_DIR.tmp-XXXX`` and is renamed to ``OUT_DIR`` only once
every file and then the manifest are written: a killed prepare leaves no directory that looks
complete. The ids, vocabulary and line numbers are exactly those of the in-memory readers
(:func:`~bucketrnn.data.datasets.text_file`, :func:`~bucketrnn.data.datasets.labelled_text_file`,
:func:`~bucketrnn.data.pairs.read_pairs`), and a bad file gets the same error.

Size: about 700 lines for one job: three streaming passes over byte ranges in worker
processes, atomic publication and the manifest of digests.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import islice, repeat

import numpy as np

from bucketrnn.data import datasets as D
from bucketrnn.data.pairs import parse_pair
from bucketrnn.data.plan import OVERFLOW_POLICIES
from bucketrnn.data.prepared import (
    FORMAT_VERSION,
    FORMATS,
    KIND,
    MANIFEST,
    PreparedDataset,
    file_sha256,
    read_manifest,
)
from bucketrnn.files import atomic_write, file_kind
from bucketrnn.progress import Progress
from bucketrnn.validation import check_choice, check_int

__all__ = ["PrepareOptions", "prepare"]

CHUNK_BYTES = 4 << 20
_BREAK = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class PrepareOptions:
    """How a file is read and encoded (stored in the manifest; a prepared directory is reused
    only for the same options).

    Parameters
    ----------
    format : {"text", "tagged", "pairs"}
        One sequence a line; ``token/TAG`` items; ``source<TAB>target`` pairs.
    tokens : {"whitespace", "char"}
    label : str, optional
        Text only: ``"first_token"`` or ``"contains:<token>"`` (a classifier's labels, as
        :func:`~bucketrnn.data.datasets.read_labelled`).
    min_count : int
        Tokens seen fewer times become ``<unk>``.
    max_size : int, optional
        Largest vocabulary, specials included (the most frequent tokens stay).
    max_length : int, optional
    on_overflow : {"error", "truncate", "drop"}
        As :func:`~bucketrnn.data.datasets.read_lines` (pairs: as
        :func:`~bucketrnn.data.pairs.read_pairs`).
    shared_vocab : bool
        Pairs: one vocabulary for both sides.
    """

    format: str = "text"
    tokens: str = "whitespace"
    label: str | None = None
    min_count: int = 1
    max_size: int | None = None
    max_length: int | None = None
    on_overflow: str = "error"
    shared_vocab: bool = False

    def __post_init__(self):
        check_choice("format", self.format, FORMATS)
        check_choice("tokens", self.tokens, ("whitespace", "char"))
        check_int("min_count", self.min_count, low=1)
        check_int("max_size", self.max_size, low=2, allow_none=True)
        check_int("max_length", self.max_length, low=1, allow_none=True)
        check_choice("on_overflow", self.on_overflow, OVERFLOW_POLICIES)
        if self.max_length is None and self.on_overflow != "error":
            raise ValueError(f"on_overflow={self.on_overflow!r} needs max_length (the longest "
                             "line to keep whole), got max_length=None")
        if self.label is not None:
            if self.format != "text" or D.label_kind(self.label) == "tags":
                raise ValueError(f"label is 'first_token' or 'contains:<token>' for "
                                 f"format='text' (format='tagged' has its tags), got "
                                 f"label={self.label!r} with format={self.format!r}")
        if self.format == "tagged" and self.tokens != "whitespace":
            raise ValueError(f"format='tagged' reads whitespace-separated token/TAG items, got "
                             f"tokens={self.tokens!r}")
        if self.shared_vocab and self.format != "pairs":
            raise ValueError(f"shared_vocab is for format='pairs', got format={self.format!r}")


# ------------------------------------------------------------------ chunks of the file
def _chunks(path: str, size: int, chunk_bytes: int) -> list:
    """``[(start, end), ...]`` byte ranges of about ``chunk_bytes`` that end after a line break
    (``\\n``, ``\\r\\n`` or ``\\r``: never between the two bytes of ``\\r\\n``)."""
    bounds, start = [], 0
    with open(path, "rb") as f:
        while start < size:
            end = start + chunk_bytes
            if end >= size:
                bounds.append((start, size))
                break
            f.seek(end)
            while True:
                block = f.read(1 << 16)
                if not block:
                    end = size
                    break
                m = _BREAK.search(block)
                if m and (m.end() < len(block) or block[-1:] != b"\r"):
                    end += m.end()
                    break
                if m:  # a '\r' ends the block: is it the start of '\r\n'?
                    nxt = f.read(1)
                    end += m.end() + (nxt == b"\n")
                    break
                end += len(block)
            bounds.append((start, end))
            start = end
    return bounds


def _read_chunk(path: str, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def _raw_lines(data: bytes, start: int) -> list:
    """The chunk's lines as Python's universal newlines give them (what read_lines does)."""
    text = data.decode("utf-8")
    if start == 0 and text.startswith("\ufeff"):
        text = text[1:]
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    return raw


def _check_chunk(job):
    """Pass 1: ``(line breaks, utf-8 error or None, lines)`` of a chunk."""
    path, start, end = job
    data = _read_chunk(path, start, end)
    breaks = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    try:
        lines = len(_raw_lines(data, start))
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n")
        return breaks, (line, start + e.start, data[e.start], e.reason), 0
    return breaks, None, lines


# ------------------------------------------------------------------ one line, every format
class _Reader:
    """Parses the lines of a chunk into what a format keeps, as the in-memory readers do."""

    def __init__(self, path: str, opts: PrepareOptions):
        self.path, self.o = path, opts
        self.split = str.split if opts.tokens == "whitespace" else list
        self.kind = D.label_kind(opts.label) if opts.label else None
        self.word = opts.label.split(":", 1)[1] if self.kind == "contains" else None

    def lines(self, job):
        """``(number, line)`` of the chunk's non-blank lines, and how many lines it has."""
        path, start, end, first = job[:4]
        raw = _raw_lines(_read_chunk(path, start, end), start)
        keep_tabs = self.o.format == "pairs"  # a line of only a tab is read (and refused)
        return [(first + i, ln) for i, ln in enumerate(raw)
                if ln.strip() or (keep_tabs and "\t" in ln)], len(raw)

    def parse(self, number: int, line: str, state: dict):
        """``(tokens, extra)`` of one line, None for a line left out; overflow counted in
        ``state``; a ``ValueError`` for a bad line (pairs) or a label/tag error."""
        o = self.o
        if o.format == "pairs":
            pair, cut = parse_pair(line, self.path, number, o.tokens, o.max_length,
                                   o.on_overflow)
            state["cut"] += cut
            if pair is None:
                state["dropped"] += 1
                return None
            state["truncated"] += cut > 0
            return pair
        items = self.split(line)
        if o.max_length is not None and len(items) > o.max_length:
            if o.on_overflow == "error":
                state["long"] += 1
                if state["first_long"] is None:
                    state["first_long"] = (number, len(items))
                return None
            if o.on_overflow == "drop":
                state["dropped"] += 1
                state["cut"] += len(items)
                return None
            state["truncated"] += 1
            state["cut"] += len(items) - o.max_length
            items = items[:o.max_length]
        if o.format == "tagged":
            return D.split_tagged(self.path, number, items)
        if self.kind == "first_token":
            if len(items) < 2:
                raise ValueError(D.no_token_after_label(self.path, number, items[0]))
            return items[1:], items[0]
        if self.kind == "contains":
            return items, "1" if self.word in items else "0"
        return items, None


def _new_state():
    return {"long": 0, "first_long": None, "dropped": 0, "truncated": 0, "cut": 0,
            "error": None}


def _count_chunk(job, reader: _Reader | None = None):
    """Pass 2: token (and label) counts, sequences and tokens of one chunk."""
    reader = reader or _WORKER["reader"]
    o = reader.o
    pairs = o.format == "pairs"
    src, tgt, classes = Counter(), (None if o.shared_vocab or not pairs else Counter()), set()
    state = _new_state()
    n_seqs = n_tok = n_tgt = 0
    lines, lines_read = reader.lines(job)
    for number, line in lines:
        if state["error"] is not None or state["first_long"] is not None:
            if pairs:
                break  # pairs raise at the first bad line, whatever it is
            # An earlier error is coming; a longer line later still takes precedence (the
            # in-memory reader refuses long lines before it parses labels), so count those.
            if o.max_length is not None and len(reader.split(line)) > o.max_length:
                reader.parse(number, line, state)
            continue
        try:
            parsed = reader.parse(number, line, state)
        except ValueError as e:
            state["error"] = str(e)
            continue
        if parsed is None:
            continue
        words, extra = parsed
        n_seqs += 1
        src.update(words)
        if pairs:
            (src if tgt is None else tgt).update(extra)
            n_tok += len(words)
            n_tgt += len(extra) + 1
        else:
            n_tok += len(words) + (0 if o.format == "tagged" else 2)
            if o.format == "tagged":
                classes.update(extra)
            elif extra is not None:
                classes.add(extra)
    return {"src": src, "tgt": tgt, "classes": classes, "seqs": n_seqs, "tokens": n_tok,
            "tgt_tokens": n_tgt, "lines": lines_read, **state}


# ------------------------------------------------------------------ pass 3: encode
# What the workers of the count and encode passes need (the reader, the vocabulary): set in the
# parent before the pass's processes are forked, so they inherit it rather than receive a copy
# with every chunk.
_WORKER: dict = {}


def _ids(stoi, words, dtype):
    return np.fromiter(map(stoi.get, words, repeat(0)), dtype=dtype, count=len(words))


def _write(name: str, start: int, values: np.ndarray) -> None:
    if values.size == 0:
        return
    out = np.load(os.path.join(_WORKER["out"], name + ".npy"), mmap_mode="r+")
    out[start:start + values.shape[0]] = values
    out.flush()
    del out


def _encode_chunk(job):
    """Pass 3: encode one chunk and write it at its place in the output arrays."""
    w = _WORKER
    reader, dt = w["reader"], w["dtypes"]
    o = reader.o
    _, _, _, _, seq0, tok0, tgt0, expect = job
    state = _new_state()
    words, lens, extras, tgt_words, tgt_lens, numbers = [], [], [], [], [], []
    for number, line in reader.lines(job)[0]:
        parsed = reader.parse(number, line, state)
        if parsed is None:
            continue
        ws, extra = parsed
        numbers.append(number)
        words.extend(ws)
        lens.append(len(ws))
        if o.format == "pairs":
            tgt_words.extend(extra)
            tgt_lens.append(len(extra) + 1)
        elif o.format == "tagged":
            extras.extend(extra)
        else:
            extras.append(extra)
    lens = np.asarray(lens, dtype=np.int64)
    n = lens.size
    eos = w["stoi"][D.EOS]
    ids = _ids(w["stoi"], words, dt["tokens"])
    if o.format == "text":
        # The language-model form of encode_lines: <eos> w1 ... wn <eos>.
        full = lens + 2
        ends = np.cumsum(full)
        tokens = np.full(int(ends[-1]) if n else 0, eos, dtype=dt["tokens"])
        word_pos = np.repeat(ends - full + 1 - np.concatenate([[0], np.cumsum(lens)[:-1]]),
                             lens) + np.arange(lens.sum()) if n else np.zeros(0, np.int64)
        tokens[word_pos] = ids
        lengths = full
    else:
        tokens, lengths = ids, lens
    got = (n, tokens.size, int(np.sum(tgt_lens)))
    if got != expect:
        raise RuntimeError(f"{reader.path!r} changed while it was being prepared (bytes "
                           f"{job[1]}-{job[2]}: {got} sequences/tokens now, {expect} when "
                           "counted); prepare it again once it is no longer written to")
    _write("tokens", tok0, tokens)
    _write("offsets", seq0 + 1, tok0 + np.cumsum(lengths))
    _write("line_numbers", seq0, np.asarray(numbers, dtype=np.int64))
    if o.format == "pairs":
        tgt_lens = np.asarray(tgt_lens, dtype=np.int64)
        tgt = np.full(int(tgt_lens.sum()), w["tgt_stoi"][D.EOS], dtype=dt["tgt_tokens"])
        mask = np.ones(tgt.size, dtype=bool)
        mask[np.cumsum(tgt_lens) - 1] = False
        tgt[mask] = _ids(w["tgt_stoi"], tgt_words, dt["tgt_tokens"])
        _write("tgt_tokens", tgt0, tgt)
        _write("tgt_offsets", seq0 + 1, tgt0 + np.cumsum(tgt_lens))
        _write("lengths", seq0, np.stack([lengths, tgt_lens], axis=1).astype(np.int32))
    else:
        _write("lengths", seq0, lengths.astype(np.int32))
    if o.format == "tagged":
        _write("tags", tok0, _ids(w["classes"], extras, dt["tags"]))
    elif o.label:
        _write("labels", seq0, _ids(w["classes"], extras, np.int32))


# ------------------------------------------------------------------ the driver
def _narrowest(size: int):
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _merge(result, src, tgt, classes, totals, chunks, errors) -> bool:
    """Add one chunk's counts (in file order: the vocabulary's ties go to the token seen
    first); True when the chunk holds a bad line."""
    src.update(result["src"])
    if tgt is not None:
        tgt.update(result["tgt"])
    classes |= result["classes"]
    for key in ("long", "dropped", "truncated", "cut"):
        totals[key] += result[key]
    chunks.append((result["seqs"], result["tokens"], result["tgt_tokens"]))
    if result["error"] is not None:
        errors.append(result["error"])
        return True
    return False


def _source_info(path: str) -> dict:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"text file not found: path={path!r}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"text file path={path!r} is a directory: name a UTF-8 text file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"text file {path!r} is not a regular file ({file_kind(st.st_mode)}); "
                         "it is not read (a FIFO could block, a device never end): name a "
                         "UTF-8 text file")
    return {"path": os.path.abspath(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _reusable(out_dir: str, source: dict, opts: PrepareOptions, overwrite: bool) -> bool:
    """True when ``out_dir`` already holds this source prepared with these options; a
    ``ValueError`` when it holds something else (unless ``overwrite``)."""
    if not os.path.lexists(out_dir):
        return False
    if not os.path.isdir(out_dir) or os.path.islink(out_dir):
        raise ValueError(f"OUT_DIR {out_dir!r} exists and is not a directory; choose another")
    if not os.path.isfile(os.path.join(out_dir, MANIFEST)):
        if os.listdir(out_dir) and not overwrite:
            raise ValueError(f"OUT_DIR {out_dir!r} exists and is not a prepared directory (no "
                             f"{MANIFEST}); choose another, or overwrite=True (--force) to "
                             "replace it")
        return False
    manifest = read_manifest(out_dir)
    old = manifest["source"]
    why = []
    if old["path"] != source["path"]:
        why.append(f"it was prepared from {old['path']!r}, not {source['path']!r}")
    elif (old["bytes"], old["mtime_ns"]) != (source["bytes"], source["mtime_ns"]):
        why.append(f"the source changed since: {old['bytes']} bytes modified at mtime_ns="
                   f"{old['mtime_ns']} then, {source['bytes']} bytes at mtime_ns="
                   f"{source['mtime_ns']} now")
    if manifest["options"] != asdict(opts):
        diff = {k: (manifest["options"].get(k), v) for k, v in asdict(opts).items()
                if manifest["options"].get(k) != v}
        why.append("other options (was, now): " + ", ".join(f"{k}={a!r}->{b!r}" for k, (a, b)
                                                          in diff.items()))
    if not why:
        return True
    if overwrite:
        return False
    raise ValueError(f"OUT_DIR {out_dir!r} holds another preparation: {'; '.join(why)}. "
                     "Prepare again with overwrite=True (bucketrnn-prepare --force) or choose "
                     "another OUT_DIR")


class _Hasher(threading.Thread):
    """SHA-256 of the source, beside the workers (hashlib releases the GIL on large blocks)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.digest, self.error = path, None, None

    def run(self):
        try:
            self.digest = file_sha256(self.path)
        except OSError as e:
            self.error = e


@contextmanager
def _mapped(workers: int, fn, jobs: list, bar, label: str, sizes: list):
    """``fn`` over ``jobs``, results in order, in ``workers`` forked processes (they inherit
    the module state set before, e.g. the vocabulary of the encode pass), with a progress bar
    in megabytes read."""
    pool = None
    if workers > 1 and len(jobs) > 1:
        workers = min(workers, len(jobs))
        pool = multiprocessing.get_context("fork").Pool(workers)

    def ordered():
        # At most two chunks a worker in flight: results a busy parent has not taken yet
        # (a chunk's token counts) never pile up, whatever the number of chunks.
        pending, todo = deque(), iter(jobs)
        for job in islice(todo, 2 * workers):
            pending.append(pool.apply_async(fn, (job,)))
        while pending:
            result = pending.popleft().get()
            for job in islice(todo, 1):
                pending.append(pool.apply_async(fn, (job,)))
            yield result

    def results():
        total = max(1, sum(sizes) >> 20)
        bar.start(label, total)
        done = 0
        for size, result in zip(sizes, ordered() if pool else map(fn, jobs)):
            done += size
            bar.update(min(total, done >> 20))
            yield result
        bar.update(total)

    try:
        yield results()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _create(directory: str, name: str, dtype, shape) -> dict:
    array = np.lib.format.open_memmap(os.path.join(directory, name), mode="w+", dtype=dtype,
                                      shape=shape)
    del array
    return {"dtype": str(np.dtype(dtype)), "shape": list(shape)}


def prepare(path: str, out_dir: str, options: PrepareOptions | None = None, *,
            workers: int | None = None, chunk_bytes: int = CHUNK_BYTES, overwrite: bool = False,
            progress: bool = True, verify: bool = False, **kw) -> PreparedDataset:
    """Prepare the text file ``path`` into the directory ``out_dir``; returns it opened.

    Parameters
    ----------
    path : str
        A UTF-8 file of the format ``options.format`` (as the app reads it: blank lines
        skipped, ``\\n``, ``\\r\\n`` or ``\\r`` line breaks, a leading byte-order mark ignored).
    out_dir : str
        Created (with its parent's permissions); its layout is that of
        :mod:`bucketrnn.data.prepared`. When it already holds ``path`` prepared with the same
        options, and ``path``'s size and modification time are unchanged, it is reused as it
        is (nothing is read).
    options : PrepareOptions, optional
        Or its fields as keywords (``prepare(p, d, tokens="char", min_count=2)``).
    workers : int, optional
        Worker processes (default: the cores this process may use).
    chunk_bytes : int
        Bytes a worker reads at a time (memory is about 15x this per worker).
    overwrite : bool
        Replace an ``out_dir`` holding another preparation (a changed source, other options).
    progress : bool
        A progress bar on stderr.
    verify : bool
        Check the digests of the result when opening it (:class:`PreparedDataset`).

    Raises
    ------
    ValueError
        Everything the in-memory readers refuse (invalid UTF-8 naming the line and byte offset,
        a line longer than ``max_length`` under ``on_overflow="error"``, a bad pair or tagged
        item, no sequence left), with the same messages; ``out_dir`` holding another
        preparation (the source changed: say ``overwrite=True``).
    FileNotFoundError
        No file at ``path``.
    """
    if options is None:
        options = PrepareOptions(**kw)
    elif kw:
        raise TypeError(f"give options or its fields as keywords, not both (got {sorted(kw)})")
    check_int("chunk_bytes", chunk_bytes, low=1)
    workers = check_int("workers", workers, low=1, allow_none=True) or \
        len(os.sched_getaffinity(0))
    source = _source_info(path)
    out_dir = os.path.abspath(out_dir)
    if _reusable(out_dir, source, options, overwrite):
        if progress:
            print(f"bucketrnn-prepare: {out_dir} is up to date with {path}", file=sys.stderr)
        return PreparedDataset(out_dir, verify=verify)
    parent = os.path.dirname(out_dir)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"the parent directory of OUT_DIR {out_dir!r} does not exist")
    tmp = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".tmp-", dir=parent)
    bar = Progress(sys.stderr, enabled=progress, log_seconds=10.0)
    hasher = _Hasher(path)
    hasher.start()
    started = time.perf_counter()
    try:
        bounds = _chunks(path, source["bytes"], chunk_bytes)
        manifest = _prepare(path, tmp, options, bounds, workers, bar)
        hasher.join()
        if hasher.error is not None:
            raise hasher.error
        after = _source_info(path)
        if (after["bytes"], after["mtime_ns"]) != (source["bytes"], source["mtime_ns"]):
            raise RuntimeError(f"{path!r} changed while it was being prepared; prepare it "
                               "again once it is no longer written to")
        manifest["source"] = {**source, "sha256": hasher.digest}
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        # The manifest goes last: a directory without one is never taken for a prepared one.
        atomic_write(os.path.join(tmp, MANIFEST),
                     json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
        _publish(tmp, out_dir)
    except BaseException:
        bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bar.close()
    return PreparedDataset(out_dir, verify=verify)


def _publish(tmp: str, out_dir: str) -> None:
    """Rename the finished ``tmp`` to ``out_dir`` (an old ``out_dir`` is moved away first)."""
    old = None
    if os.path.lexists(out_dir):
        old = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".old-",
                               dir=os.path.dirname(out_dir))
        os.replace(out_dir, os.path.join(old, "d"))
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _prepare(path: str, tmp: str, o: PrepareOptions, bounds: list, workers: int, bar) -> dict:
    sizes = [end - start for start, end in bounds]
    # Pass 1: UTF-8 and line numbers.
    firsts, line, lines_read = [], 1, 0
    with _mapped(workers, _check_chunk, [(path, s, e) for s, e in bounds], bar,
                 "prepare 1/3 check (MB)", sizes) as results:
        for breaks, bad, n_lines in results:
            if bad is not None:
                rel, offset, byte, reason = bad
                raise ValueError(D.utf8_error(path, line + rel, offset, byte, reason))
            firsts.append(line)
            line += breaks
            lines_read += n_lines
    jobs = [(path, s, e, first) for (s, e), first in zip(bounds, firsts)]
    # Pass 2: counts.
    reader = _Reader(path, o)
    _WORKER.clear()
    _WORKER["reader"] = reader  # inherited by the forked workers
    src, tgt, classes = Counter(), None if o.shared_vocab or o.format != "pairs" else Counter(), \
        set()
    chunks, errors, first_long = [], [], None
    totals = Counter()
    with _mapped(workers, _count_chunk, jobs, bar, "prepare 2/3 count (MB)", sizes) as results:
        for result in results:
            if _merge(result, src, tgt, classes, totals, chunks, errors) and \
                    o.format == "pairs":
                break
            if first_long is None and result["first_long"] is not None:
                first_long = result["first_long"]
    if first_long is not None:
        raise ValueError(D.overflow_error(path, first_long[0], first_long[1], o.max_length,
                                          totals["long"]))
    if errors:
        raise ValueError(errors[0])
    counts = np.asarray(chunks, dtype=np.int64).reshape(-1, 3)
    n, n_tok, n_tgt = (int(x) for x in counts.sum(axis=0))
    if n == 0:
        if o.format == "pairs":
            raise ValueError(f"pairs file {path!r} has no pair of at most max_length="
                             f"{o.max_length} tokens a side")
        raise ValueError(D.no_sequences_error(path, o.max_length, lines_read))
    vocab = D.Vocabulary.from_counts(src, o.min_count, o.max_size)
    tgt_vocab = vocab if o.format != "pairs" or tgt is None else \
        D.Vocabulary.from_counts(tgt, o.min_count, o.max_size)
    class_map = ["0", "1"] if o.label and D.label_kind(o.label) == "contains" \
        else sorted(classes)
    files = {}
    dtypes = {"tokens": _narrowest(len(vocab)), "tgt_tokens": _narrowest(len(tgt_vocab)),
              "tags": _narrowest(max(len(class_map), 1))}
    files["tokens.npy"] = _create(tmp, "tokens.npy", dtypes["tokens"], (n_tok,))
    files["offsets.npy"] = _create(tmp, "offsets.npy", np.int64, (n + 1,))
    files["line_numbers.npy"] = _create(tmp, "line_numbers.npy", np.int64, (n,))
    files["lengths.npy"] = _create(tmp, "lengths.npy", np.int32,
                                   (n, 2) if o.format == "pairs" else (n,))
    if o.format == "pairs":
        files["tgt_tokens.npy"] = _create(tmp, "tgt_tokens.npy", dtypes["tgt_tokens"], (n_tgt,))
        files["tgt_offsets.npy"] = _create(tmp, "tgt_offsets.npy", np.int64, (n + 1,))
    elif o.format == "tagged":
        files["tags.npy"] = _create(tmp, "tags.npy", dtypes["tags"], (n_tok,))
    elif o.label:
        files["labels.npy"] = _create(tmp, "labels.npy", np.int32, (n,))
    # Pass 3: encode, each chunk at its place.
    starts = np.zeros((len(chunks) + 1, 3), dtype=np.int64)
    starts[1:] = np.cumsum(counts, axis=0)
    enc_jobs = [(*job, *(int(x) for x in starts[i]), tuple(int(x) for x in counts[i]))
                for i, job in enumerate(jobs)]
    # The workers of this pass are forked after this: they inherit the vocabulary.
    _WORKER.update(out=tmp, stoi=vocab.stoi, tgt_stoi=tgt_vocab.stoi,
                   classes={c: i for i, c in enumerate(class_map)}, dtypes=dtypes)
    with _mapped(workers, _encode_chunk, enc_jobs, bar, "prepare 3/3 encode (MB)",
                 sizes) as results:
        for _ in results:
            pass
    vocab.save(os.path.join(tmp, "vocab.json"))
    if o.format == "pairs" and not o.shared_vocab:
        tgt_vocab.save(os.path.join(tmp, "tgt_vocab.json"))
    if class_map and (o.label or o.format == "tagged"):
        atomic_write(os.path.join(tmp, "classes.json"), json.dumps(class_map).encode("utf-8"))
    names = sorted(os.listdir(tmp))
    paths = [os.path.join(tmp, f) for f in names]
    with _mapped(workers, file_sha256, paths, bar, "prepare digests (MB)",
                 [os.path.getsize(p) for p in paths]) as results:
        digests = list(results)
    _WORKER.clear()
    out = {}
    for name, digest in zip(names, digests):
        out[name] = {**files.get(name, {}), "bytes": os.path.getsize(os.path.join(tmp, name)),
                     "sha256": digest}
    overflow = D.OverflowCounts(totals["dropped"], totals["truncated"], totals["cut"])
    return {"kind": KIND, "format_version": FORMAT_VERSION, "format": o.format,
            "options": asdict(o), "files": out,
            "counts": {"sequences": n, "tokens": n_tok, "tgt_tokens": n_tgt,
                       "lines_read": lines_read, "vocab_size": len(vocab),
                       "tgt_vocab_size": len(tgt_vocab) if o.format == "pairs" else None,
                       "num_classes": len(class_map) if (o.label or o.format == "tagged")
                       else None, "overflow": overflow.to_dict(), "chunks": len(bounds)}}
