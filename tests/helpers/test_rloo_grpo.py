"""rlhf_helpers.rloo_grpo: RLOO's and GRPO's advantages, by hand and against what TRL 1.16's trainers log."""

from __future__ import annotations

import copy
import tempfile

import pytest
import torch

from rlhf_helpers.config import training_threads
from rlhf_helpers.rloo_grpo import HeldOutCurve, grpo_advantages, rl_config, rloo_advantages, trl_reward_func


# ----------------------------------------------------------------------------- the formulas
def test_rloo_by_hand():
    # group [1, 2, 6]: baselines 4, 3.5, 1.5; group [0, 0, 3]: 1.5, 1.5, 0
    got = rloo_advantages(torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), 3)
    torch.testing.assert_close(got, torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]))


def test_rloo_is_k_over_k_minus_1_times_the_centred_reward():
    r = torch.randn(20, dtype=torch.float64)
    grouped = r.view(5, 4)
    expected = (grouped - grouped.mean(1, keepdim=True)) * 4 / 3
    torch.testing.assert_close(rloo_advantages(r, 4), expected.reshape(-1))
    assert rloo_advantages(r, 4).dtype == torch.float64


def test_grpo_by_hand_and_scalings():
    r = torch.tensor([1.0, 3.0, 2.0, 2.0])
    s = 2 ** 0.5
    torch.testing.assert_close(grpo_advantages(r, 2), torch.tensor([-1 / (s + 1e-4), 1 / (s + 1e-4), 0.0, 0.0]))
    torch.testing.assert_close(grpo_advantages(r, 2, "none"), torch.tensor([-1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(grpo_advantages(r, 2, "batch"), torch.tensor([-1.0, 1.0, 0.0, 0.0]) / (r.std() + 1e-4))


@pytest.mark.parametrize("bad", [(torch.zeros(5), 2), (torch.zeros(4), 1), (torch.zeros(4, 1), 2),
                                 (torch.zeros(4, dtype=torch.long), 2), (torch.zeros(0), 2)])
def test_advantages_refuse_bad_input(bad):
    for fn in (rloo_advantages, grpo_advantages):
        with pytest.raises((TypeError, ValueError)):
            fn(*bad)
    with pytest.raises(ValueError):
        grpo_advantages(torch.zeros(4), 2, "std")


def test_trl_reward_func_scores_prompt_plus_completion():
    seen = []
    f = trl_reward_func(lambda texts: seen.extend(texts) or torch.arange(len(texts)).float(), "n")
    assert f(prompts=["a", "b"], completions=[" x", " y"], completion_ids=None) == [0.0, 1.0]
    assert seen == ["a x", "b y"] and f.__name__ == "n"


def test_held_out_curve_leaves_evaluation_time_out():
    import time

    calls = []

    def slow_eval(model):
        calls.append(model)
        time.sleep(0.05)
        return {"reward": float(len(calls))}

    curve = HeldOutCurve(slow_eval, every=2)
    curve.start("m")
    for step in range(1, 5):
        curve.step(step, "m")
    assert [p["step"] for p in curve.points] == [0, 2, 4]
    assert curve.seconds < 0.05   # three evaluations of 0.05 s each are not counted
    assert curve.series("reward")[1] == [1.0, 2.0, 3.0]


# ----------------------------------------------------------------------------- against TRL's trainers
@pytest.fixture(scope="module")
def tiny_world():
    from rlhf_helpers.models import load_policy
    from rlhf_helpers.rloo_grpo import prompt_dataset

    model, tok = load_policy(device="cpu")
    queries = [torch.tensor(tok.encode(t)) for t in ("i saw this film", "the acting", "a drama about", "the music was")]
    return model, tok, prompt_dataset(queries, tok)


def _one_generation(trainer_class, config_class, tiny_world, beta=0.0, **settings):
    """Train on one generation batch of 8 completions (4 prompts x 2) with a deterministic reward;
    return (the rewards the function returned, in order; the advantages TRL logged)."""
    model, tok, prompts = tiny_world
    returned: list[float] = []

    def reward(prompts, completions, **kwargs):
        values = [float(len(c)) + 0.1 * i for i, c in enumerate(completions)]  # distinct within a group
        returned.extend(values)
        return values

    with tempfile.TemporaryDirectory() as out:
        args = rl_config(config_class, out, num_generations=2, per_device_train_batch_size=8, steps_per_generation=1,
                         max_completion_length=6, max_steps=1, beta=beta, learning_rate=1e-4, **settings)
        trainer = trainer_class(model=copy.deepcopy(model), reward_funcs=reward, args=args, train_dataset=prompts,
                                processing_class=tok)
        with training_threads(model):  # a tiny model: one thread is fastest, and much faster on a busy machine
            trainer.train()
    return torch.tensor(returned), torch.tensor(list(trainer._logs["advantages"]))


@pytest.mark.slow
def test_rloo_advantages_equal_what_rlootrainer_logs(tiny_world):
    from trl import RLOOConfig, RLOOTrainer

    rewards, logged = _one_generation(RLOOTrainer, RLOOConfig, tiny_world)
    assert rewards.numel() == logged.numel() == 8
    torch.testing.assert_close(rloo_advantages(rewards, 2), logged, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_advantages_equal_what_grpotrainer_logs(tiny_world, scale):
    from trl import GRPOConfig, GRPOTrainer

    rewards, logged = _one_generation(GRPOTrainer, GRPOConfig, tiny_world, scale_rewards=scale)
    torch.testing.assert_close(grpo_advantages(rewards, 2, scale), logged, atol=1e-5, rtol=1e-5)


def _rloo_and_a_padded_batch(model, tok, prompts, out):
    """A one-step RLOOTrainer on a copy of the model, and two prompts of different lengths with a response each."""
    from trl import RLOOConfig, RLOOTrainer

    args = rl_config(RLOOConfig, out, num_generations=2, per_device_train_batch_size=8, max_completion_length=6,
                     max_steps=1)
    trainer = RLOOTrainer(model=copy.deepcopy(model), reward_funcs=trl_reward_func(lambda t: [0.0] * len(t)),
                          args=args, train_dataset=prompts, processing_class=tok)
    queries = [torch.tensor(tok.encode("i saw this film")), torch.tensor(tok.encode("bad"))]
    responses = [torch.tensor(tok.encode(" it was great")), torch.tensor(tok.encode(" and boring"))]
    return trainer, queries, responses


@pytest.mark.slow
def test_trl_trainers_score_left_padded_prompts_without_position_ids(tiny_world):
    """The pitfall lab 7 shows: on the pinned TRL, RLOOTrainer's per-token log-probs of a prompt shorter
    than the longest in its batch differ from the kit's (explicit position ids), which match generate()."""
    from trl import RLOOConfig, RLOOTrainer

    from rlhf_helpers.rloo_grpo import trl_logprobs

    model, tok, prompts = tiny_world
    with tempfile.TemporaryDirectory() as out:
        trainer, queries, responses = _rloo_and_a_padded_batch(model, tok, prompts, out)
        trl, kit = trl_logprobs(trainer, trainer.model, queries, responses, tok.pad_token_id)
    assert torch.allclose(trl[0], kit[0], atol=1e-4)          # the longest prompt: no padding, no shift
    assert (trl[1] - kit[1]).abs().max() > 0.1                 # the padded one: read at shifted positions


@pytest.mark.slow
def test_position_ids_from_mask_makes_trls_log_probs_the_kits(tiny_world):
    """Inside the context TRL's forward passes read the padded rows at their own positions (the kit's, which
    match generate()); outside it, and after it, they do not; a call that passes position ids is unchanged."""
    from rlhf_helpers.rloo_grpo import position_ids_from_mask, trl_logprobs

    model, tok, prompts = tiny_world
    with tempfile.TemporaryDirectory() as out:
        trainer, queries, responses = _rloo_and_a_padded_batch(model, tok, prompts, out)
        with position_ids_from_mask(trainer.model):
            trl, kit = trl_logprobs(trainer, trainer.model, queries, responses, tok.pad_token_id)
            ids = torch.tensor([[0, 0, 5, 6, 7]])
            given = torch.tensor([[0, 0, 3, 4, 5]])
            inside = trainer.model(ids, attention_mask=torch.tensor([[0, 0, 1, 1, 1]]), position_ids=given).logits
        after, _ = trl_logprobs(trainer, trainer.model, queries, responses, tok.pad_token_id)
        outside = trainer.model(ids, attention_mask=torch.tensor([[0, 0, 1, 1, 1]]), position_ids=given).logits
    assert torch.allclose(trl, kit, atol=1e-4)
    assert (after[1] - kit[1]).abs().max() > 0.1
    assert torch.equal(inside, outside)
