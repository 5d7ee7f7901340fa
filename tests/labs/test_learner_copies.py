"""The learner copies speak to learners: short cells, no maintainer notes, a rubric for every written answer.

DESIGN.md ("Every lab"): no cell states a result before the learner's run shows
it and the authors' measured figures live in the instructor notes
(``docs/instructor/``); prose explains in cells a learner reads in one go.
These are the checks a script can make; reading the labs as a learner does the rest.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from autograder.labs import find_labs, source_notebook

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"
LAB_IDS = find_labs(SOLUTIONS)
PARAMS = LAB_IDS  # test_labs.py::test_the_syllabus_is_all_there fails when one is missing

MAX_CELL_WORDS = 250
MAX_LAB_WORDS = 2000
# Phrases that belong to the people who build the kit, not to the people who learn from it.
MAINTAINER = re.compile(
    r"solution notebook|this solution|selftest|autograder\b|python -m autograder"
    r"|measured (with|on|when|for this|by)|when this lab was written|set_num_threads",
    re.IGNORECASE)
RUBRIC = ("rubric", "full marks", "half marks", "no marks")


def _learner_copy(lab: str):
    return nbformat.read(LABS / lab / f"{lab}.ipynb", as_version=4)


def _words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize("lab", PARAMS)
def test_prose_comes_in_short_cells(lab):
    """A learner reads a cell in one go: at most 250 words each, and the lab about 2,000 in all."""
    cells = [c for c in _learner_copy(lab).cells if c.cell_type == "markdown"]
    long = [(i, _words(c.source), c.source.strip().splitlines()[0][:60])
            for i, c in enumerate(cells) if _words(c.source) > MAX_CELL_WORDS]
    assert not long, f"{lab}: markdown cells over {MAX_CELL_WORDS} words (index, words, first line): {long}"
    total = sum(_words(c.source) for c in cells)
    assert total <= MAX_LAB_WORDS, f"{lab}: {total} words of prose, more than {MAX_LAB_WORDS}"


@pytest.mark.parametrize("lab", PARAMS)
def test_no_maintainer_notes_in_the_learner_copy(lab):
    """No "this solution notebook", no build tools, no authors' timings in what learners open."""
    hits = []
    for i, cell in enumerate(_learner_copy(lab).cells):
        for m in MAINTAINER.finditer(cell.source):
            line = cell.source[max(0, m.start() - 40):m.end() + 40].replace("\n", " ")
            hits.append(f"cell {i} ({cell.cell_type}): ...{line}...")
    assert not hits, f"{lab}: maintainer notes in the learner copy:\n" + "\n".join(hits)


@pytest.mark.parametrize("lab", PARAMS)
def test_every_written_answer_has_a_rubric(lab):
    """The solution of each manually graded answer says what earns full, half and no marks."""
    nb = nbformat.read(source_notebook(SOLUTIONS, lab), as_version=4)
    written = [c for c in nb.cells
               if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")]
    assert written, f"{lab}: no written answer (DESIGN.md asks for one or two per lab)"
    for cell in written:
        gid = cell.metadata["nbgrader"]["grade_id"]
        text = cell.source.lower()
        missing = [word for word in RUBRIC if word not in text]
        assert not missing, f"{lab}/{gid}: the model answer has no rubric ({', '.join(missing)} missing)"


@pytest.mark.parametrize("lab", PARAMS)
def test_rubrics_stay_out_of_the_learner_copy(lab):
    """nbgrader replaces the model answer, rubric included, with "YOUR ANSWER HERE"."""
    for cell in _learner_copy(lab).cells:
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("grade"):
            assert "rubric" not in cell.source.lower(), f"{lab}: a rubric shows in the learner copy"


def test_instructor_notes_exist_for_every_lab():
    """The authors' measured figures have a home: docs/instructor/<lab_id>.md."""
    missing = [lab for lab in LAB_IDS if not (REPO / "docs" / "instructor" / f"{lab}.md").is_file()]
    assert not missing, f"no instructor notes for {missing} (docs/instructor/<lab_id>.md)"


@pytest.mark.parametrize("lab", PARAMS)
def test_each_part_heading_states_the_points_of_its_cells(lab):
    """A "## Part X: ... (N points)" heading says how many points the graded cells below it (up to
    the next second-level heading) are worth; a part without graded cells states none."""
    nb = nbformat.read(source_notebook(SOLUTIONS, lab), as_version=4)
    part, stated, counted = None, {}, {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## "):
                    heading = re.match(r"## (Part [A-Z])\b.*?(?:\(([^()]*\bpoints?\b[^()]*)\))?\s*$", line)
                    part = heading.group(1) if heading else None
                    if part:  # "(5 points)", "(4 points + 2 written)"
                        stated[part] = sum(int(n) for n in re.findall(r"\d+", heading.group(2) or ""))
                        counted[part] = 0
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and part:
            counted[part] += meta.get("points", 0)
    assert counted, f"{lab}: no '## Part' heading"
    wrong = {p: f"says {stated[p]}, its cells hold {counted[p]:g}" for p in counted if stated[p] != counted[p]}
    assert not wrong, f"{lab}: {wrong}"
