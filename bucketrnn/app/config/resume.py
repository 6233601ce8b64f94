"""Resuming a run: which keys a resumed run may change, and the config it continues with."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bucketrnn.app.config.schema import Config, saved_config, to_dict
from bucketrnn.training.loop import LR_DECAY, WARMDOWN

__all__ = ["RESUMABLE", "restore"]

# Keys a resumed run may change: how long it goes on, how it reports, where it runs. Everything
# else is part of what the checkpoint was trained with and comes back from the run directory.
RESUMABLE = ("trainer.epochs", "trainer.max_steps", "trainer.checkpoint_every",
             "trainer.log_every", "trainer.progress", "trainer.context", "trainer.on_nonfinite",
             "trainer.precision",
             "bucketing.num_workers", "bucketing.timeout", "plots", "resume")
_GROUPS = ("dataset", "model", "bucketing", "trainer", "memory")


def _effective(d: dict, key: str):
    """A key's value as the run uses it: a null that stands for the library's default (the
    warm-down's falling share, the halving's factor) is that default, so a resume that spells
    the default out is no change."""
    value = _get(d, key)
    if value is None and key == "trainer.lr_warmdown" \
            and _get(d, "trainer.lr_schedule") == "warmdown":
        return WARMDOWN
    if value is None and key == "trainer.lr_decay" and _get(d, "trainer.lr_schedule") == "epoch":
        return LR_DECAY
    return value


def _get(d: dict, key: str):
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return "<absent>"
        d = d[part]
    return d


def _flat(d, prefix: str) -> dict:
    """``{"prefix.key.sub": leaf}`` of a nested dict (lists are leaves)."""
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}.{key}"))
    return out


def restore(cfg, saved: dict, overrides, source: str = "config.json") -> DictConfig:
    """The config of a resumed run: ``saved`` (the run's own ``config.json``) with the
    command line's ``overrides`` applied where :data:`RESUMABLE` allows it.

    Parameters
    ----------
    cfg : DictConfig
        The config composed from the command line (its values of the overridden keys are used).
    saved : dict
        The plain config the run was started with.
    overrides : list of str
        The command line's overrides (``key=value``; Hydra's own ``hydra.*`` are ignored).
    source : str
        The saved config's file, named in errors.

    Raises
    ------
    ValueError
        An override of a key that is not resumable and differs from the saved value, or of a
        config group (``model=gru_lm``) whose values differ from the run's: the message names
        the keys. A group override that composes the run's own values is accepted (the same
        command again with ``resume=true``); keys that a dotted override on the same command
        line sets are judged by that override, as above.
    """
    now = to_dict(cfg)
    merged = to_dict(saved_config(saved))
    keys = [str(text).split("=", 1)[0].lstrip("+~") for text in overrides]
    dotted = [key for key in keys if "." in key and not key.startswith("hydra.")]
    for text, key in zip(overrides, keys):
        if key.startswith("hydra.") or key == "hydra":
            continue
        if key in _GROUPS:
            # The group as composed now must be the run's: rerunning the same command (or
            # relaunching a sweep) with resume=true names the groups the run already has.
            names = {**_flat(now[key], key), **_flat(merged.get(key, {}), key)}
            differ = [name for name in names
                      if not any(name == d or name.startswith(d + ".") for d in dotted)
                      and _get(now, name) != _get(merged, name)]
            if differ:
                shown = ", ".join(f"{name}={_get(merged, name)!r} (now {_get(now, name)!r})"
                                  for name in differ[:5])
                raise ValueError(f"{text!r} does not fit the resumed run: its {key} group "
                                 f"differs in {shown}{' ...' if len(differ) > 5 else ''}; a "
                                 "resumed run keeps its config groups (start a new run to "
                                 "change them)")
            continue
        if _effective(now, key) == _effective(merged, key):
            continue
        if key not in RESUMABLE:
            raise ValueError(f"{key} cannot change when a run is resumed: the run has "
                             f"{key}={_get(merged, key)!r}, the command line {text!r}. Only "
                             f"{', '.join(RESUMABLE[:-1])} may be given with resume; start a "
                             "new run to change anything else")
        node, *path = key.split(".")
        target = merged
        for part in [node, *path][:-1]:
            target = target.setdefault(part, {})
        target[key.split(".")[-1]] = _get(now, key)
    merged["resume"] = now["resume"]
    try:
        return OmegaConf.merge(OmegaConf.structured(Config), merged)
    except OmegaConfBaseException as e:
        raise ValueError(f"the run's saved config {source!r} does not fit this version's "
                         f"schema: {str(e).splitlines()[0]}") from None
