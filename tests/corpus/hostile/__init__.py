"""Hostile answers to every lab: attempts to earn points without doing the work.

The red team's corpus (docs: DESIGN.md, "Integrity"): a grade must mean the learner's code did
the work. Each module here, one per lab (``lab1_sampling.py`` ...), holds ``ATTACKS``: attack
name -> ``{"cells": {grade_id: the learner's cell source}, "extra_cells": [(after_grade_id,
source)], "expect": what the grader should do}``. ``cells`` replace solution cells of the
released copy (the cells an attack does not list stay blank, as released, so that every point
it earns is the attack's); ``extra_cells`` are ordinary code cells the learner adds, each placed
right after the cell with that grade_id (several after one cell keep their order). ``expect``
says what should happen: ``"0 points"``, or ``"points with a flag containing X"`` where the
instructor must at least be told.

``targets`` are the test cells the attack aims at (``"all"``: every one). ``measured`` (from
``measured.py``) is what the grader gave when the attack was written (``rlhf-course grade --jobs
2``): ``{"points": earned on the targets, "of": their points, "flags": grades.csv's flags}``; an
attack whose measured result breaks its ``expect`` is a hole in the grader.
Multi-round attacks (read something from a first round's feedback, use it in a second) are two
entries; the second holds what the first revealed.

Build a notebook with :func:`hostile_notebook`, or a whole class (one student per attack) with
:func:`write_class`; grade it with ``rlhf-course grade``.
"""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[3]
RELEASED = REPO / "labs"
LABS = ("lab1_sampling", "lab2_rewards", "lab3_ppo", "lab4_kl_beta", "lab5_dpo_derivation", "lab6_dpo_hf",
        "lab7_beyond_ppo", "lab8_human_feedback", "lab9_verifiable_rewards")

ATTACKS_BY_LAB: dict[str, dict[str, dict]] = {
    lab: importlib.import_module(f"{__name__}.{lab}").ATTACKS for lab in LABS
}
"""lab -> attack name -> {"cells", "extra_cells", "expect"[, "targets", "measured"]}."""

for (_lab, _name), _measured in importlib.import_module(f"{__name__}.measured").MEASURED.items():
    ATTACKS_BY_LAB[_lab][_name]["measured"] = _measured


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def hostile_notebook(lab: str, name: str, released_nb=None) -> nbformat.NotebookNode:
    """The released learner copy of ``lab`` (or ``released_nb``, a notebook or its path) with the
    attack ``name``'s cells in place and its extra cells added."""
    if released_nb is None:
        released_nb = RELEASED / lab / f"{lab}.ipynb"
    if not isinstance(released_nb, nbformat.NotebookNode):
        released_nb = nbformat.read(Path(released_nb), as_version=4)
    attack = ATTACKS_BY_LAB[lab][name]
    cells = attack.get("cells", {})
    extra = attack.get("extra_cells", [])
    nb = copy.deepcopy(released_nb)
    ids = {_grade_id(c) for c in nb.cells}
    unknown = (set(cells) | {after for after, _ in extra}) - ids
    if unknown:
        raise KeyError(f"{lab} attack {name!r} names cells the lab does not have: {sorted(unknown)}")
    out = []
    for cell in nb.cells:
        gid = _grade_id(cell)
        if gid in cells:
            cell.source = cells[gid]
        out.append(cell)
        out += [nbformat.v4.new_code_cell(source) for after, source in extra if after == gid]
    nb.cells = out
    return nb


def student_id(name: str) -> str:
    """A folder name for an attack (the grader's student id)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_class(dst: Path, labs=LABS, names=None) -> dict[tuple[str, str], str]:
    """Write ``dst/<student>/<lab>/<lab>.ipynb`` for each attack of ``labs`` (or only ``names``);
    returns (lab, attack) -> student id."""
    dst = Path(dst)
    out = {}
    for lab in labs:
        for name in ATTACKS_BY_LAB[lab]:
            if names is not None and name not in names:
                continue
            student = student_id(name)
            folder = dst / student / lab
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(hostile_notebook(lab, name), folder / f"{lab}.ipynb")
            out[(lab, name)] = student
    return out
