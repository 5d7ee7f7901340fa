"""Observe inside, judge outside (autograder.grading.judge, rlhf_helpers.observations, autograder.grading.answer_key).

Fast unit tests of every rule that keeps a grade honest: what the learner's
kernel is sent, how its reports are read back, how the judge decides, and
what the sandbox's copy of the helper package hides. The end-to-end versions
(a real sandbox, the fixture class, every lab's cheat copy) are in
tests/grader/test_grading.py and tests/labs/test_labs.py.
"""

from __future__ import annotations

import ast
import json
import os
import math

import numpy as np
import pytest
import torch

from autograder.grading import answer_key as AK
from autograder.grading import judge as J
from rlhf_helpers import observations as O

TEST = '''
import torch
from rlhf_helpers.checks import JUDGE, assert_tensor, observe

_x = torch.tensor([1.0, 2.0])
assert_tensor(observe(lambda: double(_x)), torch.tensor([2.0, 4.0]), "double(x)", hint="twice x")
### BEGIN HIDDEN TESTS
if JUDGE:
    SECRET_REFERENCE = lambda v: 2 * v
for _n in (3, 4):
    _y = torch.arange(float(_n))
    _got = observe(lambda: double(_y))
    if JUDGE:
        assert_tensor(_got, SECRET_REFERENCE(_y), f"double(arange({_n}))", hint="HIDDEN HINT: multiply by 2")
assert observe(lambda: double(torch.zeros(1))).shape == (1,), "keep the shape"
### END HIDDEN TESTS
'''


def _records(values):
    return [{"ok": True, "value": O.encode(v), "used": []} for v in values]


# ============================================================================ the observation program

def test_observation_program_keeps_inputs_and_thunks_only():
    program = J.observation_program(TEST)
    assert "observe(lambda: double(_x))" in program and "observe(lambda: double(_y))" in program
    assert "_y = torch.arange(float(_n))" in program
    assert "observe(lambda: double(torch.zeros(1)))" in program
    for secret in ("SECRET_REFERENCE", "HIDDEN HINT", "twice x", "assert_tensor(", "assert ", "torch.tensor([2.0, 4.0])"):
        assert secret not in program, secret
    ast.parse(program)


def test_observation_program_strips_inside_functions_and_blocks():
    src = '''
def _check(v):
    got = observe(lambda: f(v))
    assert_equal(got, 1, "f", hint="SECRET")
    if JUDGE:
        raise AssertionError("SECRET")
with quiet():
    for i in range(2):
        if JUDGE:
            pass
        else:
            observe(lambda: f(i))
'''
    program = J.observation_program(src)
    assert "SECRET" not in program and "assert_equal" not in program
    assert "observe(lambda: f(v))" in program and "observe(lambda: f(i))" in program


def test_test_cell_rules():
    names = {"double"}
    assert J.test_cell_problems(TEST, names) == []
    bad = J.test_cell_problems("import torch\nx = double(torch.ones(1))\n", names)
    assert any("outside observe" in p for p in bad) and any("observes nothing" in p for p in bad)
    bad = J.test_cell_problems("from rlhf_helpers.checks import observe\nx = torch.ones(1)\nobserve(lambda: double(x))\n", names)
    assert any("'torch'" in p and "neither imports" in p for p in bad)
    bad = J.test_cell_problems("from rlhf_helpers.checks import JUDGE, observe\nif JUDGE:\n    observe(lambda: double(1))\n",
                               names)
    assert any("must not observe" in p for p in bad)
    bad = J.test_cell_problems("from rlhf_helpers.checks import JUDGE, observe\nif JUDGE:\n    k = 3\n"
                               "observe(lambda: double(1))\ny = k + 1\n", names)
    assert any("only the checking side defines" in p for p in bad)
    # an observer inside try/except: the judge replays the learner's exception as ObservedError, so
    # `except ValueError` matched in a notebook and never in the grader (lab 9's first pass_at_k test)
    bad = J.test_cell_problems("from rlhf_helpers.checks import observe\ntry:\n    observe(lambda: double(-1))\n"
                               "except ValueError:\n    pass\n", names)
    assert any("inside try/except" in p and "assert_raises" in p for p in bad)
    fine = ("from rlhf_helpers.checks import assert_raises, attempt, observe\nobserve(lambda: double(1))\n"
            "assert_raises(ValueError, attempt(lambda: double(-1)), 'double(-1)')\n")
    assert J.test_cell_problems(fine, names) == []


