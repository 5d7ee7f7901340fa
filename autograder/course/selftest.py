"""A fast check for lab authors: do the lab's tests pass on the solution and
fail on the blank copy, silently?

    python -m autograder.course.selftest solutions/lab1_sampling/lab1_sampling.ipynb

1. Executes the source notebook top to bottom (a fresh kernel, the lab's
   folder as working directory) and reports its wall time.
2. Checks every autograded test cell: no error, nothing on stderr, no value
   (nbgrader reads a numeric value as partial credit, and stderr as failure).
3. Makes the blank copy with nbgrader's ``ClearSolutions`` and executes it with
   errors allowed: every autograded test cell must fail.

This is a developer's shortcut, not the grader: ``rlhf-course grade`` and
``tests/labs/test_labs.py`` are the authority (hidden tests, sandbox, gradebook).
Exit status 0 when every check holds.

    python -m autograder.course.selftest --grade lab1_sampling [--solutions DIR] [--jobs N]

grades, through ``rlhf-course grade`` itself (sandbox, observe and judge),
four copies of the lab: the solution (must earn full marks), the blank copy, a
*stub* whose graded functions always raise ValueError (:func:`stub_copy`) and a
*cheat* whose every graded function is taken from the kit's own answer key in a
different spelling (:func:`cheat_copy`; the last three must earn nothing).
"""

from __future__ import annotations

import ast
import copy
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbgrader.preprocessors import ClearSolutions

from autograder.cells import definitions, grade_id, is_test_cell


def _execute(nb, cwd: Path, allow_errors: bool, timeout: int) -> float:
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return time.perf_counter() - start


def _problems(cell) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        if o.output_type == "error":
            out.append(f"raised {o.ename}: {o.evalue[:200]}")
        elif o.output_type == "stream" and o.name == "stderr":
            out.append(f"wrote to stderr: {o.text[:200]!r}")
        elif o.output_type == "execute_result":
            out.append("ends with a value (make the last line a statement)")
    return out


