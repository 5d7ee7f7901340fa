"""Every real lab under ``solutions/``: valid source, ``labs/`` in sync, and tests that can fail.

Parametrized over the labs present when pytest collects; with none, the tests
are skipped with a reason. The slow part grades, in one class with
``--jobs 2`` through the same path as ``rlhf-course grade``, each lab's
solution (must score full marks), its released blank copy (must score 0 on
every auto-graded cell: the project-wide guard against tests that cannot fail)
and a cheat copy whose graded functions are all taken from the kit's own
answers in five spellings (must score 0: the answer key is not in the box).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest
import _background as background

from autograder.course.release import _tree_diff, build_release
from autograder.grading.validation import validate_source
from autograder.labs import find_labs, source_notebook
from autograder.grading.sandbox import probe

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"
LAB_IDS = find_labs(SOLUTIONS)
PARAMS = LAB_IDS  # test_the_syllabus_is_all_there fails when one is missing

SYLLABUS = ("lab1_sampling", "lab2_rewards", "lab3_ppo", "lab4_kl_beta", "lab5_dpo_derivation", "lab6_dpo_hf",
            "lab7_beyond_ppo", "lab8_human_feedback", "lab9_verifiable_rewards")


def test_the_syllabus_is_all_there():
    """Every lab of the syllabus (DESIGN.md) has its source, so no test of a lab passes by finding none."""
    missing = [lab for lab in SYLLABUS if lab not in LAB_IDS]
    assert not missing, f"no solutions/<lab>/<lab>.ipynb for {missing}"


@pytest.mark.parametrize("lab", PARAMS)
def test_source_is_valid(lab):
    problems = validate_source(source_notebook(SOLUTIONS, lab))
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.parametrize("lab", PARAMS)
def test_source_has_no_outputs(lab):
    nb = nbformat.read(source_notebook(SOLUTIONS, lab), as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{lab}: cells {dirty} carry outputs; clear them before committing (see docs/AUTHORING.md)"


@pytest.mark.parametrize("lab", PARAMS)
def test_labs_in_sync_with_solutions(lab, tmp_path):
    problems = validate_source(source_notebook(SOLUTIONS, lab))
    if problems:
        pytest.skip(f"{lab}: the source is invalid (test_source_is_valid says why)")
    build_release(SOLUTIONS, tmp_path, [lab])
    diff = _tree_diff(tmp_path / lab, LABS / lab)
    assert not diff, "labs/ is out of date; run `rlhf-course release`:\n" + "\n".join(diff)


def _solved_copy(lab: str, released: Path, dst: Path) -> None:
    """The released copy with the source's solutions pasted in: a learner who solved everything."""
    source = nbformat.read(source_notebook(SOLUTIONS, lab), as_version=4)
    answers = {c.metadata.nbgrader["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(released / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    dst.mkdir(parents=True)
    nbformat.write(nb, dst / f"{lab}.ipynb")


def grade_the_labs(root: Path) -> dict:
    """Each valid lab's solution, blank copy, cheat, stub and honest variants, graded as one class
    with --jobs 2 in ``root`` (in the background: tests/_background.py)."""
    if probe():
        pytest.skip(probe())
    from autograder.grading.records import Settings
    from autograder.grading.batch import grade_class

    valid = [lab for lab in LAB_IDS if not validate_source(source_notebook(SOLUTIONS, lab))]
    build_release(SOLUTIONS, root / "released", valid)
    import rlhf_helpers

    from corpus.honest import FINDINGS, VARIANTS_BY_LAB, honest_notebook

    from autograder.course.selftest import cheat_copy, stub_copy

    def write(who: str, lab: str, nb) -> None:
        (root / "subs" / who / lab).mkdir(parents=True)
        nbformat.write(nb, root / "subs" / who / lab / f"{lab}.ipynb")

    for lab in valid:
        _solved_copy(lab, root / "released" / lab, root / "subs" / "solution" / lab)
        shutil.copytree(root / "released" / lab, root / "subs" / "blank" / lab)
        source = nbformat.read(source_notebook(SOLUTIONS, lab), as_version=4)
        released = nbformat.read(root / "released" / lab / f"{lab}.ipynb", as_version=4)
        write("cheat", lab, cheat_copy(source, released, Path(rlhf_helpers.__file__).parent))
        write("stub", lab, stub_copy(released))
        for variant in VARIANTS_BY_LAB.get(lab, {}):  # a: every graded cell in unusual styles; the findings
            if variant == "a" or (lab, variant) in FINDINGS:
                write(f"honest_{variant}", lab, honest_notebook(lab, variant, released))
    start = time.perf_counter()
    settings = Settings(jobs=2, **background.LIMITS)
    records = grade_class(root / "subs", root / "out", SOLUTIONS, settings, progress=print) if valid else []
    print(f"graded {len(records)} lab notebooks in {time.perf_counter() - start:.0f} s")
    graded = {(r.student_id, r.lab_id): r for r in records}
    graded["out"] = root / "out"
    return graded


@pytest.fixture(scope="module")
def graded_labs():
    return background.result("graded_labs", grade_the_labs)


def _record(graded_labs, who: str, lab: str) -> dict:
    if (who, lab) not in graded_labs:
        pytest.skip(f"{lab}: the source is invalid (test_source_is_valid says why)")
    return graded_labs[(who, lab)]


@pytest.mark.slow
@pytest.mark.parametrize("lab", PARAMS)
def test_solution_scores_full_marks(graded_labs, lab):
    r = _record(graded_labs, "solution", lab)
    assert r.graded, "; ".join(r.notes)
    failed = [c.grade_id for c in r.cells if c.kind == "test" and c.score != c.max]
    assert not failed, f"{lab}: the solution fails {failed}: " + "; ".join(r.notes)
    print(f"{lab}: solution graded in {r.seconds:.1f} s")


NO_WORK = {
    "blank": "these tests pass on the blank copy, so they cannot fail",
    # every graded function taken from the kit (import, importlib, sys.modules, exec of the module's
    # source, its bytecode): the sandbox holds no answer key, so nothing scores
    "cheat": "the kit's own answers earned points",
    # every graded function raises ValueError: its error tests would pass, but pay only once its value
    # tests pass (issue 27)
    "stub": "a stub that always raises earned points",
}


@pytest.mark.slow
@pytest.mark.parametrize("who", sorted(NO_WORK))
@pytest.mark.parametrize("lab", PARAMS)
def test_a_copy_that_does_no_work_earns_nothing(graded_labs, lab, who):
    r = _record(graded_labs, who, lab)
    assert r.graded, "; ".join(r.notes)
    assert r.cells, f"{lab}: no graded cells"
    passing = [c.grade_id for c in r.cells if c.kind == "test" and c.score]
    assert not passing, f"{lab}: {NO_WORK[who]}: {passing}: " + "; ".join(r.notes)


@pytest.mark.slow
@pytest.mark.parametrize("lab", PARAMS)
def test_honest_code_in_unusual_styles_keeps_full_marks(graded_labs, lab):
    """The honest corpus (tests/corpus/honest): variant a answers every graded cell in styles the
    solution does not use; c and d are styles the grader once refused. Full marks, no flag but
    similarity (the rest of such a notebook is the solution's)."""
    whose = sorted(key[0] for key in graded_labs if isinstance(key, tuple) and key[0].startswith("honest_") and key[1] == lab)
    assert whose, f"{lab}: no honest variant graded (tests/corpus/honest/{lab}.py)"
    for who in whose:
        r = graded_labs[(who, lab)]
        assert r.graded, "; ".join(r.notes)
        lost = [c.grade_id for c in r.cells if c.kind == "test" and c.score != c.max]
        assert not lost, f"{lab} {who}: honest code lost {lost}: " + "; ".join(r.notes)
        flags = [f for f in r.flags if not f.startswith("similar to")]
        assert not flags, f"{lab} {who}: honest code flagged: {flags}"


@pytest.mark.slow
@pytest.mark.parametrize("lab", PARAMS)
def test_the_whole_lab_runs_in_the_box(graded_labs, lab):
    """Under grading the lab's other cells (demos, training, plots) run with the learner's own
    functions, since the kit's versions of this lab's are stubs there: none may fail."""
    _record(graded_labs, "solution", lab)
    nb = nbformat.read(graded_labs["out"] / "course" / "autograded" / "solution" / lab / f"{lab}.ipynb", as_version=4)
    errors = [(i, o.ename, str(o.evalue)[:300]) for i, c in enumerate(nb.cells)
              if c.cell_type == "code" and not c.metadata.get("nbgrader", {}).get("grade")
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{lab}: cells fail under grading: {errors}"


@pytest.mark.slow
def test_copies_of_the_solutions_are_flagged_not_zeroed(graded_labs):
    import csv

    with open(graded_labs["out"] / "grades.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["student_id"] == "solution"]
    assert rows and all("similar to (solutions)" in r["flags"] for r in rows), [r["flags"] for r in rows]
    assert all(r["auto_score"] == r["auto_max"] for r in rows)
    assert (graded_labs["out"] / "similarity.csv").is_file()
