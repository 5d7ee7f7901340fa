"""Checks that teach: the helpers the labs' test cells are built from.

Every check looks at the type first (so an object whose ``__eq__`` is always
true cannot pass), then dtype and shape, then values against a reference
computed at test time, and fails with an ``AssertionError`` whose message names
the likely mistake. Checks never print and return ``None``, so a test cell made
of them is silent and ends without a value, as nbgrader needs.

A test cell reaches the learner's code only through ``observe`` and
``attempt`` (re-exported from :mod:`rlhf_helpers.observations`, which says how
the grader keeps the verdict out of the learner's kernel). Checks are plain
statements, so the grader can remove them, with their hints and expected
values, from what it sends to that kernel.

``compare`` is the exception: it is for learners, prints a one-line report
(exact / approximate / max difference) and never raises, in the spirit of the
``cmp`` helper in Karpathy's backprop lecture.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from rlhf_helpers.observations import JUDGE, ObservedError, Opaque, Outcome, attempt, class_name, observe, type_of

__all__ = ["assert_type", "assert_tensor", "assert_close_float", "assert_raises", "compare", "quiet",
           "observe", "attempt", "type_of", "JUDGE"]

# The test-cell protocol, declared once (the grader's judge reads it through autograder.cells): in a
# test cell, a call to a name starting with a check prefix, an ``assert`` and an ``if JUDGE:`` block
# run on the judge's side only; the learner's code is reached only through the observers.
CHECK_PREFIXES = ("assert_",)
OBSERVERS = ("observe", "attempt")
JUDGE_FLAG = "JUDGE"


LEARNER_OPEN, LEARNER_CLOSE = "\u27e6", "\u27e7"
"""Marks around what a check quotes of the learner's result while the grader judges (the grader may
leave it out of the feedback: it could carry what the learner's code saw in a hidden test)."""


def _mine(text: object) -> str:
    """``text``, quoted from the learner's result: marked while the grader judges, plain otherwise."""
    from rlhf_helpers.observations import mode

    return f"{LEARNER_OPEN}{text}{LEARNER_CLOSE}" if mode() == "judge" else str(text)


def _fail(what: str, hint: str | None) -> None:
    raise AssertionError(what + (f"\nHint: {hint}" if hint else ""))


def assert_type(obj: Any, expected: type | tuple[type, ...], name: str, hint: str | None = None) -> None:
    """Fail unless ``type(obj)`` is (a subclass of) ``expected``.

    Subclasses of ``torch.Tensor`` other than ``torch.nn.Parameter`` are
    refused: a tensor subclass can override comparisons. An object the learner's kernel reported
    only by its type (an :class:`~rlhf_helpers.observations.Opaque`, e.g. a trainer, or
    ``type_of(x)``) passes when one of its classes is named like ``expected`` or a subclass.
    """
    wanted = (expected,) if isinstance(expected, type) else tuple(expected)
    if isinstance(obj, Opaque) and not any(issubclass(t, Opaque) for t in wanted):
        ok = any(class_name(t) in obj.mro for t in wanted)
    else:
        ok = isinstance(obj, expected)
    if not ok:
        names = " or ".join(t.__name__ for t in wanted)
        _fail(f"{name} should be a {names}, got {_mine(type(obj).__name__)}.", hint)
    if isinstance(obj, torch.Tensor) and type(obj) not in (torch.Tensor, torch.nn.Parameter):
        _fail(f"{name} should be a plain torch.Tensor, got the subclass {_mine(type(obj).__name__)}.", hint)


