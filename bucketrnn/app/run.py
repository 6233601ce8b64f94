"""``python -m bucketrnn``: the experiment app (Hydra).

The default trains a 2-layer unrolled LSTM language model on Penn Treebank with 8 length buckets
on the CPU, then reports validation and test perplexity::

    python -m bucketrnn                                   # the default (make run)
    python -m bucketrnn model=gru_lm trainer.epochs=3     # any config group / key
    python -m bucketrnn -m bucketing.num_buckets=1,8,32   # a sweep, one run directory each
    python -m bucketrnn.app.compare multirun/<date_time>      # compare the sweep's summary.json
    python -m bucketrnn resume=true                       # continue the latest interrupted run

Everything a run produces goes to its run directory (Hydra's ``outputs/<date_time>``):
``metrics.jsonl``, ``checkpoint.npz``, ``vocab.json``, ``summary.json``, ``buckets.png`` and
``curves.png``. :func:`run` does the work from a composed config, without Hydra's runtime, so
tests and notebooks can call it.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import sys
import time

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from bucketrnn import cores
from bucketrnn.app import auto
from bucketrnn.app.commands import figures_text
from bucketrnn.app.config import (
    CONF_DIR,
    check_vocab_size,
    fingerprint,
    parse_context,
    restore,
    to_dict,
    validate,
)
from bucketrnn.app.experiment import load_data, make_loaders
from bucketrnn.data.plan import longest_key, pad_to_max_waste
from bucketrnn.errors import DivergedError
from bucketrnn.files import open_regular
from bucketrnn.models.build import build_model
from bucketrnn.training.metrics import diverged
from bucketrnn.training.rundir import (
    CLASSES,
    CONFIG,
    LOG,
    SUMMARY,
    TAGS,
    TGT_VOCAB,
    VOCAB,
    RunLock,
    RunLockedError,
)
from bucketrnn.training.runfiles import (
    check_saved_vocab,
    file_digests,
    load_tags,
    read_config,
    read_run_file,
    save_tags,
    write_json,
)

__all__ = ["find_resume_dir", "main", "run"]

log = logging.getLogger("bucketrnn.app")


def find_resume_dir(resume: str, run_dir: str) -> str | None:
    """The run directory to continue: None for ``resume=""``/``false``; for ``true``
    ``run_dir`` itself if it holds a checkpoint, else the sibling run with the newest one;
    otherwise the given directory."""
    from bucketrnn.training.checkpoint import FILENAME

    value = str(resume).strip()
    if value.lower() in ("", "false", "no", "0", "none"):
        return None
    if value.lower() in ("true", "yes", "1", "latest"):
        if os.path.isfile(os.path.join(run_dir, FILENAME)):
            # The run's own directory first: a re-launched sweep job finds its own checkpoint.
            return os.path.abspath(run_dir)
        if os.path.isfile(os.path.join(run_dir, CONFIG)):
            # A run lives here but has no checkpoint yet: continuing a sibling run instead
            # would train the wrong run.
            raise FileNotFoundError(
                f"resume={resume!r}: the run in {os.path.abspath(run_dir)!r} has no "
                f"{FILENAME} yet (it is still starting, or stopped before its first "
                "checkpoint); wait for it, or start it afresh without resume")
        parent = os.path.dirname(os.path.abspath(run_dir))
        found = glob.glob(os.path.join(parent, "*", FILENAME))
        found += glob.glob(os.path.join(parent, "*", "*", FILENAME))
        if not found:
            raise FileNotFoundError(f"resume={resume!r}: no {FILENAME} in any run under "
                                    f"{parent!r}; pass resume=<run directory>")
        return os.path.dirname(max(found, key=os.path.getmtime))
    path = os.path.abspath(value)
    if not os.path.isfile(os.path.join(path, FILENAME)):
        raise FileNotFoundError(f"resume={resume!r}: no {FILENAME} in {path!r}")
    return path


def _previous_wall_seconds(path: str) -> float:
    """``wall_seconds`` of the resumed run's earlier ``summary.json``; 0 with a warning when it
    is damaged (read after training: a bad summary must not lose a finished training)."""
    try:
        previous = read_run_file(path, "summary")
    except (OSError, ValueError) as e:
        log.warning("warning: ignoring the earlier %s (%s); wall_seconds counts this session "
                    "only", path, e)
        return 0.0
    if previous is None:
        return 0.0
    value = previous.get("wall_seconds", 0.0) if isinstance(previous, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        log.warning("warning: ignoring the earlier %s (%s): wall_seconds counts this session "
                    "only", path, "not a JSON object" if not isinstance(previous, dict) else
                    f"wall_seconds={value!r} is not a number of seconds")
        return 0.0
    return float(value)


def run(cfg, run_dir: str, stream=None, overrides=None) -> dict:
    """Train and evaluate the experiment ``cfg`` (a composed config) in ``run_dir``.

    ``overrides`` are the command line's ``key=value`` strings. Resuming with them restores the
    run's own config (``config.json`` in its directory) and applies only those overrides,
    which may change nothing but :data:`~bucketrnn.app.config.RESUMABLE` keys; without them
    (``None``), ``cfg`` itself must match the run's.

    Returns the summary (also written to ``summary.json``). Raises ``ValueError`` /
    ``FileNotFoundError`` / ``StateMismatchError`` for bad input before writing anything, and
    :class:`~bucketrnn.training.rundir.RunLockedError` when another process is writing the run
    directory (the lock is held from before the first write until the summary is written).
    """
    locks, handlers, owned = [], [], set()
    logger = logging.getLogger("bucketrnn")
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if stream is not None:
        handlers.append(_attach(logger, logging.StreamHandler(stream), CONSOLE_FORMAT))
    try:
        return _run(cfg, run_dir, locks, overrides, handlers, owned)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
            if handler in owned:
                handler.stream.close()  # the log file _log_file opened
        logger.setLevel(level)
        for lock in locks:
            lock.release()


CONSOLE_FORMAT = "%(message)s"
FILE_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _attach(logger, handler, fmt):
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)
    return handler


def _log_file(work: str, handlers: list, owned: set) -> None:
    """Log the run into ``<work>/bucketrnn.log``: opened only once the run holds the directory's
    lock (so a refused command never writes into a live run's log), appended to, and never
    through a planted link (``open_regular``)."""
    stream = open_regular(os.path.join(work, LOG), "a", encoding="utf-8")
    handler = _attach(logging.getLogger("bucketrnn"), logging.StreamHandler(stream), FILE_FORMAT)
    handlers.append(handler)
    owned.add(handler)


def _run(cfg, run_dir: str, locks: list, overrides, handlers: list, owned: set) -> dict:
    from bucketrnn import distributed
    from bucketrnn.graphs.shared import available_memory
    from bucketrnn.training import checkpoint as ckpt
    from bucketrnn.training.loop import TrainLoop

    started = time.time()
    resume_dir = find_resume_dir(cfg.resume, run_dir)
    work = resume_dir or os.path.abspath(run_dir)
    saved_config = os.path.join(work, CONFIG)
    if resume_dir and overrides is not None and os.path.lexists(saved_config):
        # Validated once restored: the command line alone is not the run's config (an older
        # run's own trainer.lr_decay=0.5, typed again, needs its saved lr_schedule=epoch).
        cfg = restore(cfg, read_config(saved_config), overrides, source=saved_config)
    validate(cfg)
    if resume_dir and auto.pending(cfg.bucketing) and os.path.lexists(saved_config):
        # num_buckets=auto was planned by the run's first session: reuse, never re-probe.
        cfg = auto.reuse_saved_plan(cfg, read_config(saved_config))
    fp = fingerprint(cfg)
    ckpt_path = os.path.join(work, ckpt.FILENAME)
    if resume_dir:
        ckpt.load(ckpt_path, fingerprint=fp)  # refuse another config before touching anything
    elif os.path.isfile(ckpt_path):
        raise FileExistsError(f"{work!r} already holds a run with a checkpoint; pass resume=true "
                              "to continue it or choose another hydra.run.dir")
    ctx = parse_context(cfg.trainer.context)
    t = to_dict(cfg.trainer)
    # Every worker of a dist_* job runs this with the same run directory; rank 0 writes.
    kv = distributed.kvstore_for_training(t["kvstore"])
    shard = distributed.shard_of(kv)
    writer = distributed.is_checkpoint_writer(kv)
    data = load_data(cfg.dataset, seed=cfg.seed)
    check_vocab_size(cfg.model, len(data.vocab), data.num_classes)
    tagger = to_dict(cfg.model)["name"] == "tagger"
    if resume_dir:
        check_saved_vocab(os.path.join(work, VOCAB), data.vocab)
        if tagger and os.path.lexists(os.path.join(work, TAGS)) \
                and load_tags(os.path.join(work, TAGS)) != list(data.classes):
            raise ValueError(f"{os.path.join(work, TAGS)!r} does not match the tags of the data "
                             "now: the data changed since the run started, so the checkpoint's "
                             "tag ids would mean other tags; restore the data or start a new run")
        if data.tgt_vocab is not None:
            check_saved_vocab(os.path.join(work, TGT_VOCAB), data.tgt_vocab)
    cost, bucketing, planning = None, cfg.bucketing, auto.pending(cfg.bucketing)
    if planning:
        cost = auto.probe_run(cfg, data, ctx, num_shards=shard.num_shards)
        if cost is None:
            bucketing = auto.fallback(cfg.bucketing, data)
    train_loader, valid_loader, test_loader = make_loaders(
        data, bucketing, seed=cfg.seed, num_shards=shard.num_shards,
        shard_index=shard.shard_index, ctx=ctx, cost=cost,
        epochs=auto.planned_epochs(cfg.trainer, to_dict(cfg.bucketing), len(data.train),
                                   shard.num_shards),
        memory_limit=available_memory(ctx))
    if planning:
        # The plan is fixed from here on: config.json and the fingerprint hold it.
        cfg.bucketing.auto_boundaries = list(train_loader.plan.boundaries)
        fp = fingerprint(cfg)
    if writer:
        # Bad input is refused above, before the directory is made; from here on it is written,
        # by one process at a time.
        locks.append(RunLock(work).acquire())
        if not resume_dir:
            write_json(saved_config, to_dict(cfg))
        _log_file(work, handlers, owned)
        if not resume_dir:
            # A resumed run keeps the vocabulary its checkpoint's ids refer to (checked above).
            data.vocab.save(os.path.join(work, VOCAB))
            if data.classes is not None and not tagger:
                # The class map: what load_run / bucketrnn predict name the classes by.
                write_json(os.path.join(work, CLASSES),
                            {"label": cfg.dataset.label, "classes": data.classes})
            if data.tgt_vocab is not None:  # pairs: vocab.json is the source vocabulary
                data.tgt_vocab.save(os.path.join(work, TGT_VOCAB))
        else:
            # A resumed run trains on the data's vocabularies (checked above when saved): one
            # that is missing is written again, or the run could never be loaded (load_run).
            for name, vocab in ((VOCAB, data.vocab), (TGT_VOCAB, data.tgt_vocab)):
                if vocab is not None and not os.path.lexists(os.path.join(work, name)):
                    log.warning("%s was missing: written again from the data", name)
                    vocab.save(os.path.join(work, name))
        if tagger and (not resume_dir or not os.path.lexists(os.path.join(work, TAGS))):
            # The tagger's class map (tag id -> name), to use the trained model later (written
            # again when a resumed run lost it: it is the data's, as the vocabulary is).
            save_tags(os.path.join(work, TAGS), data.classes)
    # Every checkpoint records these files' digests: load_run and a resume refuse others.
    run_files = file_digests(work) if writer else None
    params = {"learning_rate": t["lr"], "wd": t["weight_decay"], **t["optimizer_params"]}
    log.info("run directory: %s%s", work, " (resumed)" if resume_dir else "")
    log.info("dataset: %s; %d training sequences", data.description, len(data.train))
    log.info("%r", train_loader.plan)
    if planning:
        log.info("%s", auto.plan_note(cost, train_loader.plan))
    elif auto.is_auto(cfg.bucketing):
        log.info("auto plan: the boundaries chosen at the run's first session, %s",
                 list(train_loader.plan.boundaries))
    memory = to_dict(cfg.memory)["policy"]
    if cfg.model.get("cell") == "fused" and memory == "shared" and ctx.device_type == "cpu":
        # oneDNN's RNN operator allocates its workspace itself (docs/configuration.md has the
        # measured figures).
        log.warning("note: model.cell=fused with memory.policy=shared: on CPU each bucket's "
                    "fused RNN operator keeps memory of its own outside the shared pool; with "
                    "many buckets memory.policy=dynamic uses much less (docs/configuration.md)")
    build = build_model(to_dict(cfg.model), data.vocab_size, data.num_classes)
    loop = TrainLoop(build, train_loader,
                     ctx=ctx, optimizer=t["optimizer"], optimizer_params=params,
                     clip_norm=t["clip_norm"], lr_schedule=t["lr_schedule"],
                     warmdown=t["lr_warmdown"], lr_decay=t["lr_decay"], epochs=t["epochs"],
                     max_steps=t["max_steps"],
                     memory=memory, kvstore=kv, seed=cfg.seed,
                     run_dir=work, checkpoint_every=t["checkpoint_every"],
                     log_every=t["log_every"], progress=t["progress"], fingerprint=fp,
                     on_nonfinite=t["on_nonfinite"], precision=t["precision"],
                     run_files=run_files, accumulate=t["accumulate"])
    history = loop.fit(valid_loader, resume=bool(resume_dir))
    results = {}
    last = history["epochs"][-1] if history["epochs"] else {}
    if valid_loader is not None and last.get("global_step") == loop.global_step \
            and "valid_loss" in last:
        # The last epoch ended on the final parameters and was evaluated then: not again.
        results["valid"] = {k[len("valid_"):]: v for k, v in last.items()
                            if k.startswith("valid_")}
    for name, loader in (("valid", valid_loader), ("test", test_loader)):
        if loader is not None and name not in results:
            results[name] = loop.evaluate(loader)
    if data.tgt_vocab is not None:
        with _report("exact match and BLEU not measured"):
            _score_translations(loop, data, results, to_dict(cfg.bucketing))
    plan = train_loader.plan
    seconds = history["train_seconds"]
    summary = {
        "run_dir": work, "config": to_dict(cfg), "fingerprint": fp,
        "dataset": data.description, "train_sequences": len(data.train),
        "dataset_overflow": data.overflow,
        "plan": plan.to_dict(), "pad_to_max_waste": pad_to_max_waste(train_loader.lengths),
        "longest_key": longest_key(train_loader.lengths),
        "steps": loop.global_step, "updates": history.get("updates", loop.global_step),
        "epochs_done": len(history["epochs"]),
        "train_seconds": seconds, "wall_seconds": time.time() - started,
        "tokens_per_s": history["real_tokens"] / max(seconds, 1e-9),
        "padded_fraction": 1.0 - history["real_tokens"] / max(history["slots"], 1),
        "graphs_compiled": loop.graphs.compiled, "epochs": history["epochs"],
        "threads": cores.threads_note(),
        "precision": t["precision"],
        **results, "resumed": bool(resume_dir),
    }
    if auto.is_auto(cfg.bucketing):
        summary["auto_plan"] = auto.summary_entry(cost, plan, bool(resume_dir))
    with _report("utilisation not measured"):
        summary["utilisation"] = utilisation(cfg.model, len(data.vocab),
                                             summary["tokens_per_s"], ctx)
    if resume_dir:
        # Time spent before the interruption counts towards the run.
        summary["wall_seconds"] += _previous_wall_seconds(os.path.join(work, SUMMARY))
    if cfg.plots and writer:
        from bucketrnn.app import plots

        with _report("plots not drawn"):
            summary["plots"] = plots.save_all(work, train_loader.lengths, plan)
    blown = _divergence(results, history, data)
    if blown:
        summary["diverged"] = blown
    if writer:
        write_json(os.path.join(work, SUMMARY), summary)
    log.info("%s", format_summary(summary))
    if blown:
        # The run is kept (summary, checkpoint) for inspection, but it is no trained model.
        raise DivergedError(f"the run diverged: {blown}; its parameters are no model. Lower "
                            f"trainer.lr (it was {t['lr']}) and start a new run")
    return summary


def _divergence(results: dict, history: dict, data) -> str | None:
    """Why the run's final figures say it diverged (:func:`~bucketrnn.training.metrics.
    diverged`), or None: the validation and test losses measured at the end, else the last
    epoch's training loss; a run stopped before any of them is not judged."""
    losses = {name: results[name]["loss"] for name in ("valid", "test") if name in results}
    if not losses and history["epochs"]:
        losses = {"train": history["epochs"][-1]["train_loss"]}
    # What the model predicts among: the (target) tokens, or the classes (tags).
    outcomes = len(data.tgt_vocab) if data.tgt_vocab is not None else \
        data.num_classes if data.num_classes is not None else len(data.vocab)
    for name, loss in losses.items():
        # A history restored from a checkpoint holds a non-finite figure as None.
        why = diverged(math.nan if loss is None else loss, outcomes)
        if why is not None:
            return f"{name} {why}"
    return None


def _score_translations(loop, data, results: dict, b: dict) -> None:
    """Pairs: greedy-decode the held-out sources with the trained graphs' parameters and add
    exact match and corpus BLEU-4 to their figures
    (:func:`bucketrnn.inference.translate.score_pairs`)."""
    from bucketrnn.data.datasets import EOS
    from bucketrnn.inference.translate import score_pairs
    from bucketrnn.models.decode import Seq2SeqDecoder

    decoder = Seq2SeqDecoder(loop.graphs.block(loop.loader.plan.keys[0]),
                             eos_id=data.tgt_vocab[EOS])
    for name, part in (("valid", data.valid), ("test", data.test)):
        if part and name in results:
            results[name].update(score_pairs(decoder, part, batch_size=b["batch_size"] or 32,
                                             num_buckets=b["num_buckets"],
                                             unk_id=data.tgt_vocab.unk_id))


def utilisation(model, vocab_size: int, tokens_per_s: float, ctx) -> dict:
    """Model FLOP/s of the run and their share of the fp32 GEMM peak measured now, on ``ctx``
    with the run's threads (:mod:`bucketrnn.training.flops`)."""
    from bucketrnn.training import flops
    m = to_dict(model)
    if m["name"] == "seq2seq":
        return {}  # no FLOP count for the encoder-decoder (source and target tokens differ)
    if m["name"] in ("classifier", "tagger"):
        # The recurrent layers (a tagger's per-token output product, hidden x tags, is left
        # out: small against them for a tag set of tens).
        per_token = flops.classifier_flops_per_token(
            m["embed_size"] or m["hidden_size"], m["hidden_size"], m["num_layers"], m["mode"],
            m["bidirectional"])
    else:
        per_token = flops.lm_flops_per_token(vocab_size, m["embed_size"], m["hidden_size"],
                                             m["num_layers"], m["mode"])
    peak = flops.gemm_peak(ctx)
    achieved = per_token * tokens_per_s
    return {"flops_per_token": per_token, "model_gflops": achieved / 1e9,
            "gemm_peak_gflops": peak / 1e9, "fraction_of_peak": achieved / peak}


@contextlib.contextmanager
def _report(what: str):
    """Reports made after training (utilisation, plots) never cost the run its summary: a
    failure (a damaged metrics.jsonl, a device error) is logged as a warning instead."""
    try:
        yield
    except Exception as e:
        log.warning("warning: %s: %s: %s", what, type(e).__name__, e)


def _sides(s: dict) -> str:
    keys = s["plan"]["keys"]
    return " (source + target)" if keys and isinstance(keys[0], (list, tuple)) else ""


def waste_text(s: dict) -> str:
    """The waste figures of a summary: the plan's (:attr:`bucketrnn.data.plan.BucketPlan.waste`,
    which summary.json's ``padded_fraction`` measures over the steps run) against padding every
    example to the longest (:func:`bucketrnn.data.plan.pad_to_max_waste`); for pairs each
    named as counting both sides, with the longest key."""
    if not _sides(s):
        return (f"waste {100 * s['plan']['waste']:.1f}% vs {100 * s['pad_to_max_waste']:.1f}% "
                "padding to the longest")
    longest = tuple(s.get("longest_key") or ())
    return (f"waste {100 * s['plan']['waste']:.1f}% of computed slots, source + target steps, "
            f"vs {100 * s['pad_to_max_waste']:.1f}% padding to the longest key {longest}")


def format_summary(s: dict) -> str:
    """The human-readable end-of-run report."""
    lines = ["", "== summary ==", f"dataset        {s['dataset']}",
             f"model          {s['config']['model']['name']} ({s['config']['model']['cell']}), "
             f"{s['steps']} steps, {s['epochs_done']} epoch(s)",
             f"buckets        {len(s['plan']['keys'])} ({waste_text(s)}), "
             f"{s['graphs_compiled']} graphs compiled",
             f"speed          {s['tokens_per_s']:,.0f} real tokens/s{_sides(s)} over "
             f"{s['train_seconds']:.0f} s of training; wall {s['wall_seconds']:.0f} s",
             f"threads        {s.get('threads', 'unknown')}"]
    lines.append(f"precision      {s.get('precision', 'fp32')}")
    a = s.get("auto_plan")
    if a and a.get("chosen"):
        lines.insert(4, f"auto plan      K={a['num_buckets']} predicted "
                        f"{a['predicted_tokens_per_s']:,.0f} real tokens/s (compile "
                        f"{100 * a['compile_share']:.1f}%, probe {100 * a['probe_share']:.1f}% "
                        f"of the run), runner-up K={a['runner_up']}")
    u = s.get("utilisation")
    if u:
        lines.append(f"utilisation    {u['model_gflops']:.1f} GFLOP/s of model work "
                     f"({u['flops_per_token'] / 1e6:.2f} MFLOP per trained token), "
                     f"{100 * u['fraction_of_peak']:.0f}% of this run's fp32 GEMM peak "
                     f"({u['gemm_peak_gflops']:.0f} GFLOP/s)")
    for name in ("valid", "test"):
        if name in s:
            figs = figures_text(s[name])
            lines.append(f"{name:<14} {figs}")
    lines.append(f"run directory  {s['run_dir']}")
    return "\n".join(lines)


def _hydra_app(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    from bucketrnn import distributed

    # A dist worker must not wait at exit for the others (they would wait for it).
    with distributed.exit_on_error():
        hydra_cfg = HydraConfig.get()
        output_dir = hydra_cfg.runtime.output_dir
        try:
            summary = run(cfg, output_dir, overrides=list(hydra_cfg.overrides.task))
        except (ValueError, TypeError, OSError, RunLockedError) as e:
            # Bad input (StateMismatchError, CheckpointError, NonFiniteError are ValueErrors) or
            # a file system refusal (a full disk, a file it may not read): the message, which
            # names the file, is the whole story.
            log.error("error: %s", e)
            _remove_if_untouched(output_dir)
            sys.exit(2)
        except KeyboardInterrupt as e:
            log.error("interrupted: %s", e)
            sys.exit(130)
        if os.path.realpath(summary["run_dir"]) != os.path.realpath(output_dir):
            # A resumed run lives in its own directory; the one Hydra made for this command
            # holds nothing but a copy of the log.
            _remove_if_untouched(output_dir)


class RunDirectoryCheck(Callback):
    """Makes the run's directory (a sweep's, for ``-m``) just before Hydra would (registered
    in ``conf/config.yaml`` as ``hydra.callbacks.run_dir``): one that cannot be made (a
    read-only place, a path below a file, no permission) ends the command with one line naming
    it and its key, status 2, where Hydra printed its own traceback."""

    def on_run_start(self, config, **kwargs) -> None:
        _make_run_directory(config, "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        _make_run_directory(config, "hydra.sweep.dir")


def _make_run_directory(config, key: str) -> None:
    try:
        # Hydra registers ${now:...} with a per-config cache: the path resolved here is the one
        # Hydra makes and runs in.
        path = str(OmegaConf.select(config, key))
    except Exception:  # an interpolation only a running job resolves: Hydra makes it
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        # Hydra's logging is not set up yet: straight to stderr, as the app's errors read.
        print(f"error: cannot make the run directory {path!r} ({key}): {e.strerror or e}; "
              f"give a writable one with {key}=DIR", file=sys.stderr)
        sys.exit(2)


# When this process started (set by main(), before Hydra makes any directory).
_STARTED = {"time": None}


def _made_by_this_process(path: str) -> bool:
    # A directory Hydra made for this command changed (was created) after the process started;
    # one the user had before, with nothing added since, did not. Hydra writes nothing into it
    # (no .hydra/, no log file: conf/hydra/job_logging/bucketrnn.yaml), so an untouched
    # directory of the user's keeps its old ctime.
    started = _STARTED["time"]
    return started is not None and os.stat(path).st_ctime >= started


def _remove_if_untouched(output_dir: str) -> None:
    """Hydra makes its output directory before the app runs: a refused run (or a resume, which
    writes into the run it continues) leaves none behind. Only an empty directory made in this
    process is removed, and the default root made with it (``./outputs`` or ``./multirun``)
    when that is left empty; never one that existed before, nor the working directory or one of
    its parents."""
    path = os.path.realpath(output_dir)
    cwd = os.path.realpath(os.getcwd())
    if (cwd == path or cwd.startswith(path + os.sep) or not os.path.isdir(path)
            or os.listdir(path) or not _made_by_this_process(path)):
        return
    parent = os.path.dirname(path)
    roots = {os.path.join(cwd, "outputs"), os.path.join(cwd, "multirun")}
    parent_is_new = parent in roots and _made_by_this_process(parent)
    os.rmdir(path)
    if parent_is_new and not os.listdir(parent):
        os.rmdir(parent)


def main() -> None:
    """Console entry point (``bucketrnn`` / ``python -m bucketrnn``): Hydra parses argv,
    unless its first argument names a command on a trained run (``evaluate``, ``generate``,
    ``predict``, ``translate``: :mod:`bucketrnn.app.commands`)."""
    from bucketrnn.app.commands import COMMANDS

    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        from bucketrnn.app import commands

        sys.exit(commands.main(sys.argv[1:]))
    import hydra

    import bucketrnn.app.config  # noqa: F401  (registers the schema)

    _STARTED["time"] = time.time()
    hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(_hydra_app)()


if __name__ == "__main__":
    main()
