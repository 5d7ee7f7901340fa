"""The hostile corpus (tests/corpus/hostile): every attack builds into a valid learner notebook that
names only cells its lab has, and the hand-off check, which needs no kernel, refuses what it must by
reading the code (fast). The slow tests grade every attack as one class through the real grader:
each earns nothing unless the instructor is told, no leak reaches the feedback, and the class earns
at most a tenth of what it earned without a flag when the red team wrote it (issue 27)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import _background as background
from corpus.hostile import ATTACKS_BY_LAB, LABS, hostile_notebook, student_id

from autograder.grading import answer_key as AK
from autograder.cells import is_test_cell
from autograder.grading import judge as J
from autograder.grading.references import python_source

REPO = Path(__file__).resolve().parents[2]
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
        out.append((tests[gid], True) if is_test_cell(cell) else (cell.source, False))
    return out


def test_plainly_named_equivalents_are_refused_by_reading_the_code():
    """The control attack: the listed classes under their own names are refused before anything runs."""
    lab, name = "lab1_sampling", "lab1 listed equivalents named plainly"
    source = _source(lab)
    graded = {n: AK.equivalents(source).get(n, []) for n in AK.learner_names(source)}
    assert set(J.handoffs(_cells(lab, name), graded)) == {"top_k_filter", "top_p_filter"}


# ---------------------------------------------------------------------------------- graded

LEAK_MARKERS = {"lab1 hidden input read out through the name of a raised exception": "Leak_",
                "lab8 round 1: hidden inputs read out through a visible test's error message": "round1:"}
"""Attacks that try to carry hidden inputs into the feedback, and the text their leak starts with."""
FIXED_INPUTS = {"lab8 round 2: a lookup table of the inputs round 1 revealed": "table of"}
"""A lookup table of inputs leaked earlier still matches (hidden inputs are fixed): flagged instead."""


def grade_the_attacks(root: Path):
    """Every attack of the corpus graded as one class in ``root``, --jobs 2, through the real grader
    (in the background: tests/_background.py)."""
    from autograder.grading.records import Settings
    from autograder.grading.batch import grade_class
    from autograder.grading.sandbox import probe
    from corpus.hostile import write_class

    if probe():
        pytest.skip(probe())
    students = write_class(root / "subs")
    settings = Settings(jobs=2, **background.LIMITS)
    records = {(r.student_id, r.lab_id): r for r in grade_class(root / "subs", root / "out", SOLUTIONS, settings,
                                                                 progress=print)}
    return students, records, root / "out"


@pytest.fixture(scope="module")
def graded_attacks():
    return background.result("graded_attacks", grade_the_attacks)


def _earned(record, targets) -> float:
    cells = [c for c in record.cells if c.kind == "test" and (targets == "all" or c.grade_id in targets)]
    return sum(c.score or 0.0 for c in cells)


@pytest.mark.slow
@pytest.mark.parametrize(("lab", "name"), _params())
def test_an_attack_earns_nothing_unless_the_instructor_is_told(graded_attacks, lab, name):
    """Each attack of the red team's corpus, graded: its "expect" holds (0 points, or points with a
    flag the instructor reads), and no leak reaches the learner's feedback (issue 27)."""
    from autograder.grading.worker import html_text

    students, records, out = graded_attacks
    attack = ATTACKS_BY_LAB[lab][name]
    r = records[(students[(lab, name)], lab)]
    assert r.graded, "; ".join(r.notes)
    earned = _earned(r, attack.get("targets", "all"))
    flags = "; ".join(f for f in r.flags if not f.startswith("similar to student"))
    expect = attack["expect"]
    if name in FIXED_INPUTS:
        assert earned == 0 or FIXED_INPUTS[name] in flags, (earned, flags)
    elif "flag containing '" in expect:
        wanted = expect.split("flag containing '", 1)[1].split("'")[0]
        assert earned == 0 or wanted in flags, f"{name}: {earned} points, flags {flags!r} (expected {expect!r})"
    elif "or points with a flag" in expect:
        assert earned == 0 or flags, f"{name}: {earned} points and no flag (expected {expect!r})"
    else:
        assert earned == 0, f"{name}: {earned} points (expected {expect!r}): " + "; ".join(r.notes)
    if name in LEAK_MARKERS:
        page = html_text((out / "feedback" / r.student_id / f"{lab}.html").read_text())
        for text in (page, "; ".join(r.notes)):
            leaked = [line for line in text.splitlines() if LEAK_MARKERS[name] in line and "raise" not in line
                      and "type(" not in line]
            assert not leaked, f"{name}: the feedback shows what the learner's code saw: {leaked[:2]}"


def _unflagged(earned: float, flags: list[str]) -> float:
    return 0.0 if [f for f in flags if not f.startswith("similar to student")] else earned


@pytest.mark.slow
def test_the_class_earns_at_most_a_tenth_of_what_it_did_without_a_flag(graded_attacks):
    """Issue 27's measure: what the corpus earns on its targets without a flag the instructor reads,
    now, against what it earned when the red team wrote it (measured.py)."""
    students, records, _out = graded_attacks
    before = now = 0.0
    for (lab, name), student in students.items():
        attack = ATTACKS_BY_LAB[lab][name]
        before += _unflagged(attack["measured"]["points"], attack["measured"]["flags"])
        r = records[(student, lab)]
        now += _unflagged(_earned(r, attack.get("targets", "all")), r.flags)
    print(f"the hostile corpus earns {now:g} points without a flag (it earned {before:g} when written)")
    assert before > 0 and now <= 0.1 * before, (now, before)
