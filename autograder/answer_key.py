"""Keep the answer key out of the grading sandbox.

The kit carries a working version of every graded function (``rlhf_helpers``'
reference implementations: demos, widgets and later labs use them, and the
judge checks against them). While lab N is graded, none of lab N's must be
reachable from the learner's kernel, by any spelling. So the sandbox does not
see the real package: it sees a copy made by :func:`build_box_package`, in
which every top-level function or class whose name the lab's solution cells
define is replaced by a stub that raises and says why. The copy has no
bytecode, and the real files are not mounted, so neither ``import``,
``importlib``, ``sys.modules``, reading the source nor unmarshalling a
``.pyc`` finds the original. Other kit code that calls such a function gets
the stub too: the lab passes the learner's own version where a helper needs one.

Some kit helpers do a graded function's work under another name (the kit's
``generate_ids`` is the decoding loop that lab 1's ``generate_text`` asks
for). Their module says so in a module-level dict, ``CARRIES = {"generate_ids":
["generate_text"]}``, and the box stubs them together with what they carry.

A lab's source says, per solution cell, which library classes or functions do
the same job (metadata ``rlhf_course.equivalents``): the judge refuses the
points of a graded function that hands its work to one of them.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from nbgrader import utils as nbutils

STUB = '''def {name}(*args, **kwargs):
    raise RuntimeError({message!r})
'''
META_KEY = "rlhf_course"


def _solution_code_cells(source_nb) -> list:
    return [c for c in source_nb.cells if c.cell_type == "code" and nbutils.is_solution(c) and not nbutils.is_grade(c)]


def learner_names(source_nb) -> list[str]:
    """Names the learner writes: top-level functions and classes of the lab's solution cells."""
    names: list[str] = []
    for cell in _solution_code_cells(source_nb):
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        names += [s.name for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return list(dict.fromkeys(names))


def equivalents(source_nb) -> dict[str, list[str]]:
    """Graded name -> dotted paths of the library's ready-made equivalents (from cell metadata)."""
    out: dict[str, list[str]] = {}
    for cell in _solution_code_cells(source_nb):
        paths = list(cell.metadata.get(META_KEY, {}).get("equivalents", []))
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out[stmt.name] = paths
    return out


def test_sources(source_nb) -> dict[str, str]:
    """grade_id -> source of every auto-graded test cell (hidden tests included)."""
    from .course import is_test_cell

    return {c.metadata.nbgrader["grade_id"]: c.source for c in source_nb.cells if is_test_cell(c)}


def _carries(tree: ast.Module) -> dict[str, list[str]]:
    """The module's ``CARRIES`` dict: helper name -> graded names whose work it does."""
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if targets and stmt.value is not None and any(isinstance(t, ast.Name) and t.id == "CARRIES" for t in targets):
            value = ast.literal_eval(stmt.value)
            return {str(k): [str(n) for n in v] for k, v in value.items()}
    return {}


def stub_module(source: str, names: set[str], lab: str, module: str) -> tuple[str, list[str]]:
    """``source`` with each top-level def/class named in ``names`` (or carrying one of them,
    see ``CARRIES``) replaced by a raising stub; returns (new source, the names replaced)."""
    tree = ast.parse(source)
    names = set(names) | {helper for helper, carried in _carries(tree).items() if set(carried) & set(names)}
    lines = source.splitlines(keepends=True)
    replaced: list[tuple[int, int, str]] = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and stmt.name in names:
            start = min([stmt.lineno] + [d.lineno for d in stmt.decorator_list]) - 1
            message = (f"{module}.{stmt.name} is the kit's own answer to a graded exercise of {lab}, so it is "
                       f"not available while {lab} is graded: use your own {stmt.name}.")
            replaced.append((start, stmt.end_lineno or stmt.lineno, STUB.format(name=stmt.name, message=message)))
    for start, end, text in sorted(replaced, reverse=True):
        lines[start:end] = [text]
    return "".join(lines), [r[2].split("(")[0].removeprefix("def ") for r in replaced]


def build_box_package(package_dir: Path, dst: Path, names: list[str], lab: str) -> dict[str, list[str]]:
    """Write the sandbox's copy of the helper package to ``dst``: Python files only, the
    answer key of ``lab`` (``names``) stubbed, an empty ``world/`` to mount the models on.
    Returns module -> names stubbed there."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    stubbed: dict[str, list[str]] = {}
    wanted = set(names)
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir)
        if "__pycache__" in rel.parts or rel.parts[0] == "world":
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.suffix == ".py":
            module = ".".join((package_dir.name, *rel.with_suffix("").parts)).removesuffix(".__init__")
            text, done = stub_module(path.read_text(encoding="utf-8"), wanted, lab, module)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            if done:
                stubbed[module] = done
        elif path.suffix in (".typed", ".json", ".jsonl", ".txt"):  # data the labs read (lab 8: recorded labels)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    (dst / "world").mkdir(exist_ok=True)
    return stubbed
