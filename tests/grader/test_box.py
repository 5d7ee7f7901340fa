"""The box holds what the lab needs, nothing else (issue 27): every alias of a lab's answers we
know of fails inside the box built to grade that lab, and what the lab itself uses is there.

Each alias is a line of code that would compute a graded value of the lab with the kit's own
code under another name (a later lab's loss that reduces to this lab's function, a helper that
is a tempered softmax, a merge that contains the label conversion, ...). Inside the box it must
raise ImportError (the module is not part of the lab) or the stub's RuntimeError. Add a line
whenever a new alias is found.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.grading import answer_key as AK
from autograder.cells import is_test_cell
from autograder.labs import find_labs

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
PACKAGE = REPO / "rlhf_helpers"

SETUP = "import torch\nz = torch.randn(2, 6)\np = torch.softmax(z, -1)\n"
ALIASES: dict[str, list[str]] = {
    "lab1_sampling": [
        "from rlhf_helpers.kl import optimal_policy; optimal_policy(torch.ones(6) / 6, z[0], 0.7)",
        "from rlhf_helpers.sampling import softmax_with_temperature as f; f(z, 0.7)",
        "from rlhf_helpers.sampling import top_k_filter as f; f(z, 2)",
        "from rlhf_helpers.sampling import top_p_filter as f; f(z, 0.9)",
        "from rlhf_helpers.sampling import apply_repetition_penalty as f; f(z, torch.tensor([[1]]), 1.3)",
        "from rlhf_helpers.sampling import TokenBiasProcessor as f; f({1: 2.0})",
        "from rlhf_helpers.sampling import generate_ids as f; f(None, None, 'x')",
        "from rlhf_helpers.sampling import sample_completions as f; f(None, None, ['x'], 1, 4)",
        "from rlhf_helpers.sampling import beam_search as f; f(None, None, 1, 1)",
        "from rlhf_helpers.frontier import sample_groups as f; f(None, None, [], 1, None)",
        "from rlhf_helpers.rewards import rollout as f; f(None, None, [], None)",
    ],
    "lab2_rewards": [
        "from rlhf_helpers.rewards import scores_from_pipe_outputs as f; f([[{'label': 'POSITIVE', 'score': 1.0}]])",
        "from rlhf_helpers.rewards import pipeline_rewards",
        "from rlhf_helpers.rewards import LengthSampler as f; f(2, 8)()",
        "from rlhf_helpers.ppo import LengthSampler as f; f(2, 8)()",
        "from rlhf_helpers.kl import estimator_summary as f; f(p[0], p[1], 10)",
        "from rlhf_helpers.finetune import positive_scores",
        "from rlhf_helpers.frontier import sample_groups",
        "from rlhf_helpers import data; data.make_preference_records(None, None, None, ['x'], 4)",
    ],
    "lab3_ppo": [
        "from rlhf_helpers.ppo import ppo_update as f; f(None, None, None, None, [], [], [], 0)",
        "from rlhf_helpers.ppo import PPOTrainer as f; f(None, None, None)",
        "from rlhf_helpers.ppo import compute_gae as f; f(z, z, torch.ones_like(z), 1.0, 0.95)",
        "from rlhf_helpers.ppo import ppo_policy_loss as f; f(z, z, z, torch.ones_like(z), 0.2)",
        "from rlhf_helpers.ppo import _last_token_index as f; f(torch.ones(2, 3))",
        "from rlhf_helpers.ppo import policy_gradient_estimate as f; f(z, torch.tensor([0, 1]), torch.ones(2))",
    ],
    "lab4_kl_beta": [
        "from rlhf_helpers.kl import kl_divergence as f; f(p[0], p[1])",
        "from rlhf_helpers.kl import check_distribution as f; f(p[0])",
        "from rlhf_helpers.kl import kl_estimators as f; f(p[0].log(), p[1].log())",
        "from rlhf_helpers.kl import optimal_policy as f; f(p[0], z[0], 1.0)",
        "from rlhf_helpers.kl import beta_explorer_state as f; f()",
        "from rlhf_helpers.kl import estimator_summary as f; f(p[0], p[1], 10)",
        "from rlhf_helpers.frontier import _kl_to_samples as f; f(['a', 'b'], torch.tensor([0.3, 0.7]))",
        "from rlhf_helpers.agreement import fleiss_kappa",
    ],
    "lab5_dpo_derivation": [
        "from rlhf_helpers.reward_model import pairwise_loss as f; f(z[0], z[1])",
        "from rlhf_helpers.dpo import dpo_gradient_weight as f; f(z[0], z[1])",
        "from rlhf_helpers.dpo import dpo_loss as f; f(z[0], z[1], z[0], z[1], 0.1)",
        "from rlhf_helpers.sequences import logprobs_from_logits as f; f(z[None], torch.tensor([[1, 2]]))",
        "from rlhf_helpers.sequences import causal_lm_logprobs as f; f(None, None, None, 1)",
        "from rlhf_helpers.sampling import sequence_logprob as f; f(None, None, None)",
        "from rlhf_helpers.dpo import batch_logps as f; f(None, None, [], [])",
    ],
    "lab6_dpo_hf": [
        "from rlhf_helpers.data import record_to_pair as f; f({'prefix': 'a', 'completions': [' b', ' c'], 'scores': [1, 0]})",
        "from rlhf_helpers.finetune import _check_record as f; f({})",
        "from rlhf_helpers.finetune import to_preference_format as f; f({})",
        "from rlhf_helpers.sampling import generate_text as f; f(None, None, 'x')",
        # sampling.sample_completions stays (the hub profile builds its records with it): the hand-off
        # check refuses it instead, see test_aliases_the_box_keeps_are_refused_by_name
        "from rlhf_helpers.plots import plot_training_curves as f; f([])",
        "from rlhf_helpers.plots import plot_log_history as f; f([], ['loss'])",
    ],
    "lab7_beyond_ppo": [
        "from rlhf_helpers.dpo import bradley_terry_probability as f; f(z[0], z[1])",
        "from rlhf_helpers.dpo import dpo_loss as f; f(z[0], z[1], z[0] * 0, z[1] * 0, 1.0)",
        "from rlhf_helpers.reward_model import pairwise_loss as f; f(z[0], z[1])",
        "from rlhf_helpers.reward_model import trl_reward_loss as f; f(None, None, None)",
        "from rlhf_helpers.rloo_grpo import rloo_advantages as f; f(z.flatten(), 2)",
        "from rlhf_helpers.rloo_grpo import _groups as f; f(z.flatten(), 2)",
        "from rlhf_helpers.frontier import best_of_n_kl_bound as f; f(4)",
        "from rlhf_helpers.frontier import best_of_n_curve as f; f([['a']], torch.zeros(1, 1), {}, [4])",
        "from rlhf_helpers.agreement import wilson_interval",
    ],
    "lab8_human_feedback": [
        "from rlhf_helpers.labelling import labels_to_preferences as f; f([])",
        "from rlhf_helpers.agreement import cohens_kappa as f; f([1, 0], [1, 1])",
        "from rlhf_helpers.agreement import wilson_interval as f; f(3, 5)",
        "from rlhf_helpers.agreement import fleiss_kappa as f; f([[1, 1]])",
        "from rlhf_helpers.class_merge import merge_label_files as f; f([])",
        # class_merge.write_class_preferences stays: it writes rows the merge made, and does no graded work
        "from rlhf_helpers.frontier import best_of_n_kl_bound",
    ],
    "lab9_verifiable_rewards": [
        "from rlhf_helpers.verifiable import to_sft_example as f; f({'prompt': '1+2=', 'answer': '3'})",
        "from rlhf_helpers.verifiable import check_completion_only_loss as f; f({}, None, [])",
        "from rlhf_helpers.verifiable import parse_answer as f; f('<answer>3</answer>')",
        "from rlhf_helpers.verifiable import exact_match_reward as f; f(['<answer>3</answer>'], ['3'])",
        "from rlhf_helpers.verifiable import format_reward as f; f(['<answer>3</answer>'])",
        "from rlhf_helpers.verifiable import pass_at_k as f; f(4, 1, 2)",
        # the estimator's default is the kit's pass_at_k: with none passed, the curve reaches the stub
        "from rlhf_helpers.verifiable import pass_at_k_curve as f; f([1, 2], 4, [2])",
    ],
}
"""Lab -> code that would compute one of the lab's graded values with the kit's code."""

PROBE = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import rlhf_helpers
assert rlhf_helpers.__file__.startswith(sys.argv[1]), rlhf_helpers.__file__
results = []
for line in json.loads(sys.argv[2]):
    space = {}
    exec(SETUP, space)
    try:
        exec(line, space)
        results.append((line, "worked"))
    except ImportError as exc:
        results.append((line, "ImportError: " + str(exc)))
    except RuntimeError as exc:
        results.append((line, "RuntimeError: " + str(exc)))
    except Exception as exc:
        results.append((line, type(exc).__name__ + ": " + str(exc)))
print(json.dumps(results))
'''


def _box_results(lab: str, tmp_path: Path, lines: list[str]) -> list[tuple[str, str]]:
    box = tmp_path / "box"
    AK.lab_box(PACKAGE, SOLUTIONS, lab, box / "rlhf_helpers")
    (box / "rlhf_helpers" / "world").rmdir()
    (box / "rlhf_helpers" / "world").symlink_to(PACKAGE / "world")
    run = subprocess.run([sys.executable, "-c", PROBE.replace("SETUP", repr(SETUP)), str(box), json.dumps(lines)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    return [tuple(r) for r in json.loads(run.stdout.strip().splitlines()[-1])]


def _hidden(outcome: str) -> bool:
    return outcome.startswith("ImportError: rlhf_helpers.") or (
        outcome.startswith("RuntimeError: rlhf_helpers.") and ("not available while" in outcome or "not part of" in outcome))


@pytest.mark.parametrize("lab", sorted(ALIASES))
def test_every_known_alias_fails_in_the_labs_box(lab, tmp_path):
    assert lab in find_labs(SOLUTIONS), f"{lab} is listed here but not under solutions/"
    results = _box_results(lab, tmp_path, ALIASES[lab])
    reachable = [f"{line}  ->  {outcome}" for line, outcome in results if not _hidden(outcome)]
    assert not reachable, f"{lab}: these aliases of its answers are reachable in its box:\n" + "\n".join(reachable)


def test_every_lab_has_its_aliases_listed():
    assert sorted(ALIASES) == find_labs(SOLUTIONS)


def test_what_the_lab_uses_is_in_its_box(tmp_path):
    """The helpers a lab hands out stay: lab 3's padding and masked statistics, lab 7's frontier tools."""
    ok = ["from rlhf_helpers.sequences import masked_mean as f; f(z, torch.ones_like(z))",
          "from rlhf_helpers.ppo import pad_rollouts",
          "from rlhf_helpers.rewards import LengthSampler as f; f(2, 8)()"]
    assert all(outcome == "worked" for _line, outcome in _box_results("lab3_ppo", tmp_path, ok))
    seven = ["from rlhf_helpers.frontier import best_of_n_curve as f; f([['a']], torch.zeros(1, 1), {}, [4], "
             "kl_bound_fn=lambda n: 0.5)"]
    assert all(outcome == "worked" for _line, outcome in _box_results("lab7_beyond_ppo", tmp_path / "7", seven))
    nine = ["from rlhf_helpers.verifiable import first_number as f; assert f('? answer: 85') == 85",
            "from rlhf_helpers.verifiable import pass_at_k_curve as f; assert f([1, 4], 4, [1], estimator=lambda n, c, k: c / n) == [0.625]",
            "from rlhf_helpers.arithmetic import careless_sum as f; assert f(47, 38) == 75"]
    assert all(outcome == "worked" for _line, outcome in _box_results("lab9_verifiable_rewards", tmp_path / "9", nine))


KEPT = {("lab6_dpo_hf", "generate_completions"): "from rlhf_helpers.sampling import sample_completions as _s\n"
                                                  "def generate_completions(model, tokenizer, prompts, *a, **k):\n"
                                                  "    return [c[0] for c in _s(model, tokenizer, prompts, 1, 8)]\n"}
"""Aliases a lab's box must keep (the lab's own code needs them): each must be refused by name."""


@pytest.mark.parametrize("lab,name", sorted(KEPT))
def test_aliases_the_box_keeps_are_refused_by_name(lab, name):
    import nbformat

    from autograder.grading import judge as J

    nb = nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
    cells = [(KEPT[(lab, name)] if c.metadata.get("nbgrader", {}).get("grade_id") == name else c.source,
              is_test_cell(c)) for c in nb.cells if c.cell_type == "code"]
    graded = {n: AK.equivalents(nb).get(n, []) for n in AK.learner_names(nb)}
    assert name in J.handoffs(cells, graded)
