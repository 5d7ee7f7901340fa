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
import re
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from autograder.cells import CHECK_PREFIXES, DEFINITIONS, FUNCTIONS, JUDGE_FLAG, OBSERVERS, hidden_ranges

ISOLATED = "_rlhf_course_test"
NOT_OBSERVED = "NotObserved"
HANDED_OFF = "HandedOff"
VALUES_FIRST = "ValuesFirst"
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
        elif isinstance(node, DEFINITIONS):
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
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and node.handlers and any(_is_observer(n) for b in node.body for n in ast.walk(b)):
            problems.append(f"line {node.lineno}: observe(...)/attempt(...) inside try/except: on the checking side "
                            "the learner's exception comes back as ObservedError, not its own class, so the except "
                            "clause never matches there; use assert_raises(ExcType, attempt(lambda: ...), ...)")
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

def observed_names(source: str) -> set[str]:
    """Names a test cell's thunks (``observe(lambda: ...)``, ``attempt(...)``) refer to, also through
    the cell's own helper functions (``observe(lambda: _build(texts))`` observes what ``_build`` calls)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    helpers = {stmt.name: {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
               for stmt in ast.walk(tree) if isinstance(stmt, FUNCTIONS)}
    names: set[str] = set()
    for call in _observers_in(tree):
        names |= {n.id for n in ast.walk(call) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    todo = [n for n in names if n in helpers]
    while todo:
        more = helpers.pop(todo.pop(), set())
        todo += [n for n in more - names if n in helpers]
        names |= more
    return names


def isolated(program: str) -> str:
    """An observation program run inside a function of its own, so that the names the test binds
    (``for _penalty in ...``, ``_loss, _g = observe(...)``) never overwrite the learner's globals;
    the learner's names are still found as globals. The test's own top-level imports stay at
    module level, as in the learner's notebook (a function that uses ``math`` without importing it
    works there once a test has imported it, and must work here too)."""
    tree = ast.parse(program)
    imports = [stmt for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom))]
    body = [stmt for stmt in tree.body if not isinstance(stmt, (ast.Import, ast.ImportFrom))] or [ast.Pass()]
    run = ast.FunctionDef(name=ISOLATED, args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[],
                                                              defaults=[]), body=body, decorator_list=[], returns=None)
    call = ast.Expr(ast.Call(func=ast.Name(ISOLATED, ast.Load()), args=[], keywords=[]))
    drop = ast.Delete(targets=[ast.Name(ISOLATED, ast.Del())])
    module = ast.Module(body=[*imports, run, ast.Try(body=[call], handlers=[], orelse=[], finalbody=[drop])],
                        type_ignores=[])
    ast.fix_missing_locations(module)
    return ast.unparse(module) + "\n"


def first_tests(cells: list[tuple[str, bool]], names: list[str]) -> dict[str, int]:
    """Graded name -> index of the first test cell that observes it (``cells``: (source, is_test))."""
    out: dict[str, int] = {}
    for index, (source, is_test) in enumerate(cells):
        if is_test:
            for name in sorted(observed_names(source) & set(names)):
                out.setdefault(name, index)
    return out


def handoffs(cells: list[tuple[str, bool]], graded: dict[str, list[str]],
             kit_package: str = "rlhf_helpers") -> dict[str, str]:
    """Graded names whose code, as the tests will call it, uses a ready-made equivalent, with the reason.

    ``cells`` are the notebook's code cells in order, as (source, is_test); the learner's cells
    are read with names resolved as Python does (:mod:`autograder.grading.references`): a function's
    locals are its own, its free names are the notebook's bindings when the first test of it
    runs, and helpers, aliases and decorators are followed. ``graded`` maps each graded name to
    the dotted paths of its equivalents; the kit's own version (``from rlhf_helpers.sampling
    import top_k_filter``, in any spelling that names it) counts as one for every graded name,
    and so does any import bound to the graded name.
    """
    from autograder.grading.references import END, Namespace

    namespace = Namespace([None if is_test else source for source, is_test in cells])
    tests = first_tests(cells, list(graded))
    out: dict[str, str] = {}
    for name, paths in graded.items():
        at = (tests[name], 0) if name in tests else END
        binding = namespace.lookup(name, at)
        if binding is None:
            continue
        reach = namespace.reach(name, at)
        seen = reach.names()  # attributes named like the learner's own class members are theirs
        from_kit = any(p.split(".")[0] == kit_package for p in reach.paths | reach.strings)
        if binding.kind == "import" or (from_kit and name in seen):
            out[name] = (f"{name} is not your own code here: it is taken from an import; no points for it."
                         f"\nHint: write {name} yourself")
            continue
        for path in paths:
            last = path.rsplit(".", 1)[-1]
            if last in seen:
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
    filename = f"<{label}>"
    code = compile(source, filename, "exec")
    sink = io.StringIO()
    try:
        with replaying(records, graded, handed), warnings.catch_warnings(), \
                contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), _time_limit(timeout):
            warnings.simplefilter("ignore")
            _seed()
            exec(code, namespace)  # noqa: S102 - the lab's own test code, never the learner's
    except HandedOff as exc:
        return Verdict(False, HANDED_OFF, str(exc))
    except MissingObservation as exc:
        return Verdict(False, NOT_OBSERVED, str(exc))
    except _JudgeTimeout:
        return Verdict(False, "JudgeTimeout", f"checking took longer than {timeout:g} s")
    except _LearnerNameUsed as exc:
        return Verdict(False, "TestDefect", str(exc))
    except Exception as exc:  # noqa: BLE001 - a value of the wrong kind breaks a check: that is a failure
        ename = plain_ename(exc.mro) if isinstance(exc, ObservedError) else type(exc).__name__
        message = exc.message if isinstance(exc, ObservedError) else str(exc)
        extra = {"mro": exc.mro} if isinstance(exc, ObservedError) else {"check": _raised_by_a_check(exc)}
        if _in_hidden_part(source, _failing_line(exc, filename)):
            whose = sorted(observed_names(source) & set(learner_names))
            message = hidden_failure(ename, message, whose, observed=isinstance(exc, ObservedError))
        return Verdict(False, ename, message, extra)
    return Verdict(True)


TIMEOUT_ENAME = "CellTimeoutError"
DIED_ENAME = "KernelDied"
NOT_RUN_ENAME = "NotRun"
GRADER_ENAMES = (HANDED_OFF, NOT_OBSERVED, VALUES_FIRST, "JudgeTimeout", "TestDefect", TIMEOUT_ENAME, DIED_ENAME,
                 NOT_RUN_ENAME)
"""Verdicts whose message the grader wrote (nothing of the learner's in it)."""


def plain_ename(mro: list[str]) -> str:
    """The name to show for an exception the learner's code raised: the first built-in exception
    class of its hierarchy (a class of the learner's own could carry anything in its name)."""
    known = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)
             and issubclass(getattr(builtins, name), BaseException)}
    return next((name for name in mro if name in known), "Exception")


