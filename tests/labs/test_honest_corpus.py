"""The honest corpus (tests/corpus/honest): every variant is complete, and the hand-off check
(autograder.grading.judge.handoffs) finds nothing to refuse in it. Fast: no kernel runs here; the graded
run of the same notebooks goes through the real grader elsewhere."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from corpus.honest import FINDINGS, LABS, VARIANTS_BY_LAB, honest_notebook, solution_sources

from autograder.grading import answer_key as AK
from autograder.cells import is_test_cell
from autograder.grading import judge as J

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
RELEASED = REPO / "labs"


def _source(lab: str) -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)


def _graded_solution_ids(lab: str) -> set[str]:
    """grade_ids of the solution cells holding graded code (not the written answers)."""
    return {c.metadata.nbgrader["grade_id"] for c in _source(lab).cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
            and not c.metadata.nbgrader.get("grade")}


def _cells(lab: str, variant: str) -> list[tuple[str, bool]]:
    """The built notebook's code cells as (source, is_test), each test cell with its full source
    from solutions/ (the released copy lacks the hidden tests)."""
    tests = AK.test_sources(_source(lab))
    nb = honest_notebook(lab, variant, RELEASED / lab / f"{lab}.ipynb")
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if is_test_cell(cell):
            out.append((tests[cell.metadata.nbgrader["grade_id"]], True))
        else:
            out.append((cell.source, False))
    return out


def _equivalents(lab: str) -> dict[str, list[str]]:
    source = _source(lab)
    return {name: AK.equivalents(source).get(name, []) for name in AK.learner_names(source)}


def test_every_lab_has_a_corpus():
    found = sorted(p.name for p in SOLUTIONS.iterdir() if (p / f"{p.name}.ipynb").is_file())
    assert sorted(LABS) == found, "tests/corpus/honest/__init__.py's LABS should list every lab of solutions/"


@pytest.mark.parametrize("lab", LABS)
def test_variants_answer_the_graded_cells(lab):
    """Variant a answers every graded solution cell, b at least half, in code of their own."""
    graded = _graded_solution_ids(lab)
    variants = VARIANTS_BY_LAB[lab]
    assert {"a", "b"} <= set(variants), f"{lab}: variants a and b are required"
    assert set(variants["a"]) == graded, f"{lab}: variant a misses {sorted(graded - set(variants['a']))}"
    assert 2 * len(variants["b"]) >= len(graded), f"{lab}: variant b answers fewer than half of {sorted(graded)}"
    solutions = solution_sources(lab)
    for name, cells in variants.items():
        assert set(cells) <= graded, f"{lab} variant {name}: not graded solution cells: {sorted(set(cells) - graded)}"
        for gid, source in cells.items():
            assert source.strip() != solutions[gid].strip(), f"{lab} variant {name}: {gid} is the solution's own source"
            assert "### BEGIN SOLUTION" not in source, f"{lab} variant {name}: {gid} still holds the solution markers"


def test_findings_name_variants_beyond_a_and_b():
    """Every variant past a and b is a finding, listed once with what fixed it; all must keep full marks."""
    extra = {(lab, v) for lab in LABS for v in VARIANTS_BY_LAB[lab] if v not in ("a", "b")}
    unlisted, absent = sorted(extra - set(FINDINGS)), sorted(set(FINDINGS) - extra)
    assert not unlisted and not absent, f"unlisted: {unlisted}; listed but absent: {absent}"
    for (lab, variant), finding in FINDINGS.items():
        tests = set(AK.test_sources(_source(lab)))
        assert finding.lost and set(finding.lost) <= tests, f"{lab} {variant}: {finding.lost} are not its tests"


def _params():
    return [pytest.param(lab, variant, id=f"{lab}-{variant}") for lab in LABS for variant in sorted(VARIANTS_BY_LAB[lab])]


@pytest.mark.parametrize(("lab", "variant"), _params())
def test_honest_variant_hands_nothing_off(lab, variant):
    """handoffs() over the built notebook, hidden tests included, refuses nothing (the findings included)."""
    assert J.handoffs(_cells(lab, variant), _equivalents(lab)) == {}
