"""Lab 9's tests refuse the verifiers and estimators a learner gets wrong in plausible ways.

Each wrong answer below is run against its lab test cell (visible and hidden tests) as a notebook
runs it, in this process (no kernel, no grader): the cell must fail. The right answer, the
solution's, must pass the same cell, so a cell that fails everything is caught too.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.cells import grade_id

REPO = Path(__file__).resolve().parents[2]
LAB = "lab9_verifiable_rewards"
SOURCE = REPO / "solutions" / LAB / f"{LAB}.ipynb"

PARSE_HEAD = "def parse_answer(completion):\n"
WRONG = {
    "parse_answer": {
        "the first of two blocks": PARSE_HEAD + (
            "    import re\n    m = re.search(r'<answer>(.*?)</answer>', completion)\n"
            "    try:\n        return int(m.group(1)) if m else None\n    except ValueError:\n        return None\n"),
        "int() of whatever is inside": PARSE_HEAD + (
            "    if completion.count('<answer>') != 1 or completion.count('</answer>') != 1:\n        return None\n"
            "    inside = completion.split('<answer>')[1].split('</answer>')[0]\n"
            "    try:\n        return int(inside)\n    except ValueError:\n        return None\n"),
        "str.isdigit (Unicode digits)": PARSE_HEAD + (
            "    if completion.count('<answer>') != 1 or completion.count('</answer>') != 1:\n        return None\n"
            "    a, b = completion.index('<answer>') + 8, completion.index('</answer>')\n"
            "    s = completion[a:b].strip() if a <= b else ''\n"
            "    d = s[1:] if s.startswith('-') else s\n"
            "    return int(s) if d.isdigit() else None\n"),
        "tags in any order": PARSE_HEAD + (
            "    import re\n    if completion.count('<answer>') != 1 or completion.count('</answer>') != 1:\n"
            "        return None\n    s = completion.replace('</answer>', '').split('<answer>')\n"
            "    m = re.search(r'-?[0-9]+', ''.join(s))\n    return int(m.group()) if m else None\n"),
    },
    "exact_match_reward": {
        "compares strings": "def exact_match_reward(completions, answer, **kwargs):\n"
                            "    return [1.0 if str(parse_answer(c)) == a else 0.0 for c, a in zip(completions, answer)]\n",
        "returns ints": "def exact_match_reward(completions, answer, **kwargs):\n"
                        "    return [int(parse_answer(c) == int(a)) for c, a in zip(completions, answer)]\n",
    },
    "format_reward": {
        "text around the block allowed": "def format_reward(completions, **kwargs):\n"
                                         "    return [1.0 if parse_answer(c) is not None else 0.0 for c in completions]\n",
    },
    "pass_at_k": {
        "1 - (1 - c/n)^k (biased)": "def pass_at_k(n, c, k):\n"
                                    "    if not 0 <= c <= n or not 1 <= k <= n:\n        raise ValueError('range')\n"
                                    "    return 1.0 - (1.0 - c / n) ** k\n",
        "no range checks": "import math\ndef pass_at_k(n, c, k):\n"
                           "    return 1.0 if n - c < k else 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))\n",
        "min(1, k c / n)": "def pass_at_k(n, c, k):\n"
                           "    if not 0 <= c <= n or not 1 <= k <= n:\n        raise ValueError('range')\n"
                           "    return min(1.0, k * c / n)\n",
    },
    "to_sft_example": {
        "EOS appended": "def to_sft_example(problem):\n"
                        "    return {'prompt': problem['prompt'], 'completion': f\"<answer>{problem['answer']}</answer><|endoftext|>\"}\n",
        "the problem's other keys kept": "def to_sft_example(problem):\n"
                                         "    return {**problem, 'completion': f\"<answer>{problem['answer']}</answer>\"}\n",
    },
    "check_completion_only_loss": {
        "labels against ids only": "def check_completion_only_loss(batch, tokenizer, examples):\n"
                                   "    m = batch['labels'] != -100\n"
                                   "    if not (batch['labels'][m] == batch['input_ids'][m]).all():\n"
                                   "        raise ValueError('labels')\n",
        "the EOS forgotten": "def check_completion_only_loss(batch, tokenizer, examples):\n"
                             "    for row, e in enumerate(examples):\n"
                             "        m = batch['labels'][row] != -100\n"
                             "        if tokenizer.decode(batch['input_ids'][row][m].tolist()) != e['completion']:\n"
                             "            raise ValueError(row)\n",
    },
}


def _cells() -> tuple[dict[str, str], dict[str, str]]:
    """(grade_id -> solution source, grade_id -> test source) of lab 9."""
    nb = nbformat.read(SOURCE, as_version=4)
    solutions = {grade_id(c): c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")
                 and c.cell_type == "code"}
    tests = {grade_id(c): c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
             and c.cell_type == "code"}
    return solutions, tests


def _run(function_source: str, name: str) -> None:
    """Define the solution's functions, replace ``name`` by ``function_source``, run ``name``'s test cell."""
    solutions, tests = _cells()
    space: dict = {}
    exec("import torch", space)
    for source in solutions.values():
        exec(source, space)
    exec(function_source, space)
    exec(tests[f"test_{name}"], space)


@pytest.mark.parametrize("name,wrong", [(n, w) for n, ws in WRONG.items() for w in ws])
def test_a_wrong_answer_fails_its_test(name, wrong):
    """A check fails (AssertionError), or the wrong code raises where a right batch needs none."""
    with pytest.raises((AssertionError, ValueError)):
        _run(WRONG[name][wrong], name)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_the_solution_passes_the_same_test(name):
    solutions, _ = _cells()
    _run(solutions[name], name)
