"""The answer key's stubs: for every lab, every kit module holding one of its answers, one test.

While a lab is graded, the box's copy of each kit module has the lab's graded functions, and the
private helpers that do their work (``CARRIES``), replaced by stubs that raise and say why; the
rest of the module is the kit's own code, unchanged, and still runs.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from _box import KIT, REPO, boxed
from _box import graded_names as _graded

from autograder.cells import definitions
from autograder.labs import find_labs

SOLUTIONS = REPO / "solutions"


def _defined(path: Path) -> dict[str, ast.stmt]:
    return {stmt.name: stmt for stmt in definitions(ast.parse(path.read_text(encoding="utf-8")))}


def _carries(module: str) -> dict[str, list[str]]:
    return getattr(importlib.import_module(f"rlhf_helpers.{module}"), "CARRIES", {})


def _cases() -> list[tuple[str, str]]:
    """(lab, module) for every module defining one of the lab's graded names or a helper carrying one."""
    return [(lab, path.stem) for lab in find_labs(SOLUTIONS) for path in sorted(KIT.glob("*.py"))
            if _graded(lab) & (set(_defined(path)) | {n for c in _carries(path.stem).values() for n in c})]


CARRIED = {
    ("lab1_sampling", "sampling"): {"generate_ids"},
    ("lab2_rewards", "rewards"): {"_check_rollout_args", "_cut_response", "_generate_batch"},
    ("lab2_rewards", "kl"): {"estimator_summary", "evaluate_reward_and_kl"},
    ("lab3_ppo", "ppo"): {"_last_token_index", "_optimise", "_policy_forward", "_rollout_pass", "ppo_update"},
    ("lab4_kl_beta", "kl"): {"check_distribution"},
    ("lab5_dpo_derivation", "dpo"): {"dpo_gradient_weight"},
    ("lab5_dpo_derivation", "sequences"): {"logprobs_from_logits", "causal_lm_logprobs", "response_logprobs"},
    ("lab5_dpo_derivation", "sampling"): {"sequence_logprob"},
    ("lab6_dpo_hf", "finetune"): {"_check_record", "_is_tie"},
    ("lab6_dpo_hf", "data"): {"record_to_pair"},
    ("lab7_beyond_ppo", "reward_model"): {"trl_reward_loss"},
    ("lab8_human_feedback", "class_merge"): {"merge_label_files"},
}
"""The helpers, beyond the graded functions themselves, each lab's box must stub: they do a graded
function's work under another name (written out here, so an entry dropped from a module's CARRIES fails)."""


def test_every_lab_has_answers_in_the_kit():
    assert {lab for lab, _ in _cases()} == set(find_labs(SOLUTIONS)) != set()


def _expected(lab: str, module: str) -> set[str]:
    """The lab's graded names the module defines, and the helpers that carry one of them."""
    return (_graded(lab) & set(_defined(KIT / f"{module}.py"))) | CARRIED.get((lab, module), set())


def test_the_table_of_carried_helpers_is_the_modules_own():
    said = {(lab, module): {h for h, carried in _carries(module).items() if _graded(lab) & set(carried)}
            for lab, module in _cases()}
    assert {k: v for k, v in said.items() if v} == CARRIED


@pytest.mark.parametrize(("lab", "module"), _cases())
def test_the_box_stubs_the_answers_and_keeps_the_rest(lab, module, tmp_path, monkeypatch):
    loaded, replaced, text = boxed(lab, module, tmp_path, monkeypatch)
    assert set(replaced) == _expected(lab, module)
    original, kept = _defined(KIT / f"{module}.py"), _defined_in(text)
    for name in set(original) - set(replaced):
        assert ast.dump(kept[name]) == ast.dump(original[name]), f"{module}.{name} changed in {lab}'s box"
    for name in replaced:  # the boxed module ran; each stub says why its answer is not there
        with pytest.raises(RuntimeError, match=f"not available while {lab} is graded"):
            getattr(loaded, name)()


def _defined_in(text: str) -> dict[str, ast.stmt]:
    return {stmt.name: stmt for stmt in definitions(ast.parse(text))}
