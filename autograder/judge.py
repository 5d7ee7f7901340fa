"""Observe inside, judge outside: how a test cell's verdict is reached.

A graded test cell is written once, in the lab's source, and used three ways
(see :mod:`rlhf_helpers.observations` for the learner's side):

1. :func:`observation_program` cuts it down to what the learner's kernel
   needs to run: the inputs and the ``observe(lambda: ...)`` /
   ``attempt(lambda: ...)`` calls. Every check call (``assert_*``), ``assert``
   statement and ``if JUDGE:`` block is removed, so the kernel never sees an
   expected value, a reference implementation or a hint of the hidden tests.
2. The grader runs that program in the sandboxed kernel; each thunk's outcome
   comes back as a display output (:data:`rlhf_helpers.observations.MIME`).
3. :func:`judge_test` runs the whole cell again here, in the grader's own
   process, with the learner's names undefined and the kernel's outcomes
   replayed in order. Its checks decide. Nothing the learner's code did to its
   own kernel (rebinding ``torch.allclose``, the check helpers,
   ``AssertionError``, ``sys.excepthook``, IPython's ``showtraceback`` or the
   reporting channel) reaches this process; a kernel can only report values,
   and only correct values pass.

:func:`handoffs` reads the learner's own code for the ready-made equivalents
a lab names for each graded function (``transformers.TopKLogitsWarper`` for
``top_k_filter``...); the sandbox also trips on them while a thunk runs.
:func:`test_cell_problems` checks a source test cell for the rules above when
a lab is released.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

CHECK_PREFIXES = ("assert_",)
OBSERVERS = ("observe", "attempt")
JUDGE_FLAG = "JUDGE"
NOT_OBSERVED = "NotObserved"
HANDED_OFF = "HandedOff"
KERNEL_TYPE_CHECKS = ("isinstance", "issubclass", "type")
"""Calls a test cell must not make on the kernel's side: a type is decided by the judge."""


# ============================================================================ the observation program

def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
    return ""


def _is_observer(node: ast.AST) -> bool:
    return _call_name(node) in OBSERVERS


def _is_judge_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == JUDGE_FLAG


def _is_check(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assert):
        return True
    return isinstance(node, ast.Expr) and _call_name(node.value).startswith(CHECK_PREFIXES)


def _observers_in(node: ast.AST) -> list[ast.Call]:
    """Outermost observe/attempt calls inside ``node``, in evaluation order."""
    found: list[ast.Call] = []

    def visit(n: ast.AST) -> None:
        if _is_observer(n):
            found.append(n)  # type: ignore[arg-type]
            return
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(node)
    return found


def _strip_body(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for stmt in body:
        if _is_judge_block(stmt):
            out += _strip_body(stmt.orelse)  # type: ignore[attr-defined]
            continue
        if _is_check(stmt):
            out += [ast.Expr(value=call) for call in _observers_in(stmt)]
            continue
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                kept = _strip_body(inner)
                setattr(stmt, name, kept or ([ast.Pass()] if name == "body" else []))
        if isinstance(stmt, ast.Try):
            for handler in stmt.handlers:
                handler.body = _strip_body(handler.body) or [ast.Pass()]
        out.append(stmt)
    return out


def observation_program(source: str) -> str:
    """The part of a test cell the learner's kernel runs: inputs and observations only."""
    tree = ast.parse(source)
    tree.body = _strip_body(tree.body)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree) + "\n"


# ============================================================================ checking a source test cell

def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
    return names


def _loads_outside_functions(tree: ast.AST) -> list[tuple[str, int]]:
    """(name, line) of every name read at statement level (not inside a lambda or a def)."""
    out: list[tuple[str, int]] = []

    def visit(n: ast.AST) -> None:
        if isinstance(n, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
            if not isinstance(n, ast.Lambda):
                for d in n.decorator_list:
                    visit(d)
            return
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            out.append((n.id, n.lineno))
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(tree)
    return out


def _kernel_type_check(node: ast.AST) -> bool:
    """A type decided in the kernel: ``type(x)``, ``issubclass(...)``, or ``isinstance(x, T)`` for any
    ``T`` but ``torch.Tensor`` (a guard before autograd: tensors reach the judge with their exact type)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in KERNEL_TYPE_CHECKS):
        return False
    if node.func.id == "isinstance" and len(node.args) == 2:
        return ast.unparse(node.args[1]) != "torch.Tensor"
    return True


def test_cell_problems(source: str, learner_names: set[str]) -> list[str]:
    """What is wrong with a source test cell under the observe/judge rules (empty when fine)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"does not parse ({exc.msg}, line {exc.lineno})"]
    problems = []
    for name, line in _loads_outside_functions(tree):
        if name in learner_names:
            problems.append(f"line {line} uses the learner's {name} outside observe(lambda: ...)/attempt(...): "
                            "the checking side never runs the learner's code")
    for node in ast.walk(tree):
        if _is_judge_block(node) and any(_is_observer(n) for n in ast.walk(node)):
            problems.append(f"line {node.lineno}: an `if {JUDGE_FLAG}:` block must not observe anything "
                            "(the learner's kernel never runs it)")
    known_here = _bound_names(tree) | set(dir(builtins)) | learner_names
    for name, line in _loads_outside_functions(tree):
        if name not in known_here:
            problems.append(f"line {line} uses {name!r}, which the cell neither imports nor defines: test cells are "
                            "checked in a fresh namespace, so import everything they use")
            known_here.add(name)
    try:
        program = ast.parse(observation_program(source))
    except SyntaxError as exc:  # pragma: no cover - unparse of a parsed tree
        return problems + [f"its observation program does not parse ({exc.msg})"]
    if not any(_is_observer(n) for n in ast.walk(program)):
        problems.append("observes nothing: call the learner's code through observe(lambda: ...) or attempt(...)")
    for node in ast.walk(program):
        if _kernel_type_check(node):
            problems.append(f"line {node.lineno}: {node.func.id}(...) runs in the learner's kernel, where a fake object "
                            f"can pass it: report the object (or type_of(obj)) and check it with assert_type")
    known = _bound_names(program) | set(dir(builtins)) | set(OBSERVERS) | learner_names
    for name, _line in _loads_outside_functions(program):
        if name not in known:
            problems.append(f"the learner's kernel would need {name!r}, which only the checking side defines: "
                            f"move what uses it into an `if {JUDGE_FLAG}:` block, or define it outside one")
            known.add(name)
    return problems