def _raised_by_a_check(exc: BaseException) -> bool:
    """Whether ``exc`` came from one of :mod:`rlhf_helpers.checks`' checks (which mark what they
    quote of the learner's result), not from a test's own ``assert``."""
    tb, last = exc.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.endswith("rlhf_helpers/checks.py")


def shown(verdict: Verdict, late: bool = False) -> str:
    """The message of a failure as the learner reads it. A check's message marks what it quotes of
    the learner's result: plain when no hidden test has run yet, left out (``…``) when one has."""
    from rlhf_helpers.checks import LEARNER_CLOSE, LEARNER_OPEN

    pattern = re.escape(LEARNER_OPEN) + ".*?" + re.escape(LEARNER_CLOSE)
    if late:
        return re.sub(pattern, "…", verdict.message, flags=re.S)
    return verdict.message.replace(LEARNER_OPEN, "").replace(LEARNER_CLOSE, "")


def after_hidden(verdict: Verdict, source: str, learner_names: set[str]) -> Verdict:
    """A failure of a test that runs after hidden tests have run in the notebook, as the learner may
    read it: what the learner's code saw in a hidden test could be carried in the text of its
    exception or in the value a check quotes. A check's message keeps its first line with what it
    quotes of the learner's result left out (:func:`shown`), and its hint; anything else shows only
    the function, the exception type and the hint (the grader's own verdicts stay as they are)."""
    if verdict.passed or verdict.ename in GRADER_ENAMES or verdict.ename == "NotImplementedError":
        return verdict
    if verdict.extra.get("check"):
        first, _, rest = shown(verdict, late=True).partition("\n")
        hint = rest.split("Hint: ", 1)[1].strip() if "Hint: " in rest else ""
        return Verdict(False, verdict.ename, first + (HINT + hint if hint else ""), verdict.extra)
    whose = sorted(observed_names(source) & set(learner_names))
    of = f" of {', '.join(whose)}" if whose else ""
    hint = verdict.message.split(HINT, 1)[1].strip() if HINT in verdict.message else ""
    text = (f"a test{of} failed (its details are not shown once hidden tests have run: run the visible tests in "
            f"your notebook to see them)")
    if verdict.extra.get("mro"):
        text += f": your code raised {verdict.ename}"
    return Verdict(False, verdict.ename, text + (HINT + hint if hint else ""), verdict.extra)


