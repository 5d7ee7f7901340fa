"""Copying, made visible to the instructor (never zeroed automatically).

For each lab, ``grade`` compares the code every learner wrote for the graded
functions with every other learner's, with the lab's ``solutions/`` and with
the kit's own reference implementations, using copydetect (winnowed
fingerprints of the tokenised code: names, strings, comments and formatting
do not matter). The lab's given code (signatures, docstrings) is boilerplate
and does not count; unanswered functions are left out.

It writes ``similarity/<lab>.html`` (copydetect's report, copied code
highlighted side by side) and one ``similarity.csv`` row per pair at or above
:data:`REPORT_AT`; a learner whose similarity to another source reaches
:data:`FLAG_AT` gets a ``flags`` entry in ``grades.csv``. The instructor decides.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.grading import answer_key as AK
from autograder.cells import definitions

REPORT_AT = 0.5
"""Pairs at least this similar go into similarity.csv and the HTML report."""
FLAG_AT = 0.8
"""A learner at least this similar to another source is flagged in grades.csv."""
MIN_SHARED = 20
"""A pair shares at least this many tokens to be flagged: a one-line stub is not a copy."""
NOISE_T, GUARANTEE_T = 10, 15
"""copydetect's k-gram lengths (filtered characters): short, because graded functions are short."""
SOLUTIONS, KIT = "(solutions)", "(the kit's reference)"


@dataclass
class Pair:
    lab: str
    student: str
    other: str
    similarity: float
    other_similarity: float
    tokens: int


