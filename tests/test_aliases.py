"""The flat layout's module paths still import, as the module that moved (one object)."""

import importlib
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