def assert_tensor(
    actual: Any,
    expected: torch.Tensor,
    name: str = "result",
    *,
    hint: str | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    check_dtype: bool = True,
    equal_nan: bool = False,
) -> None:
    """Check type, dtype, shape and values of ``actual`` against ``expected``.

    Infinities must match in position and sign (``-inf`` logits of a filter).
    """
    assert_type(actual, torch.Tensor, name, hint)
    if check_dtype and actual.dtype != expected.dtype:
        _fail(f"{name} has dtype {actual.dtype}, expected {expected.dtype}.", hint)
    if tuple(actual.shape) != tuple(expected.shape):
        _fail(f"{name} has shape {_mine(tuple(actual.shape))}, expected {tuple(expected.shape)}.", hint)
    a = actual.detach().to("cpu", expected.dtype if not check_dtype else actual.dtype)
    e = expected.detach().to("cpu")
    if a.is_floating_point():
        inf_a, inf_e = torch.isinf(a), torch.isinf(e)
        if not torch.equal(inf_a, inf_e) or not torch.equal(a[inf_a], e[inf_e]):
            n = int((inf_a != inf_e).sum())
            _fail(f"{name}: infinite entries differ from the reference ({_mine(n)} positions).", hint)
        finite = ~inf_e
        a, e = a[finite], e[finite]
    try:
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, equal_nan=equal_nan, check_dtype=False)
    except AssertionError:
        diff = (a.double() - e.double()).abs()
        diff = diff[~torch.isnan(diff)]
        worst = f"{diff.max().item():.3g}" if diff.numel() else "nan"
        _fail(f"{name} differs from the reference (max abs difference {_mine(worst)}, tolerance {atol:g}).", hint)


def assert_close_float(actual: Any, expected: float, name: str = "result", *, hint: str | None = None,
                       atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Check that ``actual`` is a Python number (not a tensor) close to ``expected``."""
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        _fail(f"{name} should be a Python float, got {_mine(type(actual).__name__)}.",
              hint or "convert a one-element tensor with .item()")
    if not abs(float(actual) - expected) <= atol + rtol * abs(expected):
        _fail(f"{name} = {_mine(repr(actual))}, expected {expected!r}.", hint)


def assert_raises(exc_type: type[BaseException], outcome: Outcome, name: str, hint: str | None = None) -> None:
    """Fail unless ``outcome`` (from :func:`attempt`) is ``exc_type`` (or a subclass) being raised.

    A ``NotImplementedError`` is raised again, so an unanswered exercise reads as such.
    """
    if not isinstance(outcome, Outcome):
        raise TypeError("assert_raises takes the outcome of attempt(lambda: ...), e.g. "
                        "assert_raises(ValueError, attempt(lambda: f(-1)), 'f(-1)')")
    if outcome.ok:
        _fail(f"{name} should raise {exc_type.__name__} but returned normally.", hint)
    if outcome.raised_a(exc_type):
        return
    if outcome.raised_a(NotImplementedError):
        raise outcome.error if outcome.error is not None else ObservedError("NotImplementedError", outcome.message)
    _fail(f"{name} raised {_mine(f'{outcome.raised[0]}: {outcome.message}')}; expected {exc_type.__name__}.", hint)


def assert_equal(actual: Any, expected: Any, name: str = "result", *, hint: str | None = None) -> None:
    """Check that ``actual`` has the type of ``expected`` and equals it (plain data: str, int, list, dict, ...)."""
    assert_type(actual, type(expected), name, hint)
    if actual != expected:
        _fail(f"{name} = {_mine(repr(actual))}, expected {expected!r}.", hint)


def compare(name: str, actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Print whether ``actual`` matches ``expected`` exactly, approximately, and the max difference."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        shape = getattr(actual, "shape", None)
        print(f"{name:24s} | shape {shape} vs expected {tuple(expected.shape)}: cannot compare")
        return
    a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
    exact = bool(torch.equal(a, e))
    approx = bool(torch.allclose(a, e, atol=1e-5, rtol=1e-4, equal_nan=True))
    finite = torch.isfinite(a) & torch.isfinite(e)
    maxdiff = (a[finite] - e[finite]).abs().max().item() if finite.any() else 0.0
    print(f"{name:24s} | exact: {str(exact):5s} | approximate: {str(approx):5s} | max diff: {maxdiff:.2e}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings, stdout and stderr inside a test cell (nbgrader scores
    a test cell 0 when anything reaches stderr)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            yield