# ============================================================================ the encoding

@pytest.mark.parametrize("value", [
    None, True, 3, -2**70, 1.5, "text", [1, [2, "x"]], (1, (2.0,)), {"a": 1, 2: [3]}, {1, 2}, range(1, 9, 2),
    torch.tensor([[1.0, -2.5]]), torch.arange(6, dtype=torch.int64).reshape(2, 3), torch.tensor(True),
    torch.zeros(0, 3), torch.tensor(2.0, dtype=torch.float64), torch.tensor([1.5, 2.0], dtype=torch.bfloat16),
    np.arange(4.0).reshape(2, 2), np.float32(0.25), np.int64(7),
])
def test_encoding_round_trips_exactly(value):
    text = json.dumps(O.encode(value), allow_nan=False)
    back = O.decode(json.loads(text))
    assert type(back) is type(value)
    if isinstance(value, torch.Tensor):
        assert back.dtype == value.dtype and back.shape == value.shape and torch.equal(back, value)
    elif isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and np.array_equal(back, value)
    else:
        assert back == value


def test_encoding_of_special_values():
    back = O.decode(json.loads(json.dumps(O.encode([float("nan"), float("inf"), -math.inf]), allow_nan=False)))
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf]
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    assert O.decode(O.encode(t)).requires_grad

    class AlwaysEqual:
        def __eq__(self, other):
            return True

    opaque = O.decode(O.encode(AlwaysEqual()))
    assert isinstance(opaque, O.Opaque) and type(opaque).__name__ == "AlwaysEqual" and opaque != 1
    assert not (opaque == [1, 2])

    class Sneaky(torch.Tensor):
        pass

    assert isinstance(O.decode(O.encode(torch.ones(2).as_subclass(Sneaky))), O.Opaque)


def test_a_type_is_decided_by_the_judge_from_class_names():
    """The kernel reports an object it cannot encode (or type_of(x)) by its classes' names; assert_type
    decides on the judge's side, so a look-alike class named like the real one does not pass."""
    from collections import OrderedDict

    from rlhf_helpers.checks import assert_type

    class Processor(torch.nn.Module):
        pass

    reported = O.decode(json.loads(json.dumps(O.encode(Processor()))))
    assert reported.mro[:2] == (O.class_name(Processor), "torch.nn.modules.module.Module")
    assert_type(reported, torch.nn.Module, "a module")
    with pytest.raises(AssertionError, match="should be a OrderedDict, got Processor"):
        assert_type(reported, OrderedDict, "a module")

    class Module:  # named like torch.nn.Module, but not it
        pass

    fake = O.decode(O.encode(O.type_of(Module())))
    with pytest.raises(AssertionError, match="should be a Module"):
        assert_type(fake, torch.nn.Module, "a look-alike")
    assert_type(O.type_of(OrderedDict()), dict, "type_of an OrderedDict")  # the same rule in a learner's notebook

    class Impostor:  # claims torch.nn.Module's module and name, as a class body may
        __module__, __qualname__ = "torch.nn.modules.module", "Module"

    claimed = O.decode(O.encode(O.type_of(Impostor())))
    assert claimed.mro == ("impostor of torch.nn.modules.module.Module",)
    with pytest.raises(AssertionError, match="should be a Module"):
        assert_type(claimed, torch.nn.Module, "an impostor")

    class Honest(torch.nn.Linear):  # a learner's subclass keeps its real bases
        pass

    assert_type(O.type_of(Honest(1, 1)), torch.nn.Linear, "a subclass")
    assert_type(O.type_of(Honest(1, 1)), torch.nn.Module, "a subclass")
    with pytest.raises(O.DecodeError):
        O.decode({"$opaque": {"type": "x", "mro": [1]}})


