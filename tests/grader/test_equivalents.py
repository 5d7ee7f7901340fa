"""The families of ready-made equivalents (autograder.grading.equivalents) against the installed libraries.

A sibling a new version adds (a logits processor, a KL helper, a TRL log-prob helper) must be put
in a family or in UNRELATED with a reason: these tests fail until it is.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import nbformat
import pytest

from autograder.grading import equivalents as E
from rlhf_helpers.observations import _resolve

REPO = Path(__file__).resolve().parents[2]
MEMBERS = sorted({m for members in E.FAMILIES.values() for m in members})


def _installed(path: str) -> bool:
    try:
        importlib.import_module(path.split(".")[0])
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("path", MEMBERS)
def test_every_member_resolves_where_its_library_is_installed(path):
    if not _installed(path):
        pytest.skip(f"{path.split('.')[0]} is not installed (nor in the grading box)")
    assert _resolve(path) is not None, f"{path} no longer exists: rename it in autograder/grading/equivalents.py"


def test_every_equivalent_a_lab_names_is_in_a_family():
    for nb_path in sorted((REPO / "solutions").glob("*/*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            for path in cell.metadata.get("rlhf_course", {}).get("equivalents", []):
                assert path.startswith("rlhf_helpers.") or E.family_of(path), \
                    f"{nb_path.name}: {path} is in no family of autograder/grading/equivalents.py"


def test_naming_one_member_names_its_family():
    expanded = E.expand(["torch.nn.functional.kl_div"])
    assert expanded[0] == "torch.nn.functional.kl_div" and "torch.distributions.kl._kl_categorical_categorical" in expanded
    assert E.expand(["rlhf_helpers.data.record_to_pair"]) == ["rlhf_helpers.data.record_to_pair"]


def _classified(name: str) -> bool:
    return any(m.endswith("." + name) for m in MEMBERS) or name in E.UNRELATED


def test_every_logits_processor_of_transformers_is_classified():
    import transformers.generation.logits_process as lp

    names = [n for n, obj in vars(lp).items() if inspect.isclass(obj) and issubclass(obj, lp.LogitsProcessor)]
    assert len(names) > 20
    missing = [n for n in names if not _classified(n)]
    assert not missing, f"new logits processors: put each in a family or in UNRELATED: {missing}"


def test_every_categorical_kl_helper_of_torch_is_in_the_kl_family():
    import torch.distributions.kl as kl

    helpers = [n for n in dir(kl) if n.startswith("_kl_") and "categorical" in n]
    assert helpers and all(f"torch.distributions.kl.{n}" in E.FAMILIES["kl"] for n in helpers), helpers


def test_every_log_prob_helper_of_trl_is_classified():
    import trl
    import trl.trainer.utils as utils

    found = [n for n in dir(utils) if "log_softmax" in n or "LogProb" in n]
    for cls in (trl.DPOTrainer, trl.GRPOTrainer, trl.RLOOTrainer, trl.KTOTrainer, trl.RewardTrainer):
        found += [f"{cls.__name__}.{m}" for m, _ in inspect.getmembers(cls)
                  if not m.startswith("__") and ("logp" in m.lower() or "log_prob" in m.lower())]
    assert found
    missing = [n for n in found if not _classified(n)]
    assert not missing, f"new TRL log-prob helpers: put each in a family or in UNRELATED: {missing}"


def test_every_decoding_method_of_generation_mixin_is_classified():
    from transformers import GenerationMixin

    names = [m for m in dir(GenerationMixin) if m == "generate" or m == "_sample" or m.endswith(("_search", "_decoding"))]
    missing = [n for n in names if not _classified(f"GenerationMixin.{n}")]
    assert not missing, f"new decoding methods: put each in the generate family or in UNRELATED: {missing}"
