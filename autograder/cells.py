"""The notebook-cell vocabulary every room of the grader shares.

What a cell of a lab is (a test cell, a solution cell, its grade id, a cell skipped while
grading), what a code cell defines at its top level, where a test cell's hidden tests are,
and the test-cell protocol (checks, observers, the judge's flag) that
:mod:`rlhf_helpers.checks` declares for the notebooks. Imports nothing from the grader.
"""

from __future__ import annotations

import ast
import re

from nbgrader import utils as nbutils

from rlhf_helpers.checks import CHECK_PREFIXES, JUDGE_FLAG, OBSERVERS  # noqa: F401 (the protocol, re-exported)

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
"""Statements that define a name a test can call: functions (async too) and classes."""
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def grade_id(cell) -> str | None:
    """The cell's nbgrader grade id (None for a cell nbgrader does not track)."""
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def definitions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    """The functions (async included) and classes a module or cell defines at its top level."""
    return [stmt for stmt in tree.body if isinstance(stmt, DEFINITIONS)]


HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"


def is_test_cell(cell) -> bool:
    """An auto-graded test cell: a graded code cell that is not a solution (nbgrader's predicates)."""
    return cell.cell_type == "code" and nbutils.is_grade(cell) and not nbutils.is_solution(cell)


def skipped_while_grading(cell) -> bool:
    """A code cell the lab marks ``grading=skip``: a long run that no graded test needs."""
    return cell.cell_type == "code" and cell.metadata.get("rlhf_course", {}).get("grading") == "skip"


def hidden_sections(source_nb) -> dict[str, list[str]]:
    """grade_id -> the lines of that test cell's hidden tests (markers excluded)."""
    out: dict[str, list[str]] = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade_id") or HIDDEN_BEGIN not in cell.source:
            continue
        lines, inside = [], False
        for line in cell.source.splitlines():
            if HIDDEN_BEGIN in line:
                inside = True
            elif HIDDEN_END in line:
                inside = False
            elif inside:
                lines.append(line)
        out[meta["grade_id"]] = lines
    return out


def norm_text(text: str) -> str:
    return " ".join(text.split())


def secret_lines(source_nb, released_nb) -> list[str]:
    """Hidden-test lines that appear nowhere in the student copy: the strings
    that must never reach a learner (normalised whitespace, 12+ characters)."""
    visible = norm_text("\n".join(c.source for c in released_nb.cells))
    secrets = set()
    for lines in hidden_sections(source_nb).values():
        for line in lines:
            n = norm_text(line)
            if len(n) >= 12 and n not in visible and not n.startswith("#"):
                secrets.add(n)
    return sorted(secrets, key=len, reverse=True)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def leaks(text: str, secrets: list[str]) -> bool:
    """True when ``text`` quotes any of ``secrets`` (ANSI colours and spacing ignored)."""
    if not secrets or not text:
        return False
    flat = norm_text(ANSI.sub("", text))
    return any(s in flat for s in secrets)


def hidden_ranges(source: str) -> list[tuple[int, int]]:
    """(first, last) line numbers (1-based) of each hidden-test section of a test cell."""
    out, start = [], None
    for number, line in enumerate(source.splitlines(), start=1):
        if HIDDEN_BEGIN in line:
            start = number
        elif HIDDEN_END in line and start is not None:
            out.append((start, number))
            start = None
    if start is not None:
        out.append((start, 10**9))
    return out
