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
import json
import shutil
from pathlib import Path

import nbformat
from nbgrader import utils as nbutils

from autograder.cells import DEFINITIONS, definitions, grade_id, is_test_cell
from autograder.grading.equivalents import expand
from autograder.grading.judge import observation_program
from autograder.grading.references import Namespace, bound_here, python_source
from autograder.labs import find_labs, source_notebook

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
        names += [s.name for s in definitions(tree)]
    return list(dict.fromkeys(names))


def equivalents(source_nb) -> dict[str, list[str]]:
    """Graded name -> dotted paths of the library's ready-made equivalents (from cell metadata),
    each with its whole family (:mod:`autograder.grading.equivalents`)."""

    out: dict[str, list[str]] = {}
    for cell in _solution_code_cells(source_nb):
        paths = expand(list(cell.metadata.get(META_KEY, {}).get("equivalents", [])))
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for stmt in definitions(tree):
            out[stmt.name] = paths
    return out


def test_sources(source_nb) -> dict[str, str]:
    """grade_id -> source of every auto-graded test cell (hidden tests included)."""

    return {grade_id(c): c.source for c in source_nb.cells if is_test_cell(c)}


def kernel_sources(source_nb) -> list[str]:
    """The lab's own code as the grading kernel runs it: every code cell that is not the learner's
    (solution cells are), test cells as their observation programs (hidden tests included)."""

    out = []
    for cell in source_nb.cells:
        if cell.cell_type != "code" or nbutils.is_solution(cell):
            continue
        try:
            out.append(observation_program(cell.source) if is_test_cell(cell) else cell.source)
        except SyntaxError:
            out.append(cell.source)
    return out


def _carries(tree: ast.Module) -> dict[str, list[str]]:
    """The module's ``CARRIES`` dict: helper name -> graded names whose work it does."""
    for stmt in tree.body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
        if targets and stmt.value is not None and any(isinstance(t, ast.Name) and t.id == "CARRIES" for t in targets):
            value = ast.literal_eval(stmt.value)
            return {str(k): [str(n) for n in v] for k, v in value.items()}
    return {}


def stub_module(source: str, names: set[str], lab: str, module: str,
                unused: set[str] = frozenset()) -> tuple[str, list[str]]:
    """``source`` with each top-level def/class named in ``names`` (or carrying one of them,
    see ``CARRIES``), and each one named in ``unused`` (what the lab does not use of a module of
    answers), replaced by a raising stub; returns (new source, the names replaced)."""
    tree = ast.parse(source)
    names = set(names) | {helper for helper, carried in _carries(tree).items() if set(carried) & set(names)}
    lines = source.splitlines(keepends=True)
    replaced: list[tuple[int, int, str]] = []
    for stmt in definitions(tree):
        if stmt.name in names:
            message = (f"{module}.{stmt.name} is the kit's own answer to a graded exercise of {lab}, so it is "
                       f"not available while {lab} is graded: use your own {stmt.name}.")
        elif stmt.name in unused:
            message = (f"{module}.{stmt.name} is not part of {lab}: while {lab} is graded, the kit holds only "
                       f"what the lab itself uses. Write what you need yourself, or use what the lab imports.")
        else:
            continue
        start = min([stmt.lineno] + [d.lineno for d in stmt.decorator_list]) - 1
        replaced.append((start, stmt.end_lineno or stmt.lineno, STUB.format(name=stmt.name, message=message)))
    for start, end, text in sorted(replaced, reverse=True):
        lines[start:end] = [text]
    return "".join(lines), [r[2].split("(")[0].removeprefix("def ") for r in replaced]


MISSING_MODULE = '''raise ImportError({message!r})
'''


