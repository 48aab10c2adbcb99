"""The import graph runs one way: errors/checks -> cells -> sequence -> nn -> (functional,
reference, columns) -> tools. No module imports from a room above its own."""
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
