"""The house's rules, checked on the source: imports run one way (errors/checks/tuning ->
cells -> sequence -> nn -> (functional, reference, columns, io, train) -> tools), no import
cycle inside a package either, and nothing outside cells/ decides by a family's name."""
import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).parent.parent / "src" / "rnnlab"
RANK = {"errors": 0, "checks": 0, "tuning": 0, "cells": 1, "sequence": 2, "nn": 3, "functional": 4,
        "reference": 4, "columns": 4, "io": 4, "train": 4, "tools": 5}


def _room(parts):
    return parts[0] if parts else None


def _imports(path):
    rel = path.relative_to(SRC).with_suffix("").parts
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - node.level + 1])
            target = base + (node.module.split(".") if node.module else [])
            names = [a.name for a in node.names] if not node.module else []
            yield target, names
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnnlab"):
            yield node.module.split(".")[1:], []


FILES = [p for p in SRC.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
         or p.parent != SRC]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_imports_go_down(path):
    own = RANK[path.relative_to(SRC).with_suffix("").parts[0]]
    for target, names in _imports(path):
        rooms = [target[0]] if target else names
        for room in rooms:
            assert RANK.get(room, -1) <= own, f"{path.name} imports {'.'.join(target) or room}"


# -- nothing outside cells/ decides by a family's name -------------------------------------
def _family_names():
    from rnnlab.cells import FAMILIES
    names = set()
    for fam in FAMILIES.values():
        names |= {fam.kind, fam.mode} | ({fam.torch_class} if fam.torch_class else set())
    return names


def _name_checks(tree, names):
    """Line numbers where a comparison or a dict literal names a family: ``kind ==
    "lstm"``, ``mode in ("GRU", ...)``, ``{"RNN_TANH": ...}``."""
    for node in ast.walk(tree):
        parts = []
        if isinstance(node, ast.Compare):
            parts = [node.left] + node.comparators
        elif isinstance(node, ast.Dict):
            parts = [k for k in node.keys if k is not None]
        for part in parts:
            for sub in ast.walk(part):
                if isinstance(sub, ast.Constant) and sub.value in names:
                    yield node.lineno, sub.value


OUTSIDE_CELLS = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "cells"]


@pytest.mark.parametrize("path", OUTSIDE_CELLS,
                         ids=[str(p.relative_to(SRC)) for p in OUTSIDE_CELLS])
def test_no_family_name_checks_outside_cells(path):
    found = list(_name_checks(ast.parse(path.read_text()), _family_names()))
    assert not found, f"{path.name} decides by a family's name at {found}: read a field of " \
        "the Family record instead"


def test_name_check_detector_catches_one():
    code = 'if fam.kind == "lstm":\n    x = {"GRU": 1}\nelif mode in ("RNN_TANH",):\n    pass'
    found = sorted(n for _, n in _name_checks(ast.parse(code), _family_names()))
    assert found == ["GRU", "RNN_TANH", "lstm"]


# -- no import cycle, inside a package either ----------------------------------------------
def _module_of(path):
    rel = path.relative_to(SRC).with_suffix("").parts
    return rel[:-1] if rel[-1] == "__init__" else rel


def _edges():
    """module -> the rnnlab modules it imports at module level (``from . import x`` is an
    edge to the submodule x when there is one, else to the package)."""
    modules = {_module_of(p): p for p in SRC.rglob("*.py") if p.name != "__main__.py"}
    graph = {}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod[:-1]
        out = set()
        for node in ast.parse(path.read_text()).body:          # module level only
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - node.level + 1]
                elif (node.module or "").startswith("rnnlab"):
                    base = ()
                else:
                    continue
                target = base + tuple(node.module.split(".")[1 if not node.level else 0:]
                                      if node.module else ())
                for alias in node.names:
                    sub = target + (alias.name,)
                    out.add(sub if sub in modules else target)
        graph[mod] = {t for t in out if t in modules and t != mod}
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        stack.pop()
        return None
    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _cycle(_edges())
    assert cycle is None, "import cycle: " + " -> ".join(".".join(m) or "rnnlab" for m in cycle)


def test_cycle_detector_catches_one():
    assert _cycle({("a",): {("b",)}, ("b",): {("a",)}}) is not None
    assert _cycle({("a",): {("b",)}, ("b",): set()}) is None