def _kit_imports(tree: ast.AST, package: str, modules: set[str]) -> set[tuple[str, str]]:
    """(module, name) for every use of the kit in ``tree``: a name imported from a module, or an
    attribute of a module bound to a name (``from rlhf_helpers import plots`` ... ``plots.x``);
    name ``*`` when a whole module is used otherwise."""
    out: set[tuple[str, str]] = set()
    aliases: dict[str, str] = {}  # local name -> module ("" for the package itself)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and (node.level or node.module.split(".")[0] == package):
            parts = ([package] if node.level else []) + node.module.split(".")
            if len(parts) == 1:  # from rlhf_helpers import sampling (a module) or a name of __init__
                for a in node.names:
                    if a.name in modules:
                        aliases[a.asname or a.name] = a.name
                    else:
                        out.add(("__init__", a.name))
            elif parts[1] in modules:
                out |= {(parts[1], "*" if a.name == "*" else a.name) for a in node.names}
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] != package:
                    continue
                if a.asname and len(parts) > 1 and parts[1] in modules:
                    aliases[a.asname] = parts[1]
                else:  # import rlhf_helpers[.ppo]: used as rlhf_helpers.ppo.x
                    aliases[a.asname or package] = ""
    if not aliases:
        return out
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            chain, cur = [], node
            while isinstance(cur, ast.Attribute):
                inner.add(id(cur))
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in aliases:
                inner.add(id(cur))
                chain = [aliases[cur.id], *reversed(chain)] if aliases[cur.id] else list(reversed(chain))
                if chain and chain[0] in modules:
                    out.add((chain[0], chain[1] if len(chain) > 1 else "*"))
        elif isinstance(node, ast.Name) and node.id in aliases and id(node) not in inner \
                and isinstance(node.ctx, ast.Load) and aliases[node.id]:
            out.add((aliases[node.id], "*"))  # the module itself passed around: all of it
    return out


def reached(package_dir: Path, sources: list[str]) -> dict[str, set[str]]:
    """What code ``sources`` (a lab's cells, as the kernel runs them) uses of the kit: module ->
    the top-level names reached (``*``: all), following each name's code (:mod:`autograder.grading.references`)
    into the other kit modules it imports, at module level always, inside a function when the
    function is reached. A reached function's strings that name the module's own functions count
    as uses (``globals()[name]`` tables)."""

    package = package_dir.name
    modules = {p.stem for p in package_dir.glob("*.py")}
    texts = {m: (package_dir / f"{m}.py").read_text(encoding="utf-8") for m in modules}
    spaces: dict[str, Namespace] = {}
    todo: list[tuple[str, str]] = [("__init__", "*")]
    cells = [ast.parse(text) for text in map(python_source, sources) if text]
    notebook = ast.Module(body=[stmt for tree in cells for stmt in tree.body], type_ignores=[])
    todo += sorted(_kit_imports(notebook, package, modules))  # one namespace: an import in one cell serves the next
    out: dict[str, set[str]] = {}
    while todo:
        module, name = todo.pop()
        if module not in modules or name in out.get(module, set()):
            continue
        if module not in out:
            out[module] = set()
            tree = ast.parse(texts[module])
            top = [stmt for stmt in tree.body if not isinstance(stmt, DEFINITIONS)]
            todo += sorted(_kit_imports(ast.Module(body=top, type_ignores=[]), package, modules))
            todo += [(module, n) for stmt in top for n, _kind, _path in _bound(stmt)]  # module-level code always runs
        out[module].add(name)
        if module not in spaces:  # read once (setdefault would read it again at every step)
            spaces[module] = Namespace([texts[module]])
        space = spaces[module]
        own = {b.name for b in space.bindings}
        for each in sorted(own if name == "*" else {name} & own):
            reach = space.reach(each)
            for b in reach.bindings:
                todo.append((module, b.name))
                if b.kind in ("def", "class"):
                    todo += [(module, n) for n in _all_strings(b.node) & own]
                todo += sorted(_kit_imports(b.node, package, modules))
            for path in sorted(reach.paths):
                parts = path.split(".")
                if parts[0] == package and len(parts) > 1 and parts[1] in modules:
                    todo.append((parts[1], parts[2] if len(parts) > 2 else "*"))
    return out


def _bound(stmt: ast.stmt) -> list:

    return bound_here(stmt)


def _all_strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value.isidentifier()}