@pytest.mark.parametrize("junk", [
    {"$pickle": "x"}, {"$tensor": {"dtype": "float32", "shape": [3], "data": "AAAA"}},
    {"$tensor": {"dtype": "os.system", "shape": [], "data": ""}}, {"$tensor": {"dtype": "float32", "shape": [1], "data": "***"}},
    {"a": 1, "b": 2}, {"$float": "1e999"}, {"$ndarray": {"dtype": "O", "shape": [1], "data": ""}},
])
def test_decoding_refuses_anything_else(junk):
    with pytest.raises((O.DecodeError, ValueError)):
        O.decode(junk)


# ============================================================================ judging

def test_judge_passes_a_right_answer_and_fails_a_wrong_one_with_its_hint():
    right = _records([torch.tensor([2.0, 4.0]), torch.arange(3.0) * 2, torch.arange(4.0) * 2, torch.zeros(1)])
    assert J.judge_test(TEST, right, {"double"}).passed
    wrong = _records([torch.tensor([2.0, 4.0]), torch.arange(3.0) * 3, torch.arange(4.0) * 2, torch.zeros(1)])
    verdict = J.judge_test(TEST, wrong, {"double"})
    assert not verdict.passed and "HIDDEN HINT: multiply by 2" in verdict.message


def test_a_failing_hidden_test_shows_that_it_failed_and_its_hint_only():
    """Issue 27: feedback of a failing hidden test never shows its expected values or inputs, nor what
    the learner's code raised there; a visible test keeps its full message."""
    wrong = _records([torch.tensor([2.0, 4.0]), torch.arange(3.0) * 3, torch.arange(4.0) * 2, torch.zeros(1)])
    verdict = J.judge_test(TEST, wrong, {"double"})
    assert verdict.message == "a hidden test of double failed\nHint: HIDDEN HINT: multiply by 2"
    shape = _records([torch.tensor([2.0, 4.0]), torch.arange(3.0) * 2, torch.arange(4.0) * 2, torch.zeros(2)])
    assert J.judge_test(TEST, shape, {"double"}).message == "a hidden test of double failed", "no hint, no values"
    raised = _records([torch.tensor([2.0, 4.0])]) + [
        {"ok": False, "error": {"mro": ["IndexError", "LookupError", "Exception"], "message": "index 7 of arange(3.0)"}}]
    verdict = J.judge_test(TEST, raised, {"double"})
    assert verdict.ename == "IndexError" and "arange" not in verdict.message and "raised IndexError" in verdict.message
    visible = J.judge_test(TEST, _records([torch.tensor([2.0, 5.0])]), {"double"})
    assert "double(x) differs from the reference" in visible.message and "Hint: twice x" in visible.message


def test_after_hidden_tests_a_failure_quotes_nothing_of_the_learners_result():
    """Red team: a visible test's message quoted the learner's value (or exception) in full, which
    could carry what the learner's code saw in an earlier hidden test. Once a hidden test has run,
    a check's message keeps its words and hint, not the learner's value; a raw assert or the
    learner's exception keeps only the function, the type and the hint."""
    src = ("from rlhf_helpers.checks import assert_equal, observe\n"
           "assert_equal(observe(lambda: label(1)), 'pos', 'label(1)', hint='map 1 to pos')\n")
    verdict = J.judge_test(src, _records(["SECRET [3, 57, 12]"]), {"label"})
    assert "SECRET [3, 57, 12]" in J.shown(verdict) and "\u27e6" not in J.shown(verdict)
    late = J.after_hidden(verdict, src, {"label"})
    assert "57" not in J.shown(late, late=True) and "expected 'pos'" in J.shown(late, late=True)
    assert "Hint: map 1 to pos" in late.message
    raw = "from rlhf_helpers.checks import observe\nassert observe(lambda: label(1)) == 'pos', f'got {observe}'\n"
    verdict = J.judge_test(raw, _records(["SECRET 57"]), {"label"})
    assert "57" not in J.after_hidden(verdict, raw, {"label"}).message
    raised = [{"ok": False, "error": {"mro": ["Leak_3_57", "ValueError", "Exception"], "message": "SECRET 57"}}]
    verdict = J.judge_test(raw, raised, {"label"})
    assert verdict.ename == "ValueError" and "57" not in J.after_hidden(verdict, raw, {"label"}).message


