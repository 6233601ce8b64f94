"""Commands on a trained run: ``bucketrnn evaluate | generate | predict | translate RUN_DIR ...``.

``bucketrnn`` (and ``python -m bucketrnn``) hands its arguments here when the first one names
a command (:data:`COMMANDS`); anything else goes to the Hydra app as before. Each command loads
the run with :func:`~bucketrnn.app.trained.load_run` (only what the run directory holds) and
finds the work for the run's task in :mod:`bucketrnn.app.tasks`::

    bucketrnn evaluate RUN_DIR [valid|test|FILE] [--json] [--max-line-steps N]
    bucketrnn generate RUN_DIR --prompt "the company" [--max-tokens 30 --temperature 0.8
                                                      --top-k 10 --seed 0]
    bucketrnn predict RUN_DIR FILE [--max-line-steps N]  # classifiers: a class per line;
                                              # taggers: token/TAG per token; input order
    bucketrnn translate RUN_DIR FILE [--beam N --max-length M]   # sequence-pair runs

``evaluate`` of a sequence-pair run (a split, or a ``source<TAB>target`` FILE) gives the loss,
perplexity, and the greedy exact match and corpus BLEU on sacrebleu's 0-100 scale.

Every command takes ``--ctx cpu|gpu:N`` and ``--checkpoint PATH``. Results go to stdout,
notes (unknown words, lines cut by ``max_length``) to stderr; bad input exits with status 2
and one line ``error: ...`` naming the argument or file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["COMMANDS", "figures_text", "main"]

COMMANDS = ("evaluate", "generate", "predict", "translate")


def _at_least_one(option: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < 1:
            raise argparse.ArgumentTypeError(f"{option} must be an integer >= 1, got {text!r}")
        return value
    return parse


def figures_text(figures: dict) -> str:
    """``name value, ...`` of a split's figures, each named by what it is: BLEU is labelled
    with its scale (sacrebleu's 0-100); counts and timings are left out."""
    shown = []
    for k, v in figures.items():
        if k in ("seconds", "examples", "overflow", "pairs"):
            continue
        if k == "bleu":
            shown.append(f"BLEU {v:.2f} (0-100)")
        else:
            shown.append(f"{k.replace('_', ' ')} {v:.4g}")
    return ", ".join(shown)


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="bucketrnn", description="Use a trained run.")
    sub = top.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("run_dir", metavar="RUN_DIR", help="a run directory the app wrote")
    common.add_argument("--ctx", default="cpu", help="cpu (default), gpu or gpu:N")
    common.add_argument("--checkpoint", default="latest",
                        help="a checkpoint of this run (default: RUN_DIR/checkpoint.npz)")
    ev = sub.add_parser("evaluate", parents=[common], help="loss and the task's metrics")
    ev.add_argument("data", nargs="?", default="valid", metavar="valid|test|FILE",
                    help="the run's held-out split, or a file in its data format "
                         "(default: valid; ./valid for a file named so)")
    ev.add_argument("--json", action="store_true", help="print the figures as JSON")
    _max_line_steps(ev)
    gen = sub.add_parser("generate", parents=[common], help="sample from a language model")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-tokens", type=int, default=50)
    gen.add_argument("--temperature", type=float, default=1.0, help="0: greedy")
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--seed", type=int, default=None)
    for name, what in (("predict", "one prediction per input line"),
                       ("translate", "one output sequence per input line")):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("file", metavar="FILE")
        if name == "predict":
            _max_line_steps(p)
        if name == "translate":
            p.add_argument("--beam", type=_at_least_one("--beam"), default=1, metavar="N",
                           help="beam search keeping N hypotheses (default 1: greedy)")
            p.add_argument("--max-length", type=_at_least_one("--max-length"), default=None,
                           metavar="M", help="at most M target tokens a line, <eos> included "
                           "(default: 2 x the line's own source length + 10)")
    return top


def _max_line_steps(parser) -> None:
    from bucketrnn.app.trained import MAX_LINE_STEPS

    parser.add_argument("--max-line-steps", type=_at_least_one("--max-line-steps"),
                        default=MAX_LINE_STEPS, metavar="N",
                        help=f"refuse a line of FILE longer than N steps (default "
                             f"{MAX_LINE_STEPS:,}) before running anything")


def _evaluate(run, args, out) -> None:
    result = run.evaluate(args.data)
    if args.json:
        out.write(json.dumps(result, sort_keys=True) + "\n")
        return
    figures = figures_text(result)
    noun = "pairs" if "bleu" in result else "sequences"
    out.write(f"{args.data}: {figures} ({result['examples']} {noun}, "
              f"{result['seconds']:.2f} s)\n")
    overflow = result.get("overflow")
    if overflow and (overflow["lines_dropped"] or overflow["lines_truncated"]):
        sys.stderr.write(f"note: max_length={run.config.dataset.max_length}: "
                         f"{overflow['lines_dropped']} line(s) dropped, "
                         f"{overflow['lines_truncated']} truncated\n")


def _generate(run, args, out) -> None:
    # Here, not at the head: `bucketrnn <command> --help` answers without loading the library.
    from bucketrnn.validation import quote_tokens

    wrote = []

    def write(piece):  # each token as it comes: a long or endless sample shows its progress
        wrote.append(True)
        out.write(piece)
        out.flush()

    try:
        result = run.generate(args.prompt, max_tokens=args.max_tokens,
                              temperature=args.temperature, top_k=args.top_k, seed=args.seed,
                              on_text=write)
    finally:
        if wrote:  # also when interrupted: the text so far is kept, its line ended
            out.write("\n")
    if result["unknown"]:
        sys.stderr.write(f"note: not in the run's vocabulary, read as <unk>: "
                         f"{quote_tokens(result['unknown'], 10)}\n")


def _lines(run, args, out, action) -> None:
    from bucketrnn.app.tasks import handler

    options = {"beam": args.beam, "max_length": args.max_length} if action == "translate" \
        else {}
    predictions = handler(action, run.task, action, run.run_dir)(run, args.file, **options)
    for note in predictions.notes:
        sys.stderr.write(f"note: {note}\n")
    line = 1
    for number, text in zip(predictions.line_numbers.tolist(), predictions.outputs):
        # Blank input lines get blank output lines: output line N answers input line N.
        out.write("\n" * (number - line) + text + "\n")
        line = number + 1


def _silence_stdout(out) -> None:
    if out is sys.stdout:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv=None, out=None) -> int:
    """Run one command; returns the exit status (0, or 2 after ``error: ...`` on stderr)."""
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    from bucketrnn.app.trained import load_run
    from bucketrnn.training.rundir import RunLockedError

    try:
        run = load_run(args.run_dir, ctx=args.ctx, checkpoint=args.checkpoint)
        if run.meta.get("run_files") is None:
            sys.stderr.write("note: the checkpoint records no digests of its run files (a "
                             "bucketrnn before them wrote it): that the vocabulary and class "
                             "map are the ones it was trained with is not checked\n")
        if getattr(args, "max_line_steps", None) is not None:
            run.max_line_steps = args.max_line_steps
        if args.command == "evaluate":
            _evaluate(run, args, out)
        elif args.command == "generate":
            from bucketrnn.app.tasks import handler

            handler("generate", run.task, "generate", run.run_dir)  # the task check first
            _generate(run, args, out)
        else:
            _lines(run, args, out, args.command)
        out.flush()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (``... | head -1``): stop quietly, as command-line tools do, and
        # keep Python from failing again when it flushes stdout at exit.
        _silence_stdout(out)
        return 0
    except (ValueError, TypeError, OSError, RunLockedError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0
