"""rlhf_helpers.dpo: Bradley-Terry, implied rewards, sequence log-probs, the DPO loss, and TRL agreement."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli

from rlhf_helpers.dpo import (
    PreferenceBatch,
    TRLLoss,
    batch_logps,
    bradley_terry_probability,
    completion_logps,
    dpo_gradient_weight,
    dpo_loss,
    implied_reward,
    preference_logps,
    sample_bt_preferences,
    sequence_logprobs,
    tokenize_preference_pairs,
    trl_dpo_loss_on_batch,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _randn(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- bradley_terry_probability
def test_bradley_terry_matches_bernoulli_logits():
    rw, rl = _randn(7, seed=1), _randn(7, seed=2)
    torch.testing.assert_close(bradley_terry_probability(rw, rl), Bernoulli(logits=rw - rl).probs)


def test_bradley_terry_shift_invariant_and_stable():
    rw, rl = 3 * _randn(4, 5, seed=3), 3 * _randn(4, 5, seed=4)
    shift = 50 * _randn(4, 1, seed=5)  # one constant per prompt (row)
    torch.testing.assert_close(bradley_terry_probability(rw + shift, rl + shift), bradley_terry_probability(rw, rl))
    big = bradley_terry_probability(torch.tensor([1000.0, -1000.0, 500.0]), torch.tensor([999.0, -1000.0, -500.0]))
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, torch.tensor([torch.sigmoid(torch.tensor(1.0)).item(), 0.5, 1.0]))


def test_bradley_terry_rejects_integers():
    with pytest.raises(TypeError, match="floating"):
        bradley_terry_probability(torch.tensor([1, 2]), torch.tensor([0.0, 1.0]))


# ----------------------------------------------------------------------------- implied_reward
def test_implied_reward_value_dtype_grad():
    pol = _randn(6, seed=1, dtype=torch.float64).requires_grad_()
    ref = _randn(6, seed=2, dtype=torch.float64)
    r = implied_reward(pol, ref, 0.25)
    assert r.dtype == torch.float64 and r.shape == (6,)
    torch.testing.assert_close(r, 0.25 * (pol - ref))
    r.sum().backward()
    torch.testing.assert_close(pol.grad, torch.full((6,), 0.25, dtype=torch.float64))


@pytest.mark.parametrize("beta", [0, -0.1, math.inf, math.nan, "0.1", True])
def test_implied_reward_rejects_bad_beta(beta):
    with pytest.raises((TypeError, ValueError)):
        implied_reward(torch.zeros(2), torch.zeros(2), beta)


def test_implied_reward_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        implied_reward(torch.zeros(3), torch.zeros(4), 0.1)


def test_implied_reward_of_optimum_is_reward_minus_beta_log_z():
    from rlhf_helpers.kl import optimal_policy

    ref = torch.softmax(_randn(8, seed=1, dtype=torch.float64), -1)
    r = _randn(8, seed=2, dtype=torch.float64)
    beta = 0.7
    pi_star = optimal_policy(ref, r, beta)
    log_z = torch.logsumexp(ref.log() + r / beta, -1)
    torch.testing.assert_close(implied_reward(pi_star.log(), ref.log(), beta), r - beta * log_z)


# ----------------------------------------------------------------------------- sequence_logprobs
def _by_hand(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A loop over positions: token t is predicted by the logits at t - 1."""
    out = torch.zeros(logits.shape[0], dtype=torch.float64)
    for b in range(logits.shape[0]):
        for t in range(1, logits.shape[1]):
            if mask[b, t]:
                out[b] += torch.log_softmax(logits[b, t - 1].double(), -1)[labels[b, t]]
    return out


@pytest.mark.parametrize("mask", [
    [[0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0]],   # right padding
    [[0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]],   # padding at both ends / left
    [[0, 1, 0, 1, 0, 1], [0, 1, 1, 0, 0, 1]],   # holes in the middle
    [[0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1]],   # an empty completion sums to 0
])
def test_sequence_logprobs_by_hand(mask):
    logits = _randn(2, 6, 11, seed=7)
    labels = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(8))
    mask = torch.tensor(mask)
    got = sequence_logprobs(logits, labels, mask)
    assert got.shape == (2,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _by_hand(logits, labels, mask), atol=1e-5, rtol=1e-5)


def test_sequence_logprobs_matches_transformers_loss(tiny_policy):
    """-(mean token loss) * (number of tokens) of the model's own causal-LM loss, row by row."""
    model, _ = tiny_policy
    ids = torch.randint(1, 200, (3, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 1, 1, 0, 1]])
    with torch.no_grad():
        logits = model(ids).logits
        got = sequence_logprobs(logits, ids, mask)
        for b in range(3):
            labels = ids[b : b + 1].masked_fill(mask[b : b + 1] == 0, -100)
            loss = model(ids[b : b + 1], labels=labels).loss
            torch.testing.assert_close(got[b], -loss * mask[b, 1:].sum(), atol=1e-4, rtol=1e-5)


