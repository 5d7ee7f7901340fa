"""The hostile corpus (tests/corpus/hostile): every attack builds into a valid learner notebook that
names only cells its lab has. Fast: no kernel runs here. Grading the attacks (minutes per lab) is
for the graded tests the engineer adds from the red team's report; the hand-off check, which needs
no kernel, is run here on the attacks it must refuse by reading the code."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from corpus.hostile import ATTACKS_BY_LAB, LABS, hostile_notebook, student_id

from autograder import answer_key as AK
from autograder import course as C
from autograder import judge as J
from autograder.references import python_source

REPO = Path(__file__).resolve().parents[1]
SOLUTIONS = REPO / "solutions"


def _source(lab: str) -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)


def _params():
    return [pytest.param(lab, name, id=f"{lab}-{student_id(name)}") for lab in LABS for name in ATTACKS_BY_LAB[lab]]


def test_every_lab_has_a_hostile_module():
    found = sorted(p.name for p in SOLUTIONS.iterdir() if (p / f"{p.name}.ipynb").is_file())
    assert sorted(LABS) == found, "tests/corpus/hostile/__init__.py's LABS should list every lab of solutions/"


@pytest.mark.parametrize(("lab", "name"), _params())
def test_attack_builds_a_valid_notebook(lab, name):
    attack = ATTACKS_BY_LAB[lab][name]
    assert set(attack) <= {"cells", "extra_cells", "expect", "targets", "measured"}, sorted(attack)
    assert attack.get("cells") or attack.get("extra_cells"), "an attack changes something"
    assert attack["expect"].strip(), "an attack says what the grader should do"
    tests = set(AK.test_sources(_source(lab)))
    targets = attack.get("targets", "all")
    assert targets == "all" or set(targets) <= tests, f"not test cells of {lab}: {sorted(set(targets) - tests)}"
    nb = hostile_notebook(lab, name)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.strip():
            assert python_source(cell.source), f"a code cell of the attack does not parse:\n{cell.source[:300]}"


def _cells(lab: str, name: str) -> list[tuple[str, bool]]:
    tests = AK.test_sources(_source(lab))
    out = []
    for cell in hostile_notebook(lab, name).cells:
        if cell.cell_type != "code":
            continue
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        out.append((tests[gid], True) if C.is_test_cell(cell) else (cell.source, False))
    return out


def test_plainly_named_equivalents_are_refused_by_reading_the_code():
    """The control attack: the listed classes under their own names are refused before anything runs."""
    lab, name = "lab1_sampling", "lab1 listed equivalents named plainly"
    source = _source(lab)
    graded = {n: AK.equivalents(source).get(n, []) for n in AK.learner_names(source)}
    assert set(J.handoffs(_cells(lab, name), graded)) == {"top_k_filter", "top_p_filter"}
