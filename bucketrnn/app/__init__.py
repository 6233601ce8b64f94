"""The experiment app, built on the library: Hydra configs in, a run directory out.

:mod:`~bucketrnn.app.run` (``bucketrnn`` / ``python -m bucketrnn``: train and evaluate one
experiment), :mod:`~bucketrnn.app.config` (the typed config schema and its checks),
:mod:`~bucketrnn.app.experiment` (config to datasets and loaders), :mod:`~bucketrnn.app.plan`
(``bucketrnn-plan``), :mod:`~bucketrnn.app.compare` (``bucketrnn-compare``) and
:mod:`~bucketrnn.app.plots`. The library never imports from here.
"""

__all__: list = []
