"""rlhf_helpers.reward_model: the Bradley-Terry loss, pairwise accuracy, scoring texts, and TRL agreement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rlhf_helpers.reward_model import (
    pairwise_accuracy,
    pairwise_loss,
    preference_texts,
    reward_model_scores,
    tiny_reward_model,
    trl_reward_loss,
)



@pytest.fixture(scope="module")
def tokenizer():
    from rlhf_helpers.models import load_policy

    return load_policy(device="cpu")[1]


@pytest.fixture(scope="module")
def pairs():
    from rlhf_helpers.data import load_preference_pairs

    return load_preference_pairs("test").select(range(6))


# ----------------------------------------------------------------------------- pairwise_loss / accuracy
def test_pairwise_loss_by_hand_and_gradient():
    c, r = torch.tensor([2.0, 1.0], requires_grad=True), torch.tensor([0.0, 1.0], requires_grad=True)
    loss = pairwise_loss(c, r)
    assert loss.shape == () and loss.dtype == torch.float32
    assert loss.item() == pytest.approx((math.log1p(math.exp(-2.0)) + math.log(2.0)) / 2, abs=1e-6)
    loss.backward()
    # d/dc of -log sigmoid(c - r) / B is -(1 - sigmoid(c - r)) / B, and the opposite for r
    expected = -(1 - torch.sigmoid(torch.tensor([2.0, 0.0]))) / 2
    torch.testing.assert_close(c.grad, expected)
    torch.testing.assert_close(r.grad, -expected)


def test_pairwise_loss_stable_and_shift_invariant():
    assert pairwise_loss(torch.tensor([-100.0]), torch.tensor([100.0])).item() == pytest.approx(200.0)
    c, r = torch.randn(9, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    torch.testing.assert_close(pairwise_loss(c + 5, r + 5), pairwise_loss(c, r))
    assert pairwise_loss(c, r).dtype == torch.float64


@pytest.mark.parametrize("bad", [([1, 2], [0, 1]), (torch.zeros(3), torch.zeros(2)), (torch.zeros(2, 2), torch.zeros(2, 2)),
                                 (torch.zeros(0), torch.zeros(0))])
def test_pairwise_loss_and_accuracy_refuse_bad_input(bad):
    for fn in (pairwise_loss, pairwise_accuracy):
        with pytest.raises((TypeError, ValueError)):
            fn(*bad)


def test_pairwise_accuracy_ties_are_misses():
    acc = pairwise_accuracy(torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([1.0, 1.0, 0.0, 5.0]))
    assert type(acc) is float and acc == 0.5


# ----------------------------------------------------------------------------- scoring and TRL
def test_scores_do_not_depend_on_batching_or_padding_side(tokenizer, pairs):
    model = tiny_reward_model(tokenizer, seed=1)
    chosen, _ = preference_texts(pairs)
    tokenizer.padding_side = "left"   # the policy's setting: the scorer must pad on the right anyway
    together = reward_model_scores(model, tokenizer, chosen)
    alone = torch.cat([reward_model_scores(model, tokenizer, [t]) for t in chosen])
    assert together.shape == (len(chosen),) and together.dtype == torch.float32
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    assert tokenizer.padding_side == "left"


def test_tiny_reward_model_is_the_same_for_a_seed(tokenizer):
    a, b, c = tiny_reward_model(tokenizer, 0), tiny_reward_model(tokenizer, 0), tiny_reward_model(tokenizer, 1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_our_loss_equals_reward_trainer(tokenizer, pairs):
    """TRL's RewardTrainer.compute_loss on one batch equals pairwise_loss of the scores, which
    reward_model_scores reproduces on prompt + completion + EOS (TRL's tokenising)."""
    model = tiny_reward_model(tokenizer, seed=2)
    state = torch.random.get_rng_state()
    trl = trl_reward_loss(model, tokenizer, pairs)
    assert torch.equal(state, torch.random.get_rng_state())
    chosen, rejected = preference_texts(pairs)
    rc = reward_model_scores(model, tokenizer, [t + tokenizer.eos_token for t in chosen])
    rr = reward_model_scores(model, tokenizer, [t + tokenizer.eos_token for t in rejected])
    torch.testing.assert_close(rc, trl.rewards_chosen, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rr, trl.rewards_rejected, atol=1e-5, rtol=1e-5)
    assert pairwise_loss(rc, rr).item() == pytest.approx(trl.loss, abs=1e-6)
    assert trl.input_ids.shape[0] == 2 * len(pairs)


def test_pairwise_loss_matches_binary_cross_entropy():
    c, r = torch.randn(20), torch.randn(20)
    torch.testing.assert_close(pairwise_loss(c, r), F.binary_cross_entropy_with_logits(c - r, torch.ones(20)))
