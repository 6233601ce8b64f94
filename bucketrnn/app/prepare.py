"""``bucketrnn-prepare INPUT OUT_DIR``: prepare a text corpus once, then train on it memory-mapped.

With no options it prepares a whitespace-token text file, one sequence a line (``dataset=text``)::

    bucketrnn-prepare corpus.txt corpus.prepared
    bucketrnn dataset=prepared dataset.path=corpus.prepared
    bucketrnn-plan dataset=prepared dataset.path=corpus.prepared

Other formats, as the app reads them: ``--tokens char``; ``--label first_token`` or
``--label contains:<token>`` (a classifier's labels); ``--format tagged`` (``token/TAG`` items);
``--format pairs`` (``source<TAB>target``, ``--shared-vocab``). The vocabulary: ``--min-count``,
``--max-size``. Long lines: ``--max-length`` with ``--on-overflow error|truncate|drop``.

The file is read in two streaming passes by worker processes (``--workers``, default every
core), in bounded memory; ``OUT_DIR`` appears only when it is complete. Run again with the same
input and options, it is reused (nothing read); a changed input or other options are refused
unless ``--force``. ``--verify`` checks every file of ``OUT_DIR`` against its manifest's digests.
The exit status is 2 for bad input, with the same message as the app.
"""

from __future__ import annotations

import argparse
import sys

from bucketrnn.data.prepare import PrepareOptions, prepare

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bucketrnn-prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a UTF-8 text file")
    p.add_argument("out_dir", help="the prepared directory to write (or reuse)")
    p.add_argument("--format", default="text", choices=("text", "tagged", "pairs"))
    p.add_argument("--tokens", default="whitespace", choices=("whitespace", "char"))
    p.add_argument("--label", default=None,
                   help="text only: first_token or contains:<token> (a classifier's labels)")
    p.add_argument("--min-count", type=int, default=1,
                   help="tokens seen fewer times become <unk> (default 1)")
    p.add_argument("--max-size", type=int, default=None,
                   help="largest vocabulary, specials included (default: no limit)")
    p.add_argument("--max-length", type=int, default=None, help="longest line, in tokens")
    p.add_argument("--on-overflow", default="error", choices=("error", "truncate", "drop"),
                   help="what a line longer than --max-length gets (default error)")
    p.add_argument("--shared-vocab", action="store_true",
                   help="pairs: one vocabulary for both sides")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the cores this process may use)")
    p.add_argument("--chunk-mb", type=float, default=4.0,
                   help="megabytes a worker reads at a time (default 4)")
    p.add_argument("--force", action="store_true",
                   help="replace OUT_DIR when it holds another preparation")
    p.add_argument("--verify", action="store_true",
                   help="check every file's SHA-256 digest against the manifest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    """Entry point of ``bucketrnn-prepare`` / ``python -m bucketrnn.app.prepare``."""
    args = _parser().parse_args(argv)
    # Imported here: argparse answers --help without loading numpy and MXNet.
    try:
        options = PrepareOptions(format=args.format, tokens=args.tokens, label=args.label,
                                 min_count=args.min_count, max_size=args.max_size,
                                 max_length=args.max_length, on_overflow=args.on_overflow,
                                 shared_vocab=args.shared_vocab)
        if args.chunk_mb <= 0:
            raise ValueError(f"--chunk-mb must be > 0, got {args.chunk_mb}")
        ds = prepare(args.input, args.out_dir, options, workers=args.workers,
                     chunk_bytes=max(1, int(args.chunk_mb * 2**20)), overwrite=args.force,
                     progress=not args.quiet, verify=args.verify)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = ds.manifest["counts"]
    line = (f"{ds.path}: {c['sequences']} sequences, {c['tokens']} tokens, vocabulary "
            f"{c['vocab_size']}")
    if c.get("tgt_vocab_size"):
        line += f" (target {c['tgt_vocab_size']})"
    if c.get("num_classes"):
        line += f", {c['num_classes']} classes"
    over = c["overflow"]
    if any(over.values()):
        line += (f"; max_length: {over['lines_dropped']} line(s) dropped, "
                 f"{over['lines_truncated']} truncated ({over['tokens_cut']} tokens cut)")
    print(line)
    print(f"train on it: bucketrnn dataset=prepared dataset.path={ds.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
