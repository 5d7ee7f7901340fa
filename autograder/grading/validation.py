"""The rules a lab's source notebook must follow before it is released or graded.

nbformat's schema, nbgrader's metadata schema v3, unique grade ids, points, balanced
markers, test cells that follow the judge's rules (:mod:`autograder.grading.judge`), and
cells skipped while grading that nothing graded needs.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

from autograder.cells import HIDDEN_BEGIN, HIDDEN_END, grade_id, is_test_cell, skipped_while_grading
from autograder.grading.answer_key import learner_names, test_sources
from autograder.grading.judge import error_tests, observation_program, observed_names, test_cell_problems
from autograder.grading.references import Namespace, global_reads, python_source


@dataclass
class Problem:
    """One thing wrong with a source notebook."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _ends_with_value(source: str) -> bool:
    """True when a code cell's last statement is a bare expression that is not a call
    (nbgrader would read a number there as partial credit)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    if not tree.body:
        return False
    last = tree.body[-1]
    return isinstance(last, ast.Expr) and not isinstance(last.value, (ast.Call, ast.Await, ast.Constant))


def validate_source(path: Path) -> list[Problem]:
    """Check a source notebook: nbformat schema, nbgrader metadata schema v3,
    unique ids, points, balanced markers, and test cells that can be graded
    (no solution markers, no trailing value). Returns the problems found."""
    from nbgrader.nbgraderformat import ValidationError as NbgValidationError
    from nbgrader.nbgraderformat.v3 import MetadataValidatorV3

    problems: list[Problem] = []
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one problem
        return [Problem(str(path), f"cannot be read as a notebook: {exc}")]
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        problems.append(Problem(str(path), f"invalid nbformat: {exc.message}"))
    try:
        MetadataValidatorV3().validate_nb(nb)
    except NbgValidationError as exc:
        problems.append(Problem(str(path), f"invalid nbgrader metadata: {exc}"))
    seen: set[str] = set()
    graded = 0
    for i, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader")
        where = f"{path.name} cell {i}"
        if meta is None:
            if "BEGIN SOLUTION" in cell.source or "BEGIN HIDDEN TESTS" in cell.source:
                problems.append(Problem(where, "has solution/hidden-test markers but no nbgrader metadata"))
            continue
        gid = meta.get("grade_id", "")
        where = f"{path.name} cell {i} ({gid})"
        if meta.get("schema_version") != 3:
            problems.append(Problem(where, f"schema_version is {meta.get('schema_version')!r}, expected 3"))
        if gid in seen:
            problems.append(Problem(where, "duplicate grade_id"))
        seen.add(gid)
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", gid or ""):
            problems.append(Problem(where, "grade_id must be letters, digits, '_' or '-'"))
        src = cell.source
        if src.count(HIDDEN_BEGIN) != src.count(HIDDEN_END):
            problems.append(Problem(where, "unbalanced BEGIN/END HIDDEN TESTS"))
        if src.count("### BEGIN SOLUTION") != src.count("### END SOLUTION"):
            problems.append(Problem(where, "unbalanced BEGIN/END SOLUTION"))
        if nbutils.is_grade(cell):
            graded += 1
            if not meta.get("points", 0) > 0:
                problems.append(Problem(where, "a graded cell needs points > 0"))
        if is_test_cell(cell):
            if "BEGIN SOLUTION" in src:
                problems.append(Problem(where, "a test cell must not hold a solution"))
            if _ends_with_value(src.replace(HIDDEN_BEGIN, "").replace(HIDDEN_END, "")):
                problems.append(Problem(where, "a test cell must end without a value (nbgrader reads it as partial credit)"))
        if nbutils.is_solution(cell) and cell.cell_type == "code" and "### BEGIN SOLUTION" not in src:
            problems.append(Problem(where, "a solution cell needs ### BEGIN SOLUTION / ### END SOLUTION"))
    if graded == 0:
        problems.append(Problem(path.name, "no graded cells"))
    problems += _observation_problems(nb, path.name)
    problems += _skip_problems(nb, path.name)
    return problems


def _skip_problems(nb, name: str) -> list[Problem]:
    """A cell skipped while grading must not be needed by what runs: no test and no cell that runs
    after it may read a name it binds (they would fail under grading)."""
    bound: dict[str, int] = {}
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if skipped_while_grading(cell):
            if nbutils.is_grade(cell) or nbutils.is_solution(cell) or nbutils.is_locked(cell):
                out.append(Problem(f"{name} cell {i}", "grading=skip is for ordinary code cells only"))
            ns = Namespace([cell.source])
            bound.update({b.name: i for b in ns.bindings})
            continue
        text = python_source(observation_program(cell.source) if is_test_cell(cell) else cell.source)
        if not text:
            continue
        reads = global_reads(text)
        mine = {b.name for b in Namespace([text]).bindings}
        for used in sorted((reads - mine) & set(bound)):
            out.append(Problem(f"{name} cell {i}", f"reads {used!r}, which cell {bound[used]} binds, and that cell is "
                                                   "not run while grading (grading=skip): skip this cell too, or not that one"))
        for b in mine:
            bound.pop(b, None)
    return out


def _observation_problems(nb, name: str) -> list[Problem]:
    """Test cells must follow the observe/judge rules of :mod:`autograder.grading.judge`."""


    names = set(learner_names(nb))
    out = []
    for i, cell in enumerate(nb.cells):
        if is_test_cell(cell):
            gid = grade_id(cell)
            out += [Problem(f"{name} cell {i} ({gid})", p) for p in test_cell_problems(cell.source, names)]
    tests = test_sources(nb)
    for gid, needs in error_tests(tests, names).items():
        if not needs and "observe(" not in tests[gid]:
            out.append(Problem(f"{name} ({gid})", f"an error test of {sorted(observed_names(tests[gid]) & names)} "
                                                  "has no value test to depend on: observe a value in it too"))
    return out
