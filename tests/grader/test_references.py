"""Names resolved as Python resolves them (autograder.grading.references) and the hand-off check built on it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.grading import judge as J
from autograder.grading.references import END, Namespace

REPO = Path(__file__).resolve().parents[2]


def _cells(*codes: str) -> list[tuple[str, bool]]:
    return [(code, False) for code in codes]


def test_locals_are_the_functions_own():
    ns = Namespace([
        "import transformers\nout = model.generate(x)\nlogits = transformers.TopKLogitsWarper(3)",
        "def f(model, logits):\n    out = model(logits)\n    first = [t for t in out]\n    return first\n",
    ])
    reach = ns.reach("f")
    assert [b.name for b in reach.bindings] == ["f"]
    assert reach.paths == set() and reach.attrs == set()


def test_free_names_follow_helpers_aliases_decorators_and_partials():
    ns = Namespace([
        "import functools\nfrom transformers import TopKLogitsWarper as W",
        "def _impl(z, k):\n    return W(top_k=k)(None, z)\n",
        "def deco(fn):\n    return fn\n",
        "@deco\ndef top_k(z, k):\n    return helper(z, k)\n",
        "helper = functools.partial(_impl)",
    ])
    reach = ns.reach("top_k", at=END)
    assert {b.name for b in reach.bindings} == {"top_k", "deco", "helper", "functools", "_impl", "W"}
    assert "transformers.TopKLogitsWarper" in reach.paths


def test_f_equals_f_reaches_the_binding_before_it():
    ns = Namespace(["def f(x):\n    return x.generate()\n", "f = f", "def f(x):\n    return 1\n"])
    at_second = (2, 0)  # a test between the rebinding and the last definition
    reach = ns.reach("f", at=at_second)
    assert [b.kind for b in reach.bindings] == ["assign", "def"] and "generate" in reach.attrs
    assert ns.reach("f").attrs == set(), "after the last definition, f is that definition"


def test_alias_of_a_module_becomes_a_path():
    ns = Namespace(["import torch\nF = torch.nn.functional", "def kl(p, q):\n    return F.kl_div(q.log(), p)\n"])
    assert "torch.nn.functional.kl_div" in ns.reach("kl").paths


def test_a_class_reaches_its_methods_and_bases():
    ns = Namespace(["from transformers import LogitsProcessor, TopKLogitsWarper",
                    "class P(LogitsProcessor):\n    def __call__(self, ids, scores):\n"
                    "        return TopKLogitsWarper(2)(ids, scores)\n    def generate(self):\n        return 1\n"])
    reach = ns.reach("P")
    assert {"transformers.LogitsProcessor", "transformers.TopKLogitsWarper"} <= reach.paths
    assert "generate" in reach.members


def test_an_import_inside_a_function_is_followed():
    ns = Namespace(["def top_k(z, k):\n    from transformers import TopKLogitsWarper as W\n    return W(k)(None, z)\n"])
    assert "transformers.TopKLogitsWarper" in ns.reach("top_k").paths
    graded = {"top_k": ["transformers.TopKLogitsWarper"]}
    assert "top_k" in J.handoffs(_cells("def top_k(z, k):\n    import transformers\n"
                                        "    return transformers.TopKLogitsWarper(k)(None, z)\n"), graded)


def test_a_module_imported_inside_a_function_resolves_its_attributes():
    ns = Namespace(["def top_k(p, k):\n    import heapq as h\n    return h.nlargest(k, p)\n"])
    assert "heapq.nlargest" in ns.reach("top_k").paths


def test_a_cell_magic_with_a_python_body_is_read_as_python():
    ns = Namespace(["%%time\nimport heapq\ndef f(p):\n    return heapq.nlargest(2, p)\n"])
    assert "heapq.nlargest" in ns.reach("f").paths


def test_members_of_the_learners_own_classes_are_theirs():
    ns = Namespace(["from typing import NamedTuple\nclass Est(NamedTuple):\n    mean: float\n    sem: float\n",
                    "class Acc:\n    def __init__(self):\n        self.generate = 1\n",
                    "def f(x):\n    e = Est(1.0, 2.0)\n    a = Acc()\n    return e.sem + a.generate\n"])
    reach = ns.reach("f")
    assert {"sem", "generate"} <= reach.attrs and not ({"sem", "generate"} & reach.names())


def test_lambda_star_parameters_are_its_own():
    ns = Namespace(["out = model.generate(x)", "_join = lambda *out, **ref: out\ndef f(x):\n    return _join(x)\n"])
    assert "generate" not in ns.reach("f").names()


def test_magics_do_not_hide_a_cell():
    ns = Namespace(["%matplotlib inline\nimport heapq\ndef f(p):\n    return heapq.nlargest(2, p)\n"])
    assert "heapq.nlargest" in ns.reach("f").paths


def test_dict_keys_are_data_but_getattr_names_are_names():
    graded = {"mean_sem": ["scipy.stats.sem"]}
    honest = "def mean_sem(x):\n    out = {'mean': 1.0, 'sem': 0.1}\n    return out['mean'], out['sem']\n"
    assert J.handoffs(_cells(honest), graded) == {}
    sneaky = "import scipy.stats as st\ndef mean_sem(x):\n    return 1.0, getattr(st, 'sem')(x)\n"
    assert "mean_sem" in J.handoffs(_cells(sneaky), graded)


def _lab_cells(lab: str, replace: dict[str, str]) -> list[tuple[str, bool]]:
    from autograder.cells import is_test_cell

    nb = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        out.append((replace.get(gid, cell.source), is_test_cell(cell)))
    return out


def _equivalents(lab: str) -> dict[str, list[str]]:
    from autograder.grading import answer_key as AK

    nb = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    return {n: AK.equivalents(nb).get(n, []) for n in AK.learner_names(nb)}


def test_lab1_local_out_costs_nothing():
    """Issue 27: an honest generate_text whose last lines are `out = ...; return out` was refused as
    handed off to GenerationMixin.generate because lab 1 has a top-level `out = model.generate(...)`."""
    lab = "lab1_sampling"
    nb = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    source = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "beam_search")
    body = source.replace("    return beams[0, prompt_length:], float(scores[0])",
                          "    out = beams[0, prompt_length:], float(scores[0])\n    return out")
    assert body != source
    assert J.handoffs(_lab_cells(lab, {"beam_search": body}), _equivalents(lab)) == {}
    cheat = source.replace("    ### BEGIN SOLUTION", "    ### BEGIN SOLUTION\n    return out", 1)
    handed = J.handoffs(_lab_cells(lab, {"beam_search": cheat}), _equivalents(lab))
    assert "beam_search" in handed, "a function that really returns the global `out` relies on model.generate"


@pytest.mark.parametrize("lab", sorted(p.name for p in (REPO / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file()))
def test_the_solutions_hand_nothing_off(lab):
    assert J.handoffs(_lab_cells(lab, {}), _equivalents(lab)) == {}
