"""Old module paths keep working: ``import bucketrnn.loader`` gives :mod:`bucketrnn.data.loader`.

The package was reorganised into sub-packages (data, graphs, training, autoplan, inference);
code written against the flat layout still imports, with a ``DeprecationWarning`` naming the new
path. The table below is the whole mapping, the only place it is written.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "install", "moved_names"]

MOVED = {
    "bucketrnn.lengths": "bucketrnn.data.lengths",
    "bucketrnn.buckets": "bucketrnn.data.plan",
    "bucketrnn.sampler": "bucketrnn.data.sampler",
    "bucketrnn.batchify": "bucketrnn.data.batchify",
    "bucketrnn.loader": "bucketrnn.data.loader",
    "bucketrnn.datasets": "bucketrnn.data.datasets",
    "bucketrnn.pairs": "bucketrnn.data.pairs",
    "bucketrnn.memory": "bucketrnn.graphs.shared",
    "bucketrnn.precision": "bucketrnn.graphs.precision",
    "bucketrnn.train": "bucketrnn.training.loop",
    "bucketrnn.evaluation": "bucketrnn.training.evaluation",
    "bucketrnn.metrics": "bucketrnn.training.metrics",
    "bucketrnn.checkpoint": "bucketrnn.training.checkpoint",
    "bucketrnn.optim_state": "bucketrnn.training.optim_state",
    "bucketrnn.rundir": "bucketrnn.training.rundir",
    "bucketrnn.flops": "bucketrnn.training.flops",
    "bucketrnn.costmodel": "bucketrnn.autoplan.costmodel",
    "bucketrnn.generation": "bucketrnn.inference.generation",
    "bucketrnn.translate": "bucketrnn.inference.translate",
    "bucketrnn.bleu": "bucketrnn.inference.bleu",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and hands out the module that now lives at the new one."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs = getattr(self, "_specs", {})
        self._specs.setdefault(new, module.__spec__)
        return module

    def exec_module(self, module):
        # The module was executed under its new name already. The import system has just set
        # its __spec__ to the old name's: give it back its own, so importlib.reload (and
        # IPython's autoreload) reload the real module.
        real = self._specs[module.__name__]
        module.__spec__, module.__loader__ = real, real.loader

    def get_code(self, fullname):
        # ``python -m bucketrnn.<old name>``: say where it went instead of a traceback.
        raise ImportError(f"{fullname} moved to {MOVED[fullname]}; run that module instead")


def moved_names(module: str, names: dict):
    """A module ``__getattr__`` that still hands out names that left ``module``, with a
    ``DeprecationWarning``: ``{name: "new.module"}`` (the same name there),
    ``{name: "new.module:other"}``, or ``{name: (callable, "what to use instead")}`` for a name
    whose replacement has another form (the callable makes the old object)."""

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target = names[name]
        if isinstance(target, tuple):
            make, instead = target
            warnings.warn(f"{module}.{name} is gone; use {instead}", DeprecationWarning,
                          stacklevel=2)
            return make()
        where, _, attr = target.partition(":")
        warnings.warn(f"{module}.{name} moved to {where}.{attr or name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(where), attr or name)

    return __getattr__


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
