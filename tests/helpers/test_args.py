"""rlhf_helpers._args: the integer check the kit's modules share (TypeError for a type, ValueError for a range)."""

import pytest
import torch

from rlhf_helpers import _args
from rlhf_helpers.dpo import sample_bt_preferences
from rlhf_helpers.frontier import best_of_n_kl_bound
from rlhf_helpers.kl import estimator_summary
from rlhf_helpers.reviews import generate_reviews
from rlhf_helpers.rloo_grpo import rloo_advantages
from rlhf_helpers.sampling import top_k_filter


def test_integer_returns_the_int_and_refuses_a_wrong_type_or_range():
    assert _args.integer(3, "n", minimum=1) == 3
    assert _args.integer(-5, "n") == -5  # no minimum: any int
    for bad in (2.0, True, "3", None):
        with pytest.raises(TypeError, match=r"^n should be an int, got"):
            _args.integer(bad, "n", minimum=1)
    with pytest.raises(ValueError, match=r"^k should be an int >= 0, got -1\. \(0 keeps all\)$"):
        _args.integer(-1, "k", minimum=0, hint="(0 keeps all)")


@pytest.mark.parametrize("call, name", [
    (lambda bad: best_of_n_kl_bound(bad), "n"),
    (lambda bad: top_k_filter(torch.zeros(4), bad), "k"),
    (lambda bad: sample_bt_preferences(torch.ones(2) / 2, torch.zeros(2), bad), "num_pairs"),
    (lambda bad: rloo_advantages(torch.zeros(4), bad), "num_generations"),
    (lambda bad: generate_reviews(bad), "n"),
])
def test_the_kits_integer_arguments_keep_the_promise(call, name):
    """A float or a bool is a TypeError naming the argument; a negative int a ValueError naming it."""
    for bad in (2.0, True):
        with pytest.raises(TypeError, match=f"^{name} should be an int"):
            call(bad)
    with pytest.raises(ValueError, match=f"^{name} should be an int >= "):
        call(-1)


def test_estimator_summary_num_samples_is_checked_by_type_then_range():
    p = torch.tensor([0.5, 0.5])
    with pytest.raises(TypeError, match="num_samples should be an int"):
        estimator_summary(p, p, 10.0)
    with pytest.raises(ValueError, match="num_samples should be an int >= 2"):
        estimator_summary(p, p, 1)