HIDDEN_NOTICE = "a hidden test{of} failed"
HINT = "\nHint: "


def hidden_failure(ename: str, message: str, whose: list[str], observed: bool) -> str:
    """What a learner may read of a failing hidden test: that it failed, of what, and its hint; never
    the expected values, the inputs, the test's source or the text the learner's own code raised."""
    of = f" of {', '.join(whose)}" if whose else ""
    text = HIDDEN_NOTICE.format(of=of)
    if observed:
        return f"{text}: your code raised {ename} there"
    hint = message.split(HINT, 1)[1].strip() if HINT in message else ""
    if message.startswith("Hint: "):
        hint = message[len("Hint: "):].strip()
    return text + (HINT + hint if hint else "")


def _failing_line(exc: BaseException, filename: str) -> int | None:
    """The line of the test cell's own top-level code that was running when ``exc`` was raised."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            return tb.tb_lineno
        tb = tb.tb_next
    return None


def _in_hidden_part(source: str, line: int | None) -> bool:
    return line is not None and any(a < line < b for a, b in hidden_ranges(source))


def error_tests(tests: dict[str, str], learner_names: set[str]) -> dict[str, list[str]]:
    """Error-handling test -> the value tests it depends on.

    A test cell that ``attempt``\ s the learner's code (it checks what is raised) pays only when
    every test cell that observes the same graded functions without ``attempt`` passes: a stub
    that always raises, or a fake, would otherwise earn the error points of a function that
    computes nothing right."""
    observed = {gid: observed_names(src) & learner_names for gid, src in tests.items()}
    attempts = {gid for gid, src in tests.items() if _uses_attempt(src)}
    return {gid: [v for v in tests if v not in attempts and observed[v] & observed[gid]] for gid in sorted(attempts)}


def _uses_attempt(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(_call_name(n) == "attempt" for n in ast.walk(tree))


def gate_error_tests(verdicts: dict[str, Verdict], tests: dict[str, str], learner_names: set[str]) -> dict[str, Verdict]:
    """``verdicts`` with every passing error test whose value tests did not all pass turned into a
    failure that says why (see :func:`error_tests`)."""
    out = dict(verdicts)
    for gid, needs in error_tests(tests, learner_names).items():
        failed = [v for v in needs if v in verdicts and not verdicts[v].passed]
        if gid in out and out[gid].passed and failed:
            whose = ", ".join(sorted(observed_names(tests[gid]) & learner_names))
            out[gid] = Verdict(False, VALUES_FIRST, f"the error handling of {whose} earns its points once its value "
                                                    f"tests pass ({', '.join(failed)} did not)")
    return out


def _seed() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)
