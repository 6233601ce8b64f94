"""The flat layout's module paths still import, as the module that moved (one object)."""

import importlib
import importlib.util
import warnings

import pytest

import bucketrnn
from bucketrnn._aliases import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_is_the_new_module(old):
    new = importlib.import_module(MOVED[old])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    assert module is new and module.__name__ == MOVED[old]


def test_old_from_import_names_the_new_path():
    import sys

    sys.modules.pop("bucketrnn.loader", None)
    moved = r"bucketrnn\.loader moved to bucketrnn\.data\.loader"
    with pytest.warns(DeprecationWarning, match=moved):
        from bucketrnn.loader import BucketLoader
    assert BucketLoader is bucketrnn.BucketLoader


def test_unknown_module_still_fails():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("bucketrnn.no_such_module")


def test_the_old_graphs_module_names_come_from_the_package():
    from bucketrnn.graphs import MEMORY, GraphCache, share_parameters

    assert GraphCache is bucketrnn.GraphCache and "shared" in MEMORY and callable(share_parameters)


def test_reload_reloads_the_real_module_not_the_old_name():
    import sys

    # bleu: plain functions, so reloading it in the test process changes no class identity.
    sys.modules.pop("bucketrnn.bleu", None)
    with pytest.warns(DeprecationWarning):
        old = importlib.import_module("bucketrnn.bleu")
    assert old.__spec__.name == "bucketrnn.inference.bleu"
    again = importlib.reload(old)
    assert again is old and again.__name__ == "bucketrnn.inference.bleu"


def test_running_an_old_module_says_where_it_went():
    from bucketrnn._aliases import _Alias

    spec = _Alias().find_spec("bucketrnn.train")  # what `python -m bucketrnn.train` finds
    with pytest.raises(ImportError, match=r"bucketrnn\.train moved to bucketrnn\.training\.loop"):
        spec.loader.get_code("bucketrnn.train")


def test_names_that_left_a_module_still_resolve_with_a_warning():
    from bucketrnn import files
    from bucketrnn.tasks import LM, TASK_NAMES
    from bucketrnn.training import evaluation, loop, metrics, rundir

    with pytest.warns(DeprecationWarning, match=r"rundir\.atomic_write moved to bucketrnn\.files"):
        assert rundir.atomic_write is files.atomic_write
    with pytest.warns(DeprecationWarning, match=r"moved to bucketrnn\.tasks\.TASK_NAMES"):
        assert loop.TASKS == TASK_NAMES
    with pytest.warns(DeprecationWarning, match=r"figures is gone; use bucketrnn\.tasks"):
        figures = metrics.figures
    t = {"loss": 4.0, "count": 2, "correct": 0.0, "rows": 0}
    assert figures("lm", t) == LM.figures(t)
    with pytest.warns(DeprecationWarning, match=r"batch_counts is gone"):
        assert callable(evaluation.batch_counts)
    with pytest.raises(AttributeError, match=r"has no attribute 'nothing'"):
        rundir.nothing  # noqa: B018