def test_error_tests_pay_only_when_the_value_tests_pass():
    """Issue 27: a stub that always raises ValueError passes 'raises ValueError on bad input'; the
    error test earns its points only when the same function's value tests pass."""
    tests = {
        "test_f": "from rlhf_helpers.checks import observe\nassert observe(lambda: f(2)) == 4\n",
        "test_f_errors": "from rlhf_helpers.checks import assert_raises, attempt\n"
                         "assert_raises(ValueError, attempt(lambda: f(-1)), 'f(-1)')\n",
        "test_g": "from rlhf_helpers.checks import observe\nassert observe(lambda: g(1)) == 1\n",
    }
    assert J.error_tests(tests, {"f", "g"}) == {"test_f_errors": ["test_f"]}
    stub = {"test_f": J.Verdict(False, "ValueError", "stub"), "test_f_errors": J.Verdict(True),
            "test_g": J.Verdict(True)}
    gated = J.gate_error_tests(stub, tests, {"f", "g"})
    assert not gated["test_f_errors"].passed and gated["test_f_errors"].ename == J.VALUES_FIRST
    assert "test_f did not" in gated["test_f_errors"].message and gated["test_g"].passed
    honest = dict(stub, test_f=J.Verdict(True))
    assert J.gate_error_tests(honest, tests, {"f", "g"}) == honest


def test_the_kernel_runs_a_test_in_a_function_of_its_own():
    """A test's names (for _penalty in ...) never overwrite the learner's globals in the kernel."""
    program = J.isolated(J.observation_program(TEST))
    space = {"double": lambda v: 2 * v, "_x": "the learner's own _x", "_y": "and _y"}
    import rlhf_helpers.observations as obs

    exec(compile(program, "<test>", "exec"), space)  # noqa: S102 - the lab's own test code
    assert space["_x"] == "the learner's own _x" and space["_y"] == "and _y" and J.ISOLATED not in space
    assert space["torch"] is torch, "the test's imports stay global, as in the learner's notebook"
    assert obs.mode() == "local"


def test_observed_names_follow_the_tests_own_helpers():
    src = ("from rlhf_helpers.checks import observe\n"
           "def _build(texts):\n    return build_queries(texts, 2)\n"
           "assert observe(lambda: _build(['a'])) == []\n")
    assert "build_queries" in J.observed_names(src)


def test_judge_reports_missing_and_raised_outcomes():
    verdict = J.judge_test(TEST, _records([torch.tensor([2.0, 4.0])]), {"double"})
    assert verdict.ename == J.NOT_OBSERVED
    raised = [{"ok": False, "error": {"mro": ["NotImplementedError", "RuntimeError", "Exception"], "message": ""}, "used": []}]
    assert J.judge_test(TEST, raised, {"double"}).ename == "NotImplementedError"
    assert J.judge_test(TEST, [{"ok": True, "value": {"$pickle": "x"}}], {"double"}).ename == J.NOT_OBSERVED


def test_judge_never_runs_the_learners_code():
    src = "from rlhf_helpers.checks import observe\nobserve(lambda: 1)\ndouble(2)\n"
    verdict = J.judge_test(src, _records([1]), {"double"})
    assert not verdict.passed and verdict.ename == "TestDefect"


def test_judge_refuses_a_function_that_used_a_named_equivalent():
    src = "from rlhf_helpers.checks import observe\nassert observe(lambda: pick(3)) == 3\n"
    used = [{"ok": True, "value": 3, "used": ["heapq.nlargest"]}]
    assert J.judge_test(src, used, {"pick"}).passed
    verdict = J.judge_test(src, used, {"pick"}, graded={"pick": ["heapq.nlargest"]})
    assert verdict.ename == J.HANDED_OFF and "heapq.nlargest" in verdict.message
    verdict = J.judge_test(src, _records([3]), {"pick"}, graded={"pick": []}, handed={"pick": "pick is an import"})
    assert verdict.ename == J.HANDED_OFF


def _handoffs(codes, graded):
    return J.handoffs([(code, False) for code in codes], graded)


