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

__all__ = ["MOVED", "install"]

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
    "bucketrnn.progress": "bucketrnn.training.progress",
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
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # the module was executed under its new name already


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