def selftest(path: str, timeout: int = 300) -> int:
    src = Path(path)
    nb = nbformat.read(src, as_version=4)
    tests = [grade_id(c) for c in nb.cells if is_test_cell(c)]
    print(f"{src}: {len(tests)} autograded test cells")
    ok = True

    solved = copy.deepcopy(nb)
    seconds = _execute(solved, src.parent, allow_errors=True, timeout=timeout)
    print(f"solution executed in {seconds:.1f} s")
    for cell in solved.cells:
        if cell.cell_type == "code" and not is_test_cell(cell):
            errs = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if errs:
                ok = False
                print(f"  ERROR in a non-test cell: {errs[0].ename}: {errs[0].evalue[:300]}\n    {cell.source[:120]!r}")
        if is_test_cell(cell):
            problems = _problems(cell)
            ok &= not problems
            print(f"  [{'ok' if not problems else 'FAIL'}] solution  {grade_id(cell)}"
                  + "".join(f"\n        {p}" for p in problems))

    blank = copy.deepcopy(nb)
    blank, _ = ClearSolutions().preprocess(blank, {})
    seconds = _execute(blank, src.parent, allow_errors=True, timeout=timeout)
    print(f"blank copy executed in {seconds:.1f} s")
    for cell in blank.cells:
        if is_test_cell(cell):
            failed = any(o.output_type == "error" for o in cell.get("outputs", []))
            ok &= failed
            print(f"  [{'ok' if failed else 'FAIL: passes on the blank copy'}] blank     "
                  f"{grade_id(cell)}")
    print("selftest:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


# --------------------------------------------------------------------------- graded, with cheats

CHEATS = [
    "from rlhf_helpers.{mod} import {name}",
    "import importlib\n{name} = getattr(importlib.import_module('rlhf_helpers.{mod}'), '{name}')",
    "def {name}(*args, **kwargs):\n    import sys, rlhf_helpers.{mod}\n"
    "    return sys.modules['rlhf_helpers.{mod}'].__dict__['{name}'](*args, **kwargs)",
    "import rlhf_helpers.{mod} as _kit_module\n_kit_space = {{}}\n"
    "exec(compile(open(_kit_module.__file__).read(), _kit_module.__file__, 'exec'), _kit_space)\n"
    "{name} = _kit_space['{name}']",
    "import glob, importlib.util, os, rlhf_helpers\n"
    "_pyc = glob.glob(os.path.join(os.path.dirname(rlhf_helpers.__file__), '**', '{mod}*.pyc'), recursive=True)\n"
    "if _pyc:\n    _spec = importlib.util.spec_from_file_location('_kit_pyc', _pyc[0])\n"
    "    _m = importlib.util.module_from_spec(_spec)\n    _spec.loader.exec_module(_m)\n    {name} = _m.{name}\n"
    "else:\n    from rlhf_helpers.{mod} import {name}",
]
"""Ways to take the kit's own answer instead of writing it: import, importlib, sys.modules,
exec of the module's source, and its bytecode. None may earn a point in the grader."""


def kit_modules(package: Path) -> dict[str, str]:
    """Top-level function or class name -> the kit module (``sampling``, ...) that defines it."""
    found: dict[str, str] = {}
    for path in sorted(package.glob("*.py")):
        for stmt in definitions(ast.parse(path.read_text())):
            found.setdefault(stmt.name, path.stem)
    return found


def cheat_copy(source_nb, released_nb, package: Path):
    """The released notebook with every graded function the kit also defines taken from the kit."""
    from autograder.grading.answer_key import learner_names

    where = kit_modules(package)
    nb = copy.deepcopy(released_nb)
    names_by_cell = {}
    for cell in source_nb.cells:
        gid = grade_id(cell)
        if gid and cell.metadata.nbgrader.get("solution") and cell.cell_type == "code":
            fake = nbformat.v4.new_notebook(cells=[cell])
            names_by_cell[gid] = [n for n in learner_names(fake) if n in where]
    n = 0
    for cell in nb.cells:
        gid = grade_id(cell)
        if names_by_cell.get(gid):
            lines = []
            for name in names_by_cell[gid]:
                lines.append(CHEATS[n % len(CHEATS)].format(mod=where[name], name=name))
                n += 1
            cell.source = "\n".join(lines)
    return nb


def stub_copy(released_nb, exc: str = "ValueError"):
    """The released notebook with every graded function and class a stub that always raises
    ``exc`` (a test that such a stub can pass is a defect; error tests pay only after value tests)."""
    nb = copy.deepcopy(released_nb)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            cell.source = cell.source.replace("raise NotImplementedError()", f"raise {exc}('a stub that always raises')")
    return nb


def grade_check(lab: str, solutions: Path, jobs: int = 2) -> int:
    """Grade the solution, blank and cheat copies of ``lab``; 0 when they score full, 0 and 0."""
    import tempfile

    import rlhf_helpers

    from autograder.course.release import build_release
    from autograder.labs import source_notebook
    from autograder.grading.records import Settings
    from autograder.grading.batch import grade_class

    with tempfile.TemporaryDirectory(prefix="rlhf-selftest-") as tmp:
        root = Path(tmp)
        build_release(solutions, root / "released", [lab])
        source = nbformat.read(source_notebook(solutions, lab), as_version=4)
        released = nbformat.read(root / "released" / lab / f"{lab}.ipynb", as_version=4)
        answers = {grade_id(c): c.source for c in source.cells
                   if c.metadata.get("nbgrader", {}).get("solution")}
        solved = copy.deepcopy(released)
        for cell in solved.cells:
            gid = grade_id(cell)
            if gid in answers:
                cell.source = answers[gid]
        copies = {"solution": solved, "blank": released, "stub": stub_copy(released),
                  "cheat": cheat_copy(source, released, Path(rlhf_helpers.__file__).parent)}
        for who, nb in copies.items():
            (root / "subs" / who / lab).mkdir(parents=True)
            nbformat.write(nb, root / "subs" / who / lab / f"{lab}.ipynb")
        records = {r.student_id: r for r in grade_class(root / "subs", root / "out", solutions, Settings(jobs=jobs))}
        graded = root / "out" / "course" / "autograded" / "solution" / lab / f"{lab}.ipynb"
        broken = []
        if graded.is_file():  # the rest of the lab must work in the box too (with the learner's own functions)
            for i, cell in enumerate(nbformat.read(graded, as_version=4).cells):
                if cell.cell_type == "code" and not is_test_cell(cell):
                    broken += [f"cell {i}: {o.ename}: {str(o.evalue)[:200]}" for o in cell.get("outputs", [])
                               if o.output_type == "error"]
    ok = True
    for who, rec in records.items():
        tests = [c for c in rec.cells if c.kind == "test"]
        want_full = who == "solution"
        bad = [c.grade_id for c in tests if (c.score != c.max) == want_full]
        ok &= rec.graded and not bad
        print(f"{who:9s} {rec.auto_score}/{rec.auto_max} in {rec.seconds:.0f} s" + (f"  WRONG: {bad}" if bad else "  ok"))
        for note in rec.notes:
            print(f"    - {note[:300]}")
    for line in broken:
        print(f"  ERROR in the solution's non-test {line}")
    ok &= not broken
    print(f"selftest --grade {lab}:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--grade":
        sols = Path(args[args.index("--solutions") + 1]) if "--solutions" in args else Path("solutions")
        n_jobs = int(args[args.index("--jobs") + 1]) if "--jobs" in args else 2
        sys.exit(grade_check(args[1], sols, n_jobs))
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(selftest(args[0]))