def _answered(stmt: ast.AST) -> bool:
    """False for a definition the learner left as given: a function whose body (after its docstring)
    is only ``raise NotImplementedError(...)``, or a class made only of such functions. (A raise
    the learner put in front of copied code, ``if False: raise NotImplementedError()``, does not
    make it unanswered.)"""
    if isinstance(stmt, ast.ClassDef):
        members = [s for s in _without_docstring(stmt.body) if not isinstance(s, ast.Pass)]
        return not members or any(_answered(s) for s in members)
    if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return True
    body = _without_docstring(stmt.body)
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return True
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return not (isinstance(exc, ast.Name) and exc.id == "NotImplementedError")


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def normalized(code: str) -> str:
    """``code`` as the similarity report compares it: parsed and printed again (layout, comments and
    docstrings gone), every function cut to the statements its results depend on (a backward slice
    from its returns, raises and yields), so no-op statements interleaved in a copy do not hide it."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.body = _without_docstring(node.body) or [ast.Pass()]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
            local |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            node.body = _slice(node.body, set(), local) or [ast.Pass()]
    return ast.unparse(tree)


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _roots(targets: list[ast.AST]) -> set[str]:
    out = set()
    for t in targets:
        while isinstance(t, (ast.Attribute, ast.Subscript, ast.Starred)):
            t = t.value
        out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


_ALWAYS = (ast.Return, ast.Raise, ast.Assert, ast.Global, ast.Nonlocal, ast.FunctionDef, ast.AsyncFunctionDef,
           ast.ClassDef, ast.Break, ast.Continue)


def _slice(stmts: list[ast.stmt], live: set[str], local: set[str]) -> list[ast.stmt]:
    """The statements of ``stmts`` that what follows them (``live`` names) and their own results need;
    ``live`` grows with the function's ``local`` names the kept statements read. Two passes stand in
    for loops."""
    kept: list[ast.stmt] = []
    for _ in range(2):
        kept = []
        for st in reversed(stmts):
            keep, reads = _keep(st, live, local)
            if keep:
                kept.append(keep)
                live |= reads & local
    return list(reversed(kept))


def _keep(st: ast.stmt, live: set[str], local: set[str]) -> tuple[ast.stmt | None, set[str]]:
    if isinstance(st, _ALWAYS) or (isinstance(st, ast.Expr) and isinstance(st.value, (ast.Yield, ast.YieldFrom, ast.Await))):
        return st, _loads(st)
    if isinstance(st, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = st.targets if isinstance(st, ast.Assign) else [st.target]
        return (st, _loads(st)) if _roots(targets) & live else (None, set())
    if isinstance(st, (ast.Import, ast.ImportFrom)):
        names = {(a.asname or a.name).split(".")[0] for a in st.names}
        return (st, set()) if names & live else (None, set())
    if isinstance(st, ast.Expr):
        return (st, _loads(st)) if _loads(st) & live else (None, set())
    fields = [f for f in ("body", "orelse", "finalbody") if isinstance(getattr(st, f, None), list)]
    if fields or isinstance(st, ast.Try):
        new = False
        for f in fields:
            inner = _slice(getattr(st, f), live, local)
            new = new or bool(inner)
            setattr(st, f, inner or ([ast.Pass()] if f == "body" else []))
        for handler in getattr(st, "handlers", []) or []:
            inner = _slice(handler.body, live, local)
            new = new or bool(inner)
            handler.body = inner or [ast.Pass()]
        if not new:
            return None, set()
        head = [getattr(st, a) for a in ("test", "iter", "target", "items") if getattr(st, a, None) is not None]
        reads = set().union(*(_loads(h) if isinstance(h, ast.AST) else set().union(*map(_loads, h)) for h in head)) \
            if head else set()
        if isinstance(st, (ast.For, ast.AsyncFor)):
            reads |= _roots([st.target])
        return st, reads
    return st, _loads(st)


def graded_code(sources: list[str], names: list[str]) -> str:
    """The learner's code for the graded ``names`` (answered ones only), as one text: each
    function with the notebook code it relies on (its helpers, aliases, decorators; see
    :mod:`autograder.grading.references`), so a copy moved into a helper or rebound under the graded
    name reads like a plain copy."""
    from autograder.grading.references import Namespace

    namespace = Namespace(list(sources))
    texts: list[str] = []
    shown: set[int] = set()
    for name in names:
        binding = namespace.lookup(name)
        if binding is None or not _answered(binding.node):
            continue
        for b in namespace.reach(name).bindings:
            if b.kind != "import" and id(b.node) not in shown:
                shown.add(id(b.node))
                texts.append(b.segment())
    return "\n\n".join(t for t in texts if t)


def _notebook_code(path: Path) -> list[str]:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook has no code to compare
        return []
    return [c.source for c in nb.cells if c.cell_type == "code"]


def kit_code(package: Path | None, names: list[str]) -> str:
    """The kit's reference definitions of ``names`` (from the real package, outside any box), each
    with the module's own helpers it relies on, read as :func:`graded_code` reads a learner's: a
    learner's copy carries the helpers along, so the reference it is compared with does too."""
    if package is None:
        return ""
    parts = []
    for path in sorted(package.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        defined = [stmt.name for stmt in definitions(ast.parse(text)) if stmt.name in names]
        if defined:
            parts.append(graded_code([text], defined))
    return "\n\n".join(p for p in parts if p)


def compare_lab(lab: str, notebooks: dict[str, Path], source_nb, released_nb, package: Path | None,
                html_out: Path) -> list[Pair]:
    """All pairs at or above :data:`REPORT_AT` for one lab; writes the HTML report when there are any."""
    from copydetect import CopyDetector

    names = AK.learner_names(source_nb)
    with tempfile.TemporaryDirectory(prefix="rlhf-similar-") as tmp:
        root = Path(tmp)
        subs, refs, given = root / "submissions", root / "references", root / "given"
        for d in (subs, refs, given):
            d.mkdir()
        for student, path in notebooks.items():
            code = graded_code(_notebook_code(path), names)
            if code.strip():
                (subs / f"{student}.py").write_text(normalized(code) + "\n")
        solutions = graded_code([c.source for c in source_nb.cells if c.cell_type == "code"], names)
        (refs / f"{SOLUTIONS}.py").write_text(normalized(_strip_markers(solutions)) + "\n")
        kit = kit_code(package, names)
        if kit:
            (refs / f"{KIT}.py").write_text(normalized(kit) + "\n")
        given_code = [normalized(c.source) for c in released_nb.cells if c.cell_type == "code"]
        (given / "given.py").write_text("\n\n".join(given_code) + "\n")
        if not any(subs.iterdir()):
            return []
        html_out.parent.mkdir(parents=True, exist_ok=True)
        detector = CopyDetector(test_dirs=[str(subs)], ref_dirs=[str(subs), str(refs)], boilerplate_dirs=[str(given)],
                                extensions=["py"], noise_t=NOISE_T, guarantee_t=GUARANTEE_T, display_t=REPORT_AT,
                                autoopen=False, silent=True, out_file=str(html_out))
        # copydetect lists files through a set, so its order (and which way round a pair is compared,
        # which moves the figures a little) changes between runs: compare in name order, always.
        detector.test_files, detector.ref_files = sorted(detector.test_files), sorted(detector.ref_files)
        with _quiet():
            detector.run()
        pairs = []
        for test_sim, ref_sim, test_f, ref_f, _hl1, _hl2, tokens in detector.get_copied_code_list():
            a, b, sim_a, sim_b = Path(test_f).stem, Path(ref_f).stem, round(float(test_sim), 3), round(float(ref_sim), 3)
            if b not in (SOLUTIONS, KIT) and b < a:  # copydetect's direction follows file order: name order instead
                a, b, sim_a, sim_b = b, a, sim_b, sim_a
            pairs.append(Pair(lab, a, b, sim_a, sim_b, int(tokens)))
        if pairs:
            with _quiet():
                detector.generate_html_report()
        return pairs


def _strip_markers(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


@contextlib.contextmanager
def _quiet():
    logging.getLogger().disabled, was = True, logging.getLogger().disabled
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.getLogger().disabled = was


def write_csv(path: Path, pairs: list[Pair]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lab_id", "student_id", "similar_to", "similarity", "similarity_of_other", "shared_tokens"])
        for p in sorted(pairs, key=lambda p: (p.lab, -p.similarity, p.student, p.other)):
            w.writerow([p.lab, p.student, p.other, f"{p.similarity:.3f}", f"{p.other_similarity:.3f}", p.tokens])
    tmp.replace(path)


def flags(pairs: list[Pair]) -> dict[tuple[str, str], list[str]]:
    """(student, lab) -> the flags for grades.csv, most similar first."""
    found: list[tuple[float, str, str, str]] = []
    for p in pairs:
        found.append((p.similarity, p.student, p.lab, p.other if p.other in (SOLUTIONS, KIT) else f"student {p.other}"))
        if p.other not in (SOLUTIONS, KIT):  # copydetect lists each pair of learners once
            found.append((p.other_similarity, p.other, p.lab, f"student {p.student}"))
    out: dict[tuple[str, str], list[str]] = {}
    tokens = {(p.student, p.lab, p.other): p.tokens for p in pairs}
    for sim, student, lab, who in sorted(found, key=lambda f: -f[0]):
        shared = max(tokens.get((student, lab, who.removeprefix("student ")), 0),
                     tokens.get((who.removeprefix("student "), lab, student), 0))
        if sim >= FLAG_AT and shared >= MIN_SHARED and f"similar to {who}" not in " ".join(out.get((student, lab), [])):
            out.setdefault((student, lab), []).append(f"similar to {who} ({sim:.2f})")
    return out


def report(out: Path, course: Path, labs: list[str], notebooks: dict[str, dict[str, Path]],
           package: Path | None) -> dict[tuple[str, str], list[str]]:
    """Compare every lab's submissions (``notebooks[lab][student]``); write ``similarity.csv`` and
    ``similarity/<lab>.html`` under ``out``; return the flags for grades.csv."""
    pairs: list[Pair] = []
    for lab in labs:
        if not notebooks.get(lab):
            continue
        source = nbformat.read(course / "source" / lab / f"{lab}.ipynb", as_version=4)
        released = nbformat.read(course / "release" / lab / f"{lab}.ipynb", as_version=4)
        html = out / "similarity" / f"{lab}.html"
        html.unlink(missing_ok=True)
        pairs += compare_lab(lab, notebooks[lab], source, released, package, html)
    write_csv(out / "similarity.csv", pairs)
    return flags(pairs)