def test_handoffs_read_the_learners_definitions():
    graded = {"top_k": ["heapq.nlargest"], "softmax": ["scipy.special.softmax"]}
    cases = {
        "from rlhf_helpers.sampling import top_k": "top_k",
        "import heapq\ndef top_k(p, k):\n    return heapq.nlargest(k, p)": "top_k",
        "from heapq import nlargest as big\ndef top_k(p, k):\n    return big(k, p)": "top_k",
        "def top_k(p, k):\n    m = __import__('importlib').import_module('rlhf_helpers.sampling')\n    return m.top_k(p, k)": "top_k",
        "top_k = __import__('heapq').nlargest": "top_k",
    }
    for code, name in cases.items():
        assert name in _handoffs([code], graded), code
    honest = 'def top_k(p, k):\n    """Like heapq.nlargest, by hand."""\n    return sorted(range(len(p)), key=lambda i: -p[i])[:k]'
    assert _handoffs([honest], graded) == {}
    message = 'def top_k(p, k):\n    if k < 0:\n        raise ValueError("top_k: not like nlargest, k must be >= 0")\n    return []'
    assert _handoffs([message], graded) == {}, "words in a message are not a hand-off"
    assert "top_k" in _handoffs(["def top_k(p, k):\n    return getattr(__import__('heapq'), 'nlargest')(k, p)"], graded)
    # the last definition wins, as when the notebook runs
    assert _handoffs(["from heapq import nlargest as top_k", honest], graded) == {}