def answer_modules(package_dir: Path, graded_names: set[str]) -> set[str]:
    """The kit modules that hold some lab's answers (a top-level name that a lab grades)."""
    out = set()
    for path in package_dir.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(getattr(stmt, "name", None) in graded_names for stmt in tree.body):
            out.add(path.stem)
    return out


def build_box_package(package_dir: Path, dst: Path, names: list[str], lab: str,
                      uses: dict[str, set[str]] | None = None, answers: set[str] = frozenset()) -> dict[str, list[str]]:
    """Write the sandbox's copy of the helper package to ``dst``: Python files only, the
    answer key of ``lab`` (``names``) stubbed, an empty ``world/`` to mount the models on.

    With ``uses`` (what the lab uses of the kit, :func:`reached`), a module the lab does not use is
    replaced by one that raises ImportError and says why, and in the modules that hold some lab's
    answers (``answers``, :func:`answer_modules`) every function and class the lab does not use is
    stubbed too: a later or earlier lab's code that computes this lab's values under another name
    is not there. Returns module -> names stubbed there (``*``: the whole module)."""
    modules = None if uses is None else set(uses)
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
            if modules is not None and len(rel.parts) == 1 and path.stem not in modules:
                target.write_text(MISSING_MODULE.format(message=(
                    f"{module} is not part of {lab}: while {lab} is graded, the kit holds only the modules the "
                    f"lab itself uses. Write what you need yourself, or use what the lab imports.")), encoding="utf-8")
                stubbed[module] = ["*"]
                continue
            source = path.read_text(encoding="utf-8")
            unused: set[str] = set()
            if uses is not None and len(rel.parts) == 1 and path.stem in answers and "*" not in uses[path.stem]:
                unused = {getattr(stmt, "name", "") for stmt in ast.parse(source).body} - uses[path.stem]
            text, done = stub_module(source, wanted, lab, module, unused)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            if done:
                stubbed[module] = done
        elif path.suffix in (".typed", ".json", ".jsonl", ".txt"):  # data the labs read (lab 8: recorded labels)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    (dst / "world").mkdir(exist_ok=True)
    return stubbed


MANIFEST = "manifest.json"
"""Beside the box's package: what the grader needs to know of the box (see :func:`lab_box`)."""


def handed_out(package_dir: Path, sources: list[str]) -> set[tuple[str, str]]:
    """(module, name) of the kit that the lab's own code uses directly (``*``: a whole module): the
    helpers a lab hands the learner."""

    modules = {p.stem for p in package_dir.glob("*.py")}
    cells = [ast.parse(text) for text in map(python_source, sources) if text]
    return _kit_imports(ast.Module(body=[stmt for tree in cells for stmt in tree.body], type_ignores=[]),
                        package_dir.name, modules)


def lab_box(package_dir: Path, solutions: Path, lab: str, dst: Path) -> dict[str, list[str]]:
    """The sandbox's copy of the helper package for grading ``lab`` (of the labs in ``solutions``),
    written to ``dst``: :func:`build_box_package` with what the lab uses and every lab's answers.
    Beside it, :data:`MANIFEST` lists the helpers the lab hands out and the kit callables to wire
    (reported when the learner's code calls them). Returns module -> names stubbed."""


    sources = {name: nbformat.read(source_notebook(solutions, name), as_version=4) for name in find_labs(solutions)}
    if lab not in sources:
        sources[lab] = nbformat.read(source_notebook(solutions, lab), as_version=4)
    answers = answer_modules(package_dir, {n for nb in sources.values() for n in learner_names(nb)})
    code = kernel_sources(sources[lab])
    uses = reached(package_dir, code)
    stubbed = build_box_package(package_dir, dst, learner_names(sources[lab]), lab, uses, answers)
    wires = sorted(f"{package_dir.name}.{module}:{getattr(stmt, 'name')}" for module in sorted(answers & set(uses))
                   for stmt in definitions(ast.parse((package_dir / f"{module}.py").read_text(encoding="utf-8")))
                   if not stmt.name.startswith("_"))
    manifest = {"lab": lab, "answers": sorted(answers), "handed_out": sorted(map(list, handed_out(package_dir, code))),
                "wires": wires, "stubbed": stubbed}
    (dst.parent / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return stubbed
