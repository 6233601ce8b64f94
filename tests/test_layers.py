"""The house's floor plan holds: no import cycle, each package imports only those below it,
and nothing in the library imports the app.

Imports are read from the source (every ``import`` and ``from ... import`` statement, at a
module's head or inside a function), so a cycle hidden in a function is caught too.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "bucketrnn"

# What each part of the package may import (besides itself). "shared" is the modules at the
# package root that every layer uses.
SHARED = {"compat", "cores", "errors", "files", "progress", "tasks", "validation", "_aliases"}
ALLOWED = {
    "shared": set(),
    "data": {"shared"},
    "graphs": {"shared", "data"},
    "models": {"shared", "data", "graphs"},
    "distributed": {"shared"},
    "training": {"shared", "data", "graphs", "models", "distributed"},
    "autoplan": {"shared", "data", "graphs", "models", "training"},
    "inference": {"shared", "data", "graphs", "models", "training"},
    "app": {"shared", "data", "graphs", "models", "distributed", "training", "autoplan",
            "inference", "face"},
    "face": {"shared", "data", "graphs", "models", "distributed", "training", "autoplan",
             "inference"},
}
MAX_LEVELS = 7


def _module_name(path: pathlib.Path) -> str:
    parts = ("bucketrnn",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _modules() -> dict:
    return {_module_name(p): p for p in ROOT.rglob("*.py") if "conf" not in p.parts}


def _imports(path: pathlib.Path, known: set, lazy: bool = True) -> set:
    """The bucketrnn modules ``path`` imports: ``from bucketrnn import x`` names module
    ``bucketrnn.x`` when that is a module, else ``bucketrnn``. ``lazy=False`` leaves out the
    imports inside functions."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if lazy else tree.body
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                     else node.module for a in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    if module == "bucketrnn":
        return "face"
    if parts[1] == "__main__":
        return "app"
    if len(parts) == 2 and parts[1] in SHARED:
        return "shared"
    return parts[1]


@pytest.fixture(scope="module")
def graph():
    mods = _modules()
    known = set(mods)
    # The face's own imports inside functions are lazy by design (bucketrnn.load_run, below).
    return {m: _imports(p, known, lazy=m != "bucketrnn") - {m} for m, p in mods.items()}


def test_no_import_cycle(graph):
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_each_package_imports_only_those_below_it(graph):
    wrong = sorted((m, t) for m, targets in graph.items() for t in targets
                   if _part(t) != _part(m) and _part(t) not in ALLOWED[_part(m)])
    assert wrong == []


def test_the_library_never_imports_the_app(graph):
    # The package face resolves bucketrnn.load_run on first use (a module __getattr__), so
    # `import bucketrnn` loads no app module; no library module names the app at all.
    library = {m: t for m, t in graph.items() if _part(m) not in ("app", "face")}
    assert sorted((m, x) for m, t in library.items() for x in t if _part(x) == "app") == []
    assert not any(_part(t) == "app" for t in graph["bucketrnn"])


def test_import_levels_stay_few(graph):
    # A level per part (a sub-package, the shared modules, the app, the face): a part stands
    # one level above the highest part it imports.
    parts = {}
    for m, targets in graph.items():
        parts.setdefault(_part(m), set()).update(_part(t) for t in targets if _part(t) != _part(m))
    level = {}

    def depth(p):
        if p not in level:
            level[p] = 1 + max((depth(q) for q in parts.get(p, ())), default=0)
        return level[p]

    assert max(depth(p) for p in parts) <= MAX_LEVELS, {p: depth(p) for p in parts}


def test_every_error_and_warning_of_the_package_is_exported_at_the_top():
    """A user catches what the package raises (`except bucketrnn.DivergedError`) without
    knowing which module defines it."""
    import inspect

    import bucketrnn
    from bucketrnn import errors

    defined = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and obj.__module__ == errors.__name__}
    assert defined and defined <= set(bucketrnn.__all__)
    assert all(getattr(bucketrnn, name) is getattr(errors, name) for name in defined)