def test_the_kernel_wires_an_equivalent_as_its_module_loads(monkeypatch, tmp_path):
    """Issue 27 (red team): a reference to a listed function taken before the first test (``from m
    import f`` in a solution cell) must be the wired one: the module is wired as it loads."""
    import sys

    (tmp_path / "wire_me_later.py").write_text("def nlargest(k, xs):\n    return sorted(xs)[-k:]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(O._STATE, "mode", "observe")
    monkeypatch.setitem(O._STATE, "wires", None)
    monkeypatch.setenv(O.TRIPWIRES_ENV, json.dumps(["wire_me_later:nlargest"]))
    before = list(sys.meta_path)
    try:
        O.arm()
        from wire_me_later import nlargest  # taken before any observation

        assert getattr(nlargest, "__rlhf_tripwire__", False)
        used: set[str] = set()
        O._ACTIVE.append(used)
        try:
            nlargest(1, [3, 1, 2])
        finally:
            O._ACTIVE.remove(used)
        assert used == {"wire_me_later.nlargest"}
    finally:
        sys.meta_path[:] = before
        sys.modules.pop("wire_me_later", None)


def test_wiring_a_package_submodule_as_it_loads_keeps_the_package_importable(tmp_path):
    """Lab 4's equivalents live in torch submodules that torch's own ``__init__`` imports: wiring
    them then must not read the half-made package (it broke ``import torch`` in every lab 4 box)."""
    import subprocess
    import sys

    wires = ["torch.distributions.kl:kl_divergence", "torch.distributions.kl._KL_REGISTRY", "torch.nn.functional:kl_div",
             "torch.nn.modules.loss:KLDivLoss"]
    code = ("from rlhf_helpers import observations as O\nO.arm()\nimport torch, torch.nn.functional as F\n"
            "import torch.distributions as D\n"
            "print(bool(getattr(F.kl_div, '__rlhf_tripwire__', False)), "
            "bool(getattr(D.kl_divergence, '__rlhf_tripwire__', False)))")
    env = {**os.environ, O.OBSERVE_ENV: "1", O.TRIPWIRES_ENV: json.dumps(wires)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"], done.stdout


def test_observe_and_attempt_in_each_mode(monkeypatch):
    assert O.observe(lambda: 41 + 1) == 42
    outcome = O.attempt(lambda: int("x"))
    assert not outcome.ok and outcome.raised_a(ValueError) and "invalid literal" in outcome.message
    with pytest.raises(ValueError):
        O.observe(lambda: int("x"))

    sent = []
    monkeypatch.setitem(O._STATE, "mode", "observe")
    monkeypatch.setitem(O._STATE, "wires", None)
    monkeypatch.setenv(O.TRIPWIRES_ENV, json.dumps(["heapq.nlargest"]))
    import IPython.display

    monkeypatch.setattr(IPython.display, "publish_display_data", lambda data: sent.append(data[O.MIME]))
    import heapq

    original = heapq.nlargest
    try:
        assert O.observe(lambda: heapq.nlargest(1, [3, 1])) == [3]
        O.attempt(lambda: 1 / 0)
    finally:
        heapq.nlargest = original
    assert sent[0] == {"ok": True, "value": [3], "used": ["heapq.nlargest"]}
    assert sent[1]["ok"] is False and sent[1]["error"]["mro"][0] == "ZeroDivisionError"


# ============================================================================ the answer key

def test_stub_module_hides_answers_and_what_carries_them():
    source = '''
CARRIES = {"helper": ["answer"]}

def answer(x):
    return x + 1

@staticmethod
def helper(x):
    return x + 1

class Other:
    pass

def keep(x):
    return answer(x)
'''
    text, done = AK.stub_module(source, {"answer"}, "lab9", "rlhf_helpers.mod")
    assert sorted(done) == ["answer", "helper"]
    assert "x + 1" not in text and "def keep" in text and "class Other" in text
    space: dict = {}
    exec(compile(text, "mod", "exec"), space)
    with pytest.raises(RuntimeError, match="not available while lab9 is graded"):
        space["keep"](1)


def test_box_package_has_no_answer_and_no_bytecode(tmp_path):
    import rlhf_helpers

    from pathlib import Path

    real = Path(rlhf_helpers.__file__).parent
    stubbed = AK.build_box_package(real, tmp_path / "rlhf_helpers", ["top_k_filter", "generate_text"], "lab1_sampling")
    sampling = (tmp_path / "rlhf_helpers" / "sampling.py").read_text()
    assert set(stubbed["rlhf_helpers.sampling"]) == {"top_k_filter", "generate_text", "generate_ids"}
    assert "torch.topk" not in sampling.split("def top_k_filter", 1)[1].split("\ndef ", 1)[0]
    assert not list((tmp_path / "rlhf_helpers").rglob("*.pyc"))
    assert (tmp_path / "rlhf_helpers" / "world").is_dir() and not any((tmp_path / "rlhf_helpers" / "world").iterdir())


def test_the_box_mounts_the_stubbed_package_over_the_real_one(monkeypatch):
    import autograder.grading.sandbox as S

    monkeypatch.setattr(S, "bwrap_path", lambda: "/usr/bin/bwrap")
    cfg = S.SandboxConfig(work_dir="/tmp/x/work", ipc_dir="/tmp/x/ipc",
                          overlays=[["/tmp/box/rlhf_helpers", "/kit/rlhf_helpers"], ["/kit/rlhf_helpers/world"] * 2])
    cmd = S.bwrap_command(cfg, ["python"])
    binds = [i for i in range(len(cmd) - 2) if cmd[i] == "--ro-bind"]
    box = next(i for i in binds if cmd[i + 1] == "/tmp/box/rlhf_helpers")
    world = next(i for i in binds if cmd[i + 1] == "/kit/rlhf_helpers/world")
    assert cmd[box + 2] == "/kit/rlhf_helpers" and box == binds[-2] and world == binds[-1]
    env = dict(zip(cmd[cmd.index("--setenv") + 1::3], cmd[cmd.index("--setenv") + 2::3]))
    assert env.get("RLHF_COURSE_OBSERVE") == "1"


def test_the_box_covers_class_folders_that_a_system_mount_would_show(monkeypatch, tmp_path):
    """A kit installed under /usr or /opt is mounted read-only into the box; the class's
    submissions, the grading folder and solutions/ under it are covered with an empty tmpfs."""
    import autograder.grading.sandbox as S

    monkeypatch.setattr(S, "bwrap_path", lambda: "/usr/bin/bwrap")
    inside = "/usr/share"  # exists on any Linux: stands for a course installed under /usr
    outside = str(tmp_path)
    cfg = S.SandboxConfig(work_dir="/tmp/x/work", ipc_dir="/tmp/x/ipc", hide=[inside, outside])
    cmd = S.bwrap_command(cfg, ["python"])
    assert ["--tmpfs", inside, "--remount-ro", inside] == cmd[cmd.index(inside) - 1:cmd.index(inside) + 3]
    assert outside not in cmd, "a folder no mount shows needs no cover"
