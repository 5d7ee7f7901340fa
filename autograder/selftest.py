"""A fast check for lab authors: do the lab's tests pass on the solution and
fail on the blank copy, silently?

    python -m autograder.selftest solutions/lab1_sampling/lab1_sampling.ipynb

1. Executes the source notebook top to bottom (a fresh kernel, the lab's
   folder as working directory) and reports its wall time.
2. Checks every autograded test cell: no error, nothing on stderr, no value
   (nbgrader reads a numeric value as partial credit, and stderr as failure).
3. Makes the blank copy with nbgrader's ``ClearSolutions`` and executes it with
   errors allowed: every autograded test cell must fail.

This is a developer's shortcut, not the grader: ``rlhf-course grade`` and
``tests/test_labs.py`` are the authority (hidden tests, sandbox, gradebook).
Exit status 0 when every check holds.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbgrader.preprocessors import ClearSolutions


def _is_test(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and meta.get("grade") and not meta.get("solution")


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
    tests = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if _is_test(c)]
    print(f"{src}: {len(tests)} autograded test cells")
    ok = True

    solved = copy.deepcopy(nb)
    seconds = _execute(solved, src.parent, allow_errors=True, timeout=timeout)
    print(f"solution executed in {seconds:.1f} s")
    for cell in solved.cells:
        if cell.cell_type == "code" and not _is_test(cell):
            errs = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if errs:
                ok = False
                print(f"  ERROR in a non-test cell: {errs[0].ename}: {errs[0].evalue[:300]}\n    {cell.source[:120]!r}")
        if _is_test(cell):
            problems = _problems(cell)
            ok &= not problems
            print(f"  [{'ok' if not problems else 'FAIL'}] solution  {cell.metadata.nbgrader.grade_id}"
                  + "".join(f"\n        {p}" for p in problems))

    blank = copy.deepcopy(nb)
    blank, _ = ClearSolutions().preprocess(blank, {})
    seconds = _execute(blank, src.parent, allow_errors=True, timeout=timeout)
    print(f"blank copy executed in {seconds:.1f} s")
    for cell in blank.cells:
        if _is_test(cell):
            failed = any(o.output_type == "error" for o in cell.get("outputs", []))
            ok &= failed
            print(f"  [{'ok' if failed else 'FAIL: passes on the blank copy'}] blank     "
                  f"{cell.metadata.nbgrader.grade_id}")
    print("selftest:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(selftest(sys.argv[1]))
