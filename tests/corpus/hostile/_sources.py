"""Sources the copy attacks start from, read when the corpus is built (so they follow the lab):
a solution cell without its ``### BEGIN/END SOLUTION`` markers, a kit function's own source, and
mechanical disguises a learner could apply to them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[3]


def solution_cell(lab: str, grade_id: str) -> str:
    """The instructor's source of a solution cell, markers removed (the learner's cell, copied)."""
    nb = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            lines = [ln for ln in cell.source.splitlines() if "### BEGIN SOLUTION" not in ln
                     and "### END SOLUTION" not in ln]
            return "\n".join(lines) + "\n"
    raise KeyError(f"{lab} has no cell {grade_id!r}")


def kit_function(module: str, name: str) -> str:
    """The source of a top-level function or class of ``rlhf_helpers.<module>``."""
    text = (REPO / "rlhf_helpers" / f"{module}.py").read_text(encoding="utf-8")
    for stmt in ast.parse(text).body:
        if getattr(stmt, "name", None) == name:
            return ast.get_source_segment(text, stmt) + "\n"
    raise KeyError(f"rlhf_helpers.{module} has no {name}")


def renamed(source: str, names: dict[str, str]) -> str:
    """``source`` with whole-word identifiers renamed (a learner's search and replace)."""
    for old, new in names.items():
        source = re.sub(rf"(?<![!\w.]){re.escape(old)}\b", new, source)  # not a conversion (!r), not an attribute
    return source


def without_comments(source: str) -> str:
    """``source`` reformatted by ``ast.unparse``: comments gone, one statement per line, quotes normalised."""
    return ast.unparse(ast.parse(source)) + "\n"


def dead_raise(source: str, name: str) -> str:
    """``source`` with an unreachable ``raise NotImplementedError`` as the first statement of ``name``'s body
    (after its docstring)."""
    tree = ast.parse(source)
    for stmt in ast.walk(tree):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            at = 1 if stmt.body and isinstance(stmt.body[0], ast.Expr) and isinstance(
                getattr(stmt.body[0], "value", None), ast.Constant) else 0
            guard = ast.parse("if False:\n    raise NotImplementedError()").body[0]
            stmt.body.insert(at, guard)
            return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    raise KeyError(name)


def interleaved(source: str, name: str) -> str:
    """``source`` with a no-op statement after every statement of ``name``'s body (a mechanical
    disguise that breaks the token k-grams the similarity check fingerprints)."""
    tree = ast.parse(source)
    counter = iter(range(10**6))

    def pad(body: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for stmt in body:
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    setattr(stmt, field, pad(inner))
            out.append(stmt)
            n = next(counter)
            out += ast.parse(f"_unused_{n} = [{n}, '{n}', ({n},)]\n_unused_{n}.append(len(_unused_{n}))").body
        return out

    for stmt in ast.walk(tree):
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            doc = stmt.body[:1] if stmt.body and isinstance(stmt.body[0], ast.Expr) else []
            stmt.body = doc + pad(stmt.body[len(doc):])
            return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    raise KeyError(name)


def without_arg_checks(source: str) -> str:
    """``source`` without the kit's input checks: ``_args.f(...)`` statements dropped, ``x = _args.f(y, ...)``
    turned into ``x = y`` (what a learner pasting the kit's code would trim)."""
    tree = ast.parse(source)

    def is_check(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            isinstance(node.func.value, ast.Name) and node.func.value.id == "_args"

    for stmt in ast.walk(tree):
        for field in ("body", "orelse"):
            body = getattr(stmt, field, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            kept = []
            for s in body:
                if isinstance(s, ast.Expr) and is_check(s.value):
                    continue
                if isinstance(s, ast.Assign) and is_check(s.value):
                    s.value = s.value.args[0]
                kept.append(s)
            setattr(stmt, field, kept or [ast.Pass()])
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