def test_sequence_logprobs_ignores_labels_under_the_mask():
    logits = _randn(2, 5, 7, seed=1)
    labels = torch.tensor([[3, 1, 2, 4, 0], [5, 6, 1, 2, 3]])
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    trl_labels = labels.masked_fill(mask == 0, -100)  # TRL's convention
    torch.testing.assert_close(sequence_logprobs(logits, trl_labels, mask), sequence_logprobs(logits, labels, mask))
    torch.testing.assert_close(sequence_logprobs(logits, labels, mask.bool()), sequence_logprobs(logits, labels, mask))


def test_sequence_logprobs_half_precision_upcasts():
    logits = _randn(2, 4, 9, seed=2)
    labels = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    mask = torch.ones(2, 4, dtype=torch.long)
    got = sequence_logprobs(logits.bfloat16(), labels, mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, sequence_logprobs(logits.bfloat16().float(), labels, mask))


def test_sequence_logprobs_errors():
    logits, labels, mask = torch.zeros(2, 4, 5), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        sequence_logprobs(logits[0], labels, mask)
    with pytest.raises(ValueError, match="shape"):
        sequence_logprobs(logits, labels[:, :3], mask)
    with pytest.raises(TypeError, match="integer"):
        sequence_logprobs(logits, labels.float(), mask)
    with pytest.raises(ValueError, match="0 and 1"):
        sequence_logprobs(logits, labels, 2 * mask)


# ----------------------------------------------------------------------------- dpo_loss
def _logps(b: int = 5, seed: int = 0, scale: float = 5.0, dtype=torch.float32):
    return [scale * _randn(b, seed=seed + i, dtype=dtype) - 20 for i in range(4)]


def test_dpo_loss_formula_and_rewards():
    pc, pr, rc, rr = _logps()
    losses, cr, rj = dpo_loss(pc, pr, rc, rr, 0.1)
    h = 0.1 * ((pc - rc) - (pr - rr))
    torch.testing.assert_close(losses, -torch.log(torch.sigmoid(h)))
    torch.testing.assert_close(cr, 0.1 * (pc - rc))
    torch.testing.assert_close(rj, 0.1 * (pr - rr))
    assert losses.shape == cr.shape == rj.shape == (5,)


def test_dpo_loss_extreme_log_ratios_are_finite():
    pc = torch.tensor([-500.0, 0.0, -2000.0, -1.0])
    pr = torch.tensor([0.0, -500.0, -1.0, -2000.0])
    zeros = torch.zeros(4)
    assert torch.isinf(-torch.log(torch.sigmoid(pc - pr))).any()  # the naive form breaks here
    losses, _, _ = dpo_loss(pc, pr, zeros, zeros, 1.0)
    assert torch.isfinite(losses).all()
    torch.testing.assert_close(losses, -F.logsigmoid(pc - pr))
    torch.testing.assert_close(losses[[0, 2]], torch.tensor([500.0, 1999.0]))


def test_dpo_loss_rewards_detached_and_gradient_closed_form():
    pc, pr, rc, rr = (t.double().requires_grad_() for t in _logps(dtype=torch.float64))
    beta = 0.3
    losses, cr, rj = dpo_loss(pc, pr, rc, rr, beta)
    assert losses.requires_grad and not cr.requires_grad and not rj.requires_grad
    losses.sum().backward()
    w = dpo_gradient_weight(cr, rj)  # sigma(r_l - r_w)
    torch.testing.assert_close(pc.grad, -beta * w)
    torch.testing.assert_close(pr.grad, beta * w)
    torch.testing.assert_close(rc.grad, beta * w)
    torch.testing.assert_close(rr.grad, -beta * w)


def test_dpo_loss_is_log_two_at_the_reference():
    pc, pr, _, _ = _logps()
    losses, cr, rj = dpo_loss(pc, pr, pc.clone(), pr.clone(), 0.5)
    torch.testing.assert_close(losses, torch.full((5,), math.log(2)))
    assert cr.abs().max() == 0 and rj.abs().max() == 0


def test_dpo_loss_errors():
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="same shape"):
        dpo_loss(z, z, z, torch.zeros(4), 0.1)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(z, z, z, z, 0.0)
    with pytest.raises(TypeError, match="Tensor"):
        dpo_loss([0.0], z, z, z, 0.1)


# ----------------------------------------------------------------------------- tokenising pairs
class CharTokenizer:
    """One token per character: 'a' -> 1, 'b' -> 2, ...; '#' is EOS and pad (id 0)."""

    eos_token, eos_token_id, pad_token_id = "#", 0, 0

    def __call__(self, text: str) -> dict:
        return {"input_ids": [0 if ch == "#" else ord(ch) - ord("a") + 1 for ch in text]}


