"""The imports of both packages form layers: no import loop, no upward import between the grader's rooms.

Every import counts, at the top of a module or inside a function (a deferred import is still a
dependency). The rooms of ``autograder`` and their order are the package docstring's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOMS = {"cells": 0, "labs": 0, "grading": 1, "course": 2, "classhub": 2, "bench": 3, "cli": 4}
"""The grader's rooms, lowest first: a room may import from its own rank and below."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a package's own __init__ is not a dependency
                found.add(t)
    return found


def graph(package: str) -> dict[str, set[str]]:
    files = sorted((REPO / package).rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", ["autograder", "rlhf_helpers"])
def test_no_import_loop(package):
    assert _cycles(graph(package)) == []


def test_the_cycle_finder_finds_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "cli"


def test_every_module_of_the_grader_is_in_a_room():
    rooms = {_room(m) for m in graph("autograder") if m != "autograder"}
    assert rooms <= set(ROOMS), rooms - set(ROOMS)


def test_no_room_imports_from_a_room_above_it():
    upward = [(m, t) for m, targets in graph("autograder").items() if m != "autograder"
              for t in targets if t != "autograder" and ROOMS[_room(t)] > ROOMS[_room(m)]]
    assert upward == []


def test_the_helpers_never_import_the_grader():
    assert [(m, t) for m, targets in graph("rlhf_helpers").items() for t in targets if t.startswith("autograder")] == []
