"""autograder.grading.answer_key: a kit module without ``CARRIES`` is boxed exactly as one with an empty ``CARRIES``."""

from autograder.grading.answer_key import _carries, stub_module

BODY = '''
def answer(x):
    return x + 1


def helper(x):
    return answer(x)


def other(x):
    return x
'''


def test_a_module_without_carries_is_stubbed_as_one_with_an_empty_carries():
    import ast

    declared = "CARRIES: dict[str, list[str]] = {}\n" + BODY
    assert _carries(ast.parse(BODY)) == {} == _carries(ast.parse(declared))
    without, replaced_without = stub_module(BODY, {"answer"}, "labX", "pkg.mod")
    empty, replaced_empty = stub_module(declared, {"answer"}, "labX", "pkg.mod")
    assert replaced_without == replaced_empty == ["answer"]
    assert empty == "CARRIES: dict[str, list[str]] = {}\n" + without
    # and a CARRIES that names the helper stubs it with the answer: the declaration is read
    _, replaced = stub_module('CARRIES = {"helper": ["answer"]}\n' + BODY, {"answer"}, "labX", "pkg.mod")
    assert sorted(replaced) == ["answer", "helper"]