def test_tokenize_preference_pairs_layout():
    batch = tokenize_preference_pairs(CharTokenizer(), ["ab", "c"], ["c", "dd#"], ["ee", "f"])
    # rows: chosen of pair 0, chosen of pair 1, rejected of pair 0, rejected of pair 1
    assert batch.input_ids.tolist() == [
        [1, 2, 3, 0, 0],   # "ab" + "c" + EOS, padded right
        [3, 4, 4, 0, 0],   # "c" + "dd#" (EOS already there: not doubled)
        [1, 2, 5, 5, 0],   # "ab" + "ee" + EOS
        [3, 6, 0, 0, 0],   # "c" + "f" + EOS, padded
    ]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch.completion_mask.tolist() == [[0, 0, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]
    truncated = tokenize_preference_pairs(CharTokenizer(), ["ab"], ["ccc"], ["d"], max_length=3)
    assert truncated.input_ids.tolist() == [[1, 2, 3], [1, 2, 4]]
    assert truncated.completion_mask.tolist() == [[0, 0, 1], [0, 0, 1]]


def test_tokenize_preference_pairs_errors():
    with pytest.raises(ValueError, match="one length"):
        tokenize_preference_pairs(CharTokenizer(), ["a", "b"], ["c"], ["d"])
    with pytest.raises(TypeError, match="list of strings"):
        tokenize_preference_pairs(CharTokenizer(), "a", ["c"], ["d"])


# ----------------------------------------------------------------------------- models: log-probs and TRL
@pytest.fixture(scope="module")
def tiny_policy():
    from rlhf_helpers.models import load_policy

    return load_policy(device="cpu")


@pytest.fixture(scope="module")
def policy_and_reference(tiny_policy):
    """The tiny policy, nudged away from itself so that log-ratios are not 0, and the reference."""
    from rlhf_helpers.models import frozen_copy

    ref, tok = tiny_policy
    ref = frozen_copy(ref)
    policy = copy.deepcopy(ref)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return policy, ref, tok


@pytest.fixture(scope="module")
def pairs():
    from rlhf_helpers.data import load_preference_pairs

    return load_preference_pairs("test").select(range(6))


def test_batch_logps_padding_side_does_not_matter(tiny_policy, pairs):
    model, tok = tiny_policy
    prompts, completions = pairs["prompt"][:4], pairs["chosen"][:4]
    with torch.no_grad():
        right = batch_logps(model, tok, prompts, completions)
        one_by_one = torch.cat([batch_logps(model, tok, [p], [c]) for p, c in zip(prompts, completions)])
        # the same sequences left-padded: completion_logps derives the positions from the attention mask
        batch = tokenize_preference_pairs(tok, prompts, completions, completions)
        n = batch.attention_mask.sum(-1)
        width = batch.input_ids.shape[1]
        left = PreferenceBatch(*(torch.stack([t[i].roll(int(width - n[i])) for i in range(len(n))])
                                 for t in (batch.input_ids, batch.attention_mask, batch.completion_mask)))
        left_logps = completion_logps(model, left)
    assert right.shape == (4,) and (right < 0).all()
    torch.testing.assert_close(right, one_by_one, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(left_logps[:4], right, atol=1e-4, rtol=1e-5)


def test_preference_logps_chosen_half_is_batch_logps(tiny_policy, pairs):
    model, tok = tiny_policy
    with torch.no_grad():
        chosen, rejected = preference_logps(model, tok, pairs)
        alone = batch_logps(model, tok, pairs["prompt"], pairs["rejected"])
    assert chosen.shape == rejected.shape == (6,)
    torch.testing.assert_close(rejected, alone, atol=1e-4, rtol=1e-5)


def test_preference_logps_accepts_lists_of_dicts(tiny_policy, pairs):
    model, tok = tiny_policy
    as_list = [pairs[i] for i in range(3)]
    with torch.no_grad():
        a = preference_logps(model, tok, as_list)
        b = preference_logps(model, tok, pairs.select(range(3)))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="column"):
        preference_logps(model, tok, pairs.rename_column("prompt", "query"))


def test_our_loss_equals_trl(policy_and_reference, pairs):
    """The kit's pipeline (tokenise like TRL, sum completion log-probs, dpo_loss) against DPOTrainer itself."""
    policy, ref, tok = policy_and_reference
    beta = 0.1
    with torch.no_grad():
        pc, pr = preference_logps(policy, tok, pairs)
        rc, rr = preference_logps(ref, tok, pairs)
    losses, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta)
    assert losses.std() > 0.01  # the pairs really differ: a meaningful comparison
    state = torch.random.get_rng_state()
    py_state = random.getstate()
    trl = trl_dpo_loss_on_batch(policy, ref, tok, pairs, beta=beta)
    assert torch.equal(torch.random.get_rng_state(), state) and random.getstate() == py_state
    assert isinstance(trl, TRLLoss)
    assert abs(losses.mean().item() - trl.loss) < 1e-5
    torch.testing.assert_close(losses, trl.per_pair, atol=1e-5, rtol=1e-5)
    assert abs(chosen_rewards.mean().item() - trl.chosen_reward) < 1e-5
    assert abs(rejected_rewards.mean().item() - trl.rejected_reward) < 1e-5
    # the caller's models are untouched (TRL patches forward and dropout on its copies)
    assert "forward" not in vars(policy) and "forward" not in vars(ref)


