"""``bucketrnn-plan`` / ``python -m bucketrnn.app.plan``: the bucket plan and padding figures of a
dataset config, no training.

Takes the same config groups and overrides as the app (composed with Hydra's compose API, so
nothing is written to disk)::

    bucketrnn-plan
    bucketrnn-plan bucketing.num_buckets=32 bucketing.strategy=quantile
    bucketrnn-plan dataset=text dataset.path=corpus.txt dataset.tokens=char

With ``bucketing.num_buckets=auto`` it probes the model on the configured context
first (some seconds), as the app does, and shows the chosen K and why.
"""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from bucketrnn.app import auto
from bucketrnn.app.config import CONF_DIR, parse_context, to_dict, validate
from bucketrnn.app.experiment import load_data, make_loaders
from bucketrnn.data.plan import key_length, longest_key, pad_to_max_waste

__all__ = ["describe", "main"]


def describe(cfg) -> str:
    """The report ``python -m bucketrnn.app.plan`` prints."""
    validate(cfg)
    if str(cfg.resume).strip():
        raise ValueError(f"resume={cfg.resume!r} continues a run in the app; bucketrnn-plan "
                         "plans the config its command line composes (the run's own settings "
                         "are in its config.json)")
    data = load_data(cfg.dataset, seed=cfg.seed)
    cost, bucketing = None, cfg.bucketing
    if auto.pending(cfg.bucketing):
        cost = auto.probe_run(cfg, data, parse_context(cfg.trainer.context))
        if cost is None:
            bucketing = auto.fallback(cfg.bucketing, data)
    train, valid, test = make_loaders(
        data, bucketing, seed=cfg.seed, cost=cost,
        epochs=auto.planned_epochs(cfg.trainer, to_dict(cfg.bucketing), len(data.train)))
    plan = train.plan
    lines = [f"dataset: {data.description}",
             f"train: {len(data.train)} sequences, {int(train.lengths.sum())} time steps "
             f"(task {train.task!r})", "", repr(plan), ""]
    longest = longest_key(train.lengths)
    sides = " (source + target steps)" if isinstance(longest, tuple) else ""
    slots_max = train.lengths.shape[0] * key_length(longest)
    where = f"key {longest}" if sides else f"({longest}, one graph)"
    lines.append(f"padding to the longest {where}: {100 * pad_to_max_waste(train.lengths):.2f}% "
                 f"of {slots_max} slots{sides}" + (", one graph" if sides else ""))
    lines.append(f"this plan ({plan.num_buckets} graphs): {100 * plan.waste:.2f}% of "
                 f"{plan.computed_slots} computed slots{sides} are not real tokens "
                 f"(time padding {100 * plan.padding_fraction:.2f}%, fill rows "
                 f"{100 * plan.fill_fraction:.2f}%); {len(train)} batches per epoch")
    for name, loader in (("valid", valid), ("test", test)):
        if loader is not None:
            lines.append(f"{name}: {len(loader.lengths)} sequences on the train boundaries, "
                         f"waste {100 * loader.plan.waste:.2f}%, {len(loader)} batches")
    if cost is not None:
        lines.append(auto.plan_note(cost, plan))
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of ``python -m bucketrnn.app.plan [override ...]``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=argv)
        print(describe(cfg))
    except (HydraException, ValueError, TypeError, FileNotFoundError) as e:
        # Hydra's message names the override; its cause names the key and what was expected.
        cause = e.__cause__ or e.__context__
        print(f"error: {e}" + (f"\n{cause}" if cause and str(cause) not in str(e) else ""),
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
