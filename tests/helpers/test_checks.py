"""The rules in rlhf_helpers.checks that decide a learner's points: each one can fail, and says why."""

from __future__ import annotations

import pytest
import torch

from rlhf_helpers.checks import (assert_close_float, assert_equal, assert_raises, assert_tensor, assert_type, attempt,
                                 compare, quiet)
from rlhf_helpers.observations import ObservedError, Outcome, decode, encode


def _fails(fn, *words):
    with pytest.raises(AssertionError) as info:
        fn()
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    return str(info.value)


def test_assert_type_checks_the_type_first():
    assert_type([1], list, "x")
    _fails(lambda: assert_type((1,), list, "x", hint="return a list"), "x should be a list, got tuple", "Hint: return a list")
    _fails(lambda: assert_type(1, (list, tuple), "x"), "list or tuple")

    class Sneaky(torch.Tensor):
        pass

    _fails(lambda: assert_type(torch.ones(1).as_subclass(Sneaky), torch.Tensor, "t"), "subclass Sneaky")
    assert_type(torch.nn.Parameter(torch.ones(1)), torch.Tensor, "p")

    class AlwaysEqual:
        def __eq__(self, other):
            return True

    _fails(lambda: assert_type(decode(encode(AlwaysEqual())), list, "r"), "got AlwaysEqual")


def test_assert_tensor_checks_dtype_shape_infinities_and_values():
    e = torch.tensor([1.0, float("-inf"), 2.0])
    assert_tensor(e.clone(), e, "t")
    _fails(lambda: assert_tensor(e.double(), e, "t"), "dtype torch.float64")
    _fails(lambda: assert_tensor(e[:2], e, "t"), "shape (2,)")
    _fails(lambda: assert_tensor(torch.tensor([1.0, 0.0, 2.0]), e, "t"), "infinite entries differ")
    _fails(lambda: assert_tensor(torch.tensor([1.0, float("inf"), 2.0]), e, "t"), "infinite entries differ")
    _fails(lambda: assert_tensor(torch.tensor([1.0, float("-inf"), 2.1]), e, "t", hint="h"), "max abs difference 0.1", "Hint: h")
    assert_tensor(torch.tensor([1.0, float("-inf"), 2.000001]), e, "t")
    _fails(lambda: assert_tensor(torch.tensor([float("nan")]), torch.tensor([1.0]), "t"), "differs")
    _fails(lambda: assert_tensor([1.0], torch.tensor([1.0]), "t"), "should be a Tensor, got list")
    assert_tensor(torch.tensor([1, 2]), torch.tensor([1.0, 2.0]), "t", check_dtype=False)


def test_assert_close_float_wants_a_python_number():
    assert_close_float(0.5, 0.5)
    _fails(lambda: assert_close_float(torch.tensor(0.5), 0.5, "m"), "Python float, got Tensor", ".item()")
    _fails(lambda: assert_close_float(True, 1.0, "m"), "Python float, got bool")
    _fails(lambda: assert_close_float(0.6, 0.5, "m"), "m = 0.6, expected 0.5")


def test_assert_raises_reads_an_outcome():
    assert_raises(ValueError, attempt(lambda: int("x")), "int('x')")
    _fails(lambda: assert_raises(ValueError, attempt(lambda: 1), "f(1)"), "should raise ValueError but returned normally")
    _fails(lambda: assert_raises(ValueError, attempt(lambda: 1 / 0), "f(0)"), "raised ZeroDivisionError")
    with pytest.raises(NotImplementedError):  # an unanswered exercise reads as such
        assert_raises(ValueError, attempt(lambda: (_ for _ in ()).throw(NotImplementedError())), "f()")
    replayed = Outcome(raised=["NotImplementedError", "RuntimeError"], message="",
                       error=ObservedError("NotImplementedError", ""))
    with pytest.raises(ObservedError):
        assert_raises(ValueError, replayed, "f()")
    with pytest.raises(TypeError, match="attempt"):
        assert_raises(ValueError, lambda: 1, "f")


def test_assert_equal_compares_type_then_value():
    assert_equal("ab", "ab")
    _fails(lambda: assert_equal("ab", "ac", "s", hint="h"), "s = 'ab', expected 'ac'", "Hint: h")
    _fails(lambda: assert_equal(1, "1", "s"), "should be a str, got int")


def test_compare_and_quiet_never_raise(capsys):
    compare("same", torch.ones(2), torch.ones(2))
    compare("shape", torch.ones(3), torch.ones(2))
    out = capsys.readouterr().out
    assert "exact: True" in out and "cannot compare" in out
    with quiet():
        print("hidden")
        import warnings

        warnings.warn("hidden")
    assert capsys.readouterr().out == ""