def test_trl_comparison_refuses_shared_reference(policy_and_reference, pairs):
    policy, _, tok = policy_and_reference
    with pytest.raises(ValueError, match="separate copy"):
        trl_dpo_loss_on_batch(policy, policy, tok, pairs)


# ----------------------------------------------------------------------------- the tabular toy
def test_sample_bt_preferences_follow_bradley_terry():
    ref = torch.tensor([0.5, 0.5])
    r = torch.tensor([1.0, 0.0])
    w, l = sample_bt_preferences(ref, r, 20000, torch.Generator().manual_seed(0))
    assert w.dtype == torch.int64 and w.shape == l.shape == (20000,)
    distinct = w != l
    share = (w[distinct] == 0).double().mean().item()
    assert abs(share - torch.sigmoid(torch.tensor(1.0)).item()) < 0.02
    again = sample_bt_preferences(ref, r, 20000, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], w) and torch.equal(again[1], l)


def test_sample_bt_preferences_errors():
    with pytest.raises(ValueError, match="shape"):
        sample_bt_preferences(torch.ones(3) / 3, torch.zeros(4), 5)
    with pytest.raises(ValueError, match="num_pairs"):
        sample_bt_preferences(torch.ones(3) / 3, torch.zeros(3), 0)


# ----------------------------------------------------------------------------- lab 5's plots
def test_lab5_plots_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhf_helpers.plots import plot_margin_curves, plot_policy_comparison

    h = torch.linspace(-5, 5, 11)
    ax = plot_margin_curves(h, {"-log sigma": -F.logsigmoid(h), "-sigma": -torch.sigmoid(h)})
    assert len(ax.lines) == 3 and list(ax.lines[0].get_ydata()) == pytest.approx((-F.logsigmoid(h)).tolist())
    with pytest.raises(ValueError, match="values"):
        plot_margin_curves(h, {"bad": [1.0, 2.0]})
    ax = plot_policy_comparison(["a", "b", "c"], {"ref": [0.2, 0.3, 0.5], "fit": [0.1, 0.1, 0.8]})
    assert [round(p.get_width(), 3) for p in ax.patches] == [0.2, 0.3, 0.5, 0.1, 0.1, 0.8]
    with pytest.raises(ValueError, match="probabilities"):
        plot_policy_comparison(["a"], {"ref": [0.5, 0.5]})
    plt.close("all")


# ----------------------------------------------------------------------------- lab 5's grading box
LAB5 = REPO_ROOT / "solutions" / "lab5_dpo_derivation" / "lab5_dpo_derivation.ipynb"


def _lab5_source():
    import nbformat

    return nbformat.read(LAB5, as_version=4)


def test_lab5_box_keeps_the_helpers_working_with_the_learners_function(tmp_path, monkeypatch, tiny_policy, pairs):
    """In lab 5's box (tests/grader/test_answer_key_stubs.py: what is stubbed) the helpers the lab's cells
    call still work when given the learner's function, and raise (the stub) without it."""
    from _box import boxed

    import rlhf_helpers.dpo as real

    box, _, _ = boxed("lab5_dpo_derivation", "dpo", tmp_path, monkeypatch)
    model, tok = tiny_policy
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="graded exercise"):
            box.preference_logps(model, tok, pairs)   # the default logprob_fn is the stub
        got = box.preference_logps(model, tok, pairs, logprob_fn=real.sequence_logprobs)
        expected = real.preference_logps(model, tok, pairs)
    torch.testing.assert_close(got, expected)
    w, l = box.sample_bt_preferences(torch.ones(3) / 3, torch.zeros(3), 10, torch.Generator().manual_seed(0))
    assert w.shape == l.shape == (10,)


def test_lab5_equivalents_exist_in_the_pinned_libraries():
    """The library versions lab 5 names (the judge refuses a graded function that hands its work to one)
    resolve, so the sandbox's tripwires catch them."""
    from autograder.grading.answer_key import equivalents
    from rlhf_helpers.observations import _resolve

    named = equivalents(_lab5_source())
    assert named["dpo_loss"] and named["sequence_logprobs"]
    for paths in named.values():
        for path in paths:
            assert _resolve(path) is not None, f"{path} does not resolve"
