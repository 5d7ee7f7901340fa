"""A class graded in shards, on as many machines, then merged: the same grades as one run (issue 19).

The fixture lab's class (see tests/grader/test_grading.py) is small: a few of its
students, a copier whose original lands in the other shard, and a folder for a
lab that does not exist are graded once whole and once as shards 0/2 and 1/2;
``rlhf-course merge`` must give back exactly the whole run's ``grades.csv`` and
``similarity.csv``, feedback included.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from autograder.grading.batch import parse_shard, shard_of
from test_grading import CLASS, LAB, LIMITS, SANDBOX_PROBLEM, rlhf_course

STUDENTS = ("good", "blank", "wrong_hidden", "raises")


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_parse_shard_says_what_it_wants():
    assert parse_shard("0/4") == (0, 4) and parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="K"):
            parse_shard(bad)


def test_shards_are_stable_and_cover_the_class():
    keys = [(f"s{i}", lab) for i in range(200) for lab in ("lab1_sampling", "lab2_rewards")]
    shards = [shard_of(s, lab, 4) for s, lab in keys]
    assert shards == [shard_of(s, lab, 4) for s, lab in keys]  # the same on every call (and machine)
    assert set(shards) == {0, 1, 2, 3}
    assert min(shards.count(k) for k in range(4)) > 60  # roughly even: 100 each


@pytest.fixture(scope="module")
def small_class(tmp_path_factory) -> Path:
    subs = tmp_path_factory.mktemp("class")
    for student in STUDENTS:
        shutil.copytree(CLASS / student, subs / student)
    # A copier whose original ('good') is graded by the other shard: only the merge can see the pair.
    copier = next(f"copier{i}" for i in range(100) if shard_of(f"copier{i}", LAB, 2) != shard_of("good", LAB, 2))
    shutil.copytree(CLASS / "good", subs / copier)
    (subs / "ann" / "lab99").mkdir(parents=True)
    return subs


@pytest.fixture(scope="module")
def shards(small_class, tmp_path_factory) -> list[Path]:
    """The small class graded as shards 0/2 and 1/2 (each test merges copies of them)."""
    if SANDBOX_PROBLEM:
        pytest.skip(SANDBOX_PROBLEM)
    folder = tmp_path_factory.mktemp("shards")
    outs = [folder / f"shard{k}" for k in range(2)]
    for k, out in enumerate(outs):
        rlhf_course("grade", str(small_class), "--out", str(out), "--shard", f"{k}/2", *LIMITS)
    return outs


def _copies(shards: list[Path], dst: Path) -> list[Path]:
    return [Path(shutil.copytree(out, dst / out.name)) for out in shards]


@pytest.mark.slow
def test_merging_the_shards_gives_the_whole_class(small_class, shards, tmp_path, capsys):
    whole, merged = tmp_path / "whole", tmp_path / "merged"
    assert rlhf_course("grade", str(small_class), "--out", str(whole), "--jobs", "2", *LIMITS) == 1  # ann: unknown lab
    shards = _copies(shards, tmp_path)
    graded = [{row[0] for row in _rows(out / "grades.csv")[1:]} for out in shards]
    assert graded[0] and graded[1] and not graded[0] & graded[1], "each shard grades its own part of the class"
    capsys.readouterr()

    rc = rlhf_course("merge", str(small_class), *map(str, reversed(shards)), "--out", str(merged),
                     "--solutions", LIMITS[LIMITS.index("--solutions") + 1])
    assert rc == 1  # ann's unknown lab, as in the whole run
    assert _rows(merged / "grades.csv") == _rows(whole / "grades.csv")
    assert _rows(merged / "similarity.csv") == _rows(whole / "similarity.csv")
    flagged = {row[0]: row[-1] for row in _rows(merged / "grades.csv")[1:]}
    assert "similar to student good" in next(v for k, v in flagged.items() if k.startswith("copier"))
    for student in STUDENTS:
        assert (merged / "feedback" / student / f"{LAB}.html").read_text() == \
            (whole / "feedback" / student / f"{LAB}.html").read_text()
        assert (merged / "results" / student / f"{LAB}.json").is_file()


@pytest.mark.slow
def test_merge_refuses_a_missing_shard_and_reports_a_changed_submission(small_class, shards, tmp_path):
    subs = tmp_path / "subs"
    shutil.copytree(small_class, subs)
    shutil.rmtree(subs / "ann")
    shards = _copies(shards, tmp_path)  # graded from small_class: the notebooks of subs are the same
    solutions = ["--solutions", LIMITS[LIMITS.index("--solutions") + 1]]
    with pytest.raises(ValueError, match=r"shards \[1\] of 2 are missing"):
        from autograder.grading.batch import merge_shards

        merge_shards(subs, [shards[0]], tmp_path / "merged", Path(solutions[1]))
    # A learner resubmits after their shard was graded: the merge says so instead of keeping the old score.
    shutil.copy(CLASS / "blank" / LAB / f"{LAB}.ipynb", subs / "good" / LAB / f"{LAB}.ipynb")
    assert rlhf_course("merge", str(subs), *map(str, shards), "--out", str(tmp_path / "merged"), *solutions) == 1
    row = next(r for r in _rows(tmp_path / "merged" / "grades.csv") if r[0] == "good")
    assert "error" in row and any("changed since its shard" in cell for cell in row)
    # Grading into a shard's folder as another shard is refused (it would mix two shards' results).
    with pytest.raises(ValueError, match="holds shard 0/2"):
        from autograder.grading.batch import grade_class
        from autograder.grading.records import Settings

        grade_class(subs, shards[0], Path(solutions[1]), Settings(), shard=(1, 2))
