"""The experiment app, built on the library: Hydra configs in, a run directory out.

:mod:`~bucketrnn.app.run` (``bucketrnn`` / ``python -m bucketrnn``: train and evaluate one
experiment), :mod:`~bucketrnn.app.config` (the typed config schema and its checks),
:mod:`~bucketrnn.app.experiment` (config to datasets and loaders), :mod:`~bucketrnn.app.plan`
(``bucketrnn-plan``), :mod:`~bucketrnn.app.compare` (``bucketrnn-compare``) and
:mod:`~bucketrnn.app.plots`; on a trained run: :mod:`~bucketrnn.app.trained` (``load_run``),
:mod:`~bucketrnn.app.commands` (``bucketrnn evaluate | generate | predict | translate``),
:mod:`~bucketrnn.app.tasks` (which code serves each command for a run's task) and
:mod:`~bucketrnn.app.infer` (that code for language models and classifiers). The library never
imports from here (``bucketrnn.load_run`` is resolved on first use).
"""

__all__: list = []