# ============================================================================ the ready-made equivalents

def learner_definitions(sources: list[str]) -> dict[str, ast.stmt]:
    """The last top-level statement that binds each name in the learner's code cells."""
    found: dict[str, ast.stmt] = {}
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[stmt.name] = stmt
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                for a in stmt.names:
                    found[(a.asname or a.name).split(".")[0]] = stmt
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for t in targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            found[n.id] = stmt
    return found


def _identifiers(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """(attribute and imported names plus non-docstring strings, bare names) used in ``stmt``."""
    docstrings = set()
    for node in ast.walk(stmt):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    strong, names = set(), set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Attribute):
            strong.add(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                strong.update(a.name.split("."))
            if isinstance(node, ast.ImportFrom) and node.module:
                strong.update(node.module.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.strip()  # a name spelled as a string (getattr, import_module): the whole string
            if all(part.isidentifier() for part in text.split(".")):
                strong.update(text.split("."))
        elif isinstance(node, ast.Name):
            names.add(node.id)
    return strong, names


def handoffs(learner_sources: list[str], graded: dict[str, list[str]], kit_package: str = "rlhf_helpers") -> dict[str, str]:
    """Graded names whose own code uses a ready-made equivalent (by name), with the reason.

    ``graded`` maps each graded name to the dotted paths of its equivalents. The kit's own
    version (``from rlhf_helpers.sampling import top_k_filter``, in any spelling that names
    it) counts as one for every graded name.
    """
    defs = learner_definitions(learner_sources)
    out: dict[str, str] = {}
    for name, paths in graded.items():
        stmt = defs.get(name)
        if stmt is None:
            continue
        strong, names = _identifiers(stmt)
        for used in sorted(names - {name}):  # one level into what it calls: imports, helpers, aliases
            helper = defs.get(used)
            if helper is not None and helper is not stmt:
                more, _ = _identifiers(helper)
                strong |= more
        if isinstance(stmt, (ast.Import, ast.ImportFrom)) or (kit_package in strong and name in strong):
            out[name] = (f"{name} is not your own code here: it is taken from an import; no points for it."
                         f"\nHint: write {name} yourself")
            continue
        for path in paths:
            last = path.rsplit(".", 1)[-1]
            if last in strong or (last[:1].isupper() and last in names):
                out[name] = (f"{name} uses {path}, the ready-made version of what it should compute; no points "
                             f"for it.\nHint: write {name} yourself, without {last}")
                break
    return out


# ============================================================================ judging

@dataclass
class Verdict:
    """The judge's decision on one test cell."""

    passed: bool
    ename: str = ""
    message: str = ""
    extra: dict = field(default_factory=dict)


class _LearnerNameUsed(RuntimeError):
    pass


def _absent(name: str):
    def absent(*args, **kwargs):
        raise _LearnerNameUsed(f"the test called {name} outside observe(): a defect of the test, not of your code")
    absent.__name__ = name
    return absent


class _JudgeTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(signum, frame):
        raise _JudgeTimeout()

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def judge_test(source: str, records: list[dict], learner_names: set[str],
               graded: dict[str, list[str]] | None = None, handed: dict[str, str] | None = None,
               timeout: float = 120.0, label: str = "test") -> Verdict:
    """Run a source test cell here with the learner's outcomes ``records`` replayed.

    ``learner_names`` are the names the learner writes (never defined here);
    ``graded``/``handed`` are passed to :func:`rlhf_helpers.observations.replaying`.
    """
    from rlhf_helpers.observations import HandedOff, MissingObservation, ObservedError, replaying

    namespace: dict = {"__name__": "__judge__", "__builtins__": builtins}
    namespace.update({name: _absent(name) for name in learner_names})
    code = compile(source, f"<{label}>", "exec")
    sink = io.StringIO()
    try:
        with replaying(records, graded, handed), warnings.catch_warnings(), \
                contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), _time_limit(timeout):
            warnings.simplefilter("ignore")
            _seed()
            exec(code, namespace)  # noqa: S102 - the lab's own test code, never the learner's
    except HandedOff as exc:
        return Verdict(False, HANDED_OFF, str(exc))
    except ObservedError as exc:
        return Verdict(False, exc.ename, exc.message, {"mro": exc.mro})
    except MissingObservation as exc:
        return Verdict(False, NOT_OBSERVED, str(exc))
    except AssertionError as exc:
        return Verdict(False, "AssertionError", str(exc))
    except _JudgeTimeout:
        return Verdict(False, "JudgeTimeout", f"checking took longer than {timeout:g} s")
    except _LearnerNameUsed as exc:
        return Verdict(False, "TestDefect", str(exc))
    except Exception as exc:  # noqa: BLE001 - a value of the wrong kind breaks a check: that is a failure
        return Verdict(False, type(exc).__name__, str(exc))
    return Verdict(True)


def _seed() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)
