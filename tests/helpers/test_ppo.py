"""Tests for rlhf_helpers.ppo: hand-computed values on tiny tensors, log-probs against
generate() on left-padded batches, the trainer's step(), and (slow) a short training run."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_helpers.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PPOConfig,
    PPOTrainer,
    ValueHeadModel,
    compute_gae,
    kl_penalized_rewards,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
    policy_gradient_estimate,
    position_ids_from_attention_mask,
    ppo_policy_loss,
    ppo_value_loss,
    sga_step,
)

T = torch.tensor


# ----------------------------------------------------------------------------- config
def test_config_defaults_and_help():
    cfg = PPOConfig()
    assert (cfg.batch_size, cfg.mini_batch_size, cfg.ppo_epochs) == (64, 16, 2)
    assert (cfg.gamma, cfg.lam, cfg.cliprange, cfg.kl_coef) == (1.0, 0.95, 0.2, 0.2)
    text = PPOConfig.help()
    for name in ("learning_rate", "batch_size", "mini_batch_size", "ppo_epochs", "gamma", "lam", "cliprange",
                 "cliprange_value", "vf_coef", "kl_coef", "adaptive_kl", "target_kl", "horizon",
                 "max_grad_norm", "seed"):
        assert f"{name} = " in text
    assert PPOConfig.from_dict(cfg.to_dict()) == cfg


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(TypeError):
        PPOConfig(beta=0.1)  # noqa - the field is kl_coef
    with pytest.raises(TypeError, match="kl_coef"):
        PPOConfig.from_dict({"beta": 0.1})
    with pytest.raises(ValueError, match="mini_batch_size"):
        PPOConfig(batch_size=8, mini_batch_size=16)
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.5)
    with pytest.raises(ValueError, match="adaptive_kl"):
        PPOConfig(adaptive_kl=True, kl_coef=0.0)
    with pytest.raises(TypeError, match="batch_size"):
        PPOConfig(batch_size=8.0)


# ----------------------------------------------------------------------------- part A
def test_policy_gradient_estimate_by_hand():
    # probs = 1/3 each; a=0, r=1 gives [2/3, -1/3, -1/3]; a=2, r=-1 gives [1/3, 1/3, -2/3]; mean:
    g = policy_gradient_estimate(torch.zeros(3), T([0, 2]), T([1.0, -1.0]))
    torch.testing.assert_close(g, T([0.5, 0.0, -0.5]))


def test_policy_gradient_estimate_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, generator=gen)
    actions = torch.randint(5, (7,), generator=gen)
    rewards = torch.randn(7, generator=gen)
    theta = logits.clone().requires_grad_(True)
    surrogate = (rewards * torch.distributions.Categorical(logits=theta).log_prob(actions)).mean()
    (expected,) = torch.autograd.grad(surrogate, theta)
    torch.testing.assert_close(policy_gradient_estimate(logits, actions, rewards), expected)
    torch.testing.assert_close(sga_step(logits, actions, rewards, 0.5), logits + 0.5 * expected)


def test_policy_gradient_estimate_rejects_bad_shapes():
    with pytest.raises(ValueError):
        policy_gradient_estimate(torch.zeros(2, 3), T([0]), T([1.0]))
    with pytest.raises(ValueError):
        policy_gradient_estimate(torch.zeros(3), T([0, 1]), T([1.0]))


# ----------------------------------------------------------------------------- tensor helpers
def test_position_ids_left_padding():
    mask = T([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert position_ids_from_attention_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_logprobs_from_logits_and_masked_stats():
    logits = T([[[0.0, math.log(3.0)]]])  # probs 1/4, 3/4
    torch.testing.assert_close(logprobs_from_logits(logits, T([[1]])), T([[math.log(0.75)]]))
    x = T([[1.0, 3.0, float("nan")]])
    mask = T([[1, 1, 0]])
    assert masked_mean(x, mask).item() == 2.0  # NaN on padding is ignored
    w = masked_whiten(T([[1.0, 3.0, 100.0]]), mask)
    torch.testing.assert_close(w, T([[-1 / math.sqrt(2), 1 / math.sqrt(2), 0.0]]), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- part B
def test_kl_penalized_rewards_by_hand():
    scores = T([2.0, -1.0])
    logprobs = T([[-1.0, -2.0, -3.0], [-1.0, -1.0, -9.0]])
    ref = T([[-1.5, -2.0, -2.0], [-2.0, -1.0, -1.0]])
    mask = T([[1, 1, 1], [1, 1, 0]])  # row 1 right-padded: its last real token is column 1
    # row 0: kl = [0.5, 0, -1] -> -0.1 * kl = [-0.05, 0, 0.1], + score 2 at column 2
    # row 1: kl = [1, 0, (pad)] -> [-0.1, 0, 0], + score -1 at column 1
    expected = T([[-0.05, 0.0, 2.1], [-0.1, -1.0, 0.0]])
    torch.testing.assert_close(kl_penalized_rewards(scores, logprobs, ref, mask, 0.1), expected)
    left = kl_penalized_rewards(scores[1:], logprobs[1:, [2, 0, 1]], ref[1:, [2, 0, 1]], T([[0, 1, 1]]), 0.1)
    torch.testing.assert_close(left, T([[0.0, -0.1, -1.0]]))  # left padding: score at the last column


def test_kl_penalized_rewards_errors():
    with pytest.raises(ValueError, match="shape"):
        kl_penalized_rewards(T([1.0]), torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 3), 0.1)
    with pytest.raises(ValueError, match="no real token"):
        kl_penalized_rewards(T([1.0]), torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3), 0.1)


def test_compute_gae_by_hand():
    # gamma = 1, lam = 0.5, rewards [1, 0, 2], values [0.5, 1, 0]:
    # t=2: delta = 2 + 0 - 0 = 2, A = 2
    # t=1: delta = 0 + 0 - 1 = -1, A = -1 + 0.5 * 2 = 0
    # t=0: delta = 1 + 1 - 0.5 = 1.5, A = 1.5 + 0.5 * 0 = 1.5
    adv, ret = compute_gae(T([[1.0, 0.0, 2.0]]), T([[0.5, 1.0, 0.0]]), T([[1, 1, 1]]), 1.0, 0.5)
    torch.testing.assert_close(adv, T([[1.5, 0.0, 2.0]]))
    torch.testing.assert_close(ret, T([[2.0, 1.0, 2.0]]))
    # discounting: rewards [0, 0, 1], values 0, gamma 0.5, lam 1 -> A = [0.25, 0.5, 1]
    adv, _ = compute_gae(T([[0.0, 0.0, 1.0]]), torch.zeros(1, 3), torch.ones(1, 3), 0.5, 1.0)
    torch.testing.assert_close(adv, T([[0.25, 0.5, 1.0]]))


def test_compute_gae_ignores_padding_on_either_side():
    # rewards [1, 2], values [0.5, 1], gamma 1, lam 0.5:
    # t=1: delta = 2 - 1 = 1, A = 1; t=0: delta = 1 + 1 - 0.5 = 1.5, A = 1.5 + 0.5 = 2; R = A + V = [2.5, 2]
    right = compute_gae(T([[1.0, 2.0, 9.0]]), T([[0.5, 1.0, 7.0]]), T([[1, 1, 0]]), 1.0, 0.5)
    left = compute_gae(T([[9.0, 1.0, 2.0]]), T([[7.0, 0.5, 1.0]]), T([[0, 1, 1]]), 1.0, 0.5)
    torch.testing.assert_close(right[0], T([[2.0, 1.0, 0.0]]))
    torch.testing.assert_close(right[1], T([[2.5, 2.0, 0.0]]))
    torch.testing.assert_close(left[0], T([[0.0, 2.0, 1.0]]))
    torch.testing.assert_close(left[1], T([[0.0, 2.5, 2.0]]))


def test_ppo_policy_loss_by_hand():
    ratio = T([[1.5, 0.5, 1.0, 7.0]])
    adv = T([[1.0, -1.0, 2.0, 100.0]])
    mask = T([[1, 1, 1, 0]])
    # min(r A, clip(r) A): 1.5 vs 1.2 -> 1.2; -0.5 vs -0.8 -> -0.8; 2 vs 2 -> 2; the padded token is ignored
    loss = ppo_policy_loss(ratio.log(), torch.zeros(1, 4), adv, mask, 0.2)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, torch.tensor(-(1.2 - 0.8 + 2.0) / 3))


def test_ppo_value_loss_by_hand():
    values, old = T([[1.0, 0.0, 2.0, 5.0]]), T([[0.5, 0.5, 2.0, 0.0]])
    returns, mask = T([[2.0, 0.0, 0.0, 0.0]]), T([[1, 1, 1, 0]])
    # clipped values [0.7, 0.3, 2.0]; max((v-R)^2, (vc-R)^2) = [max(1, 1.69), max(0, 0.09), max(4, 4)]
    loss = ppo_value_loss(values, old, returns, mask, 0.2)
    torch.testing.assert_close(loss, torch.tensor(0.5 * (1.69 + 0.09 + 4.0) / 3))


def test_losses_have_gradients():
    lp = torch.zeros(1, 2, requires_grad=True)
    ppo_policy_loss(lp, torch.zeros(1, 2), T([[1.0, -1.0]]), torch.ones(1, 2), 0.2).backward()
    torch.testing.assert_close(lp.grad, T([[-0.5, 0.5]]))  # raise the good token, lower the bad one


# ----------------------------------------------------------------------------- KL controllers
def test_fixed_kl_controller():
    ctl = FixedKLController(0.3)
    ctl.update(100.0, 64)
    assert ctl.value == 0.3


def test_adaptive_kl_controller_by_hand():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    ctl.update(12.0, 64)  # error 12/6 - 1 = 1, clipped to 0.2: beta *= 1 + 0.2 * 64 / 10000
    assert ctl.value == pytest.approx(0.2 * 1.00128)
    ctl.update(6.6, 100)  # error 0.1: beta *= 1.001
    assert ctl.value == pytest.approx(0.2 * 1.00128 * 1.001)
    ctl.update(0.0, 10000)  # error -1 clipped to -0.2: beta *= 0.8
    assert ctl.value == pytest.approx(0.2 * 1.00128 * 1.001 * 0.8)


# ----------------------------------------------------------------------------- the model
@pytest.fixture
def fresh_policy():
    from rlhf_helpers.models import load_policy

    return load_policy("tiny", device="cpu")


def copy_model(model):
    import copy

    return copy.deepcopy(model)


def _left_padded(queries, pad_id):
    width = max(len(q) for q in queries)
    ids = torch.full((len(queries), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, q in enumerate(queries):
        ids[i, width - len(q):] = T(q)
        mask[i, width - len(q):] = 1
    return ids, mask


def test_logprobs_match_generate_on_left_padded_batch(fresh_policy):
    model, tok = fresh_policy
    queries = [tok("the film was")["input_ids"], tok("i")["input_ids"],
               tok("i saw this film at the cinema. the acting")["input_ids"]]
    ids, mask = _left_padded(queries, tok.pad_token_id)
    torch.manual_seed(0)
    n_new = 6
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0,
                             max_new_tokens=n_new, min_new_tokens=n_new, output_logits=True,
                             return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
    new = out.sequences[:, ids.shape[1]:]  # (B, n_new)
    expected = logprobs_from_logits(torch.stack(out.logits, 1), new)  # generate()'s own distribution
    full_mask = torch.cat([mask, torch.ones_like(new)], 1)
    vh = ValueHeadModel(model)
    with torch.no_grad():
        logits, values = vh(out.sequences, full_mask)
        got = logprobs_from_logits(logits[:, -n_new - 1:-1], new)
        assert values.shape == out.sequences.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        # and the pitfall is real: without position ids the padded rows disagree
        plain = model(input_ids=out.sequences, attention_mask=full_mask).logits
        wrong = logprobs_from_logits(plain[:, -n_new - 1:-1], new)
    assert (wrong - expected).abs().max() > 0.1


def test_trainer_generate_and_step(fresh_policy):
    from rlhf_helpers.rewards import LengthSampler

    model, tok = fresh_policy
    cfg = PPOConfig(batch_size=8, mini_batch_size=4, ppo_epochs=2, seed=0)
    trainer = PPOTrainer(cfg, model, tok)
    assert isinstance(trainer.model, ValueHeadModel)
    queries = [T(tok(t)["input_ids"][:n]) for t, n in zip(["the film was good"] * 8, [1, 2, 3, 2, 1, 3, 2, 2])]
    responses = trainer.generate(queries, length_sampler=LengthSampler(3, 6), do_sample=True, top_k=0)
    assert len(responses) == 8
    assert all(r.dtype == torch.long and r.dim() == 1 and 1 <= r.numel() <= 5 for r in responses)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    ref_before = [p.detach().clone() for p in trainer.ref_model.parameters()]
    stats = trainer.step(queries, responses, torch.linspace(-1, 1, 8))
    for key in ("reward_mean", "kl", "kl_coef", "entropy", "clip_fraction", "policy_loss", "value_loss",
                "approx_kl", "time_optimise"):
        assert isinstance(stats[key], float) and math.isfinite(stats[key]), key
    assert stats["kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before the first update
    assert stats["reward_mean"] == pytest.approx(0.0, abs=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ref_before, trainer.ref_model.parameters()))
    # the second step sees a policy that moved away from the reference
    assert trainer.step(queries, responses, torch.linspace(-1, 1, 8))["kl"] != 0.0
    with pytest.raises(ValueError, match="scores"):
        trainer.step(queries, responses, torch.zeros(3))
    with pytest.raises(ValueError, match="response_tensors"):
        trainer.step(queries, [r.float() for r in responses], torch.zeros(8))
    with pytest.raises(ValueError, match="max_new_tokens"):
        trainer.generate(queries, do_sample=True)


def test_first_update_starts_on_policy(fresh_policy):
    """One epoch, one minibatch: the update's log-probs equal the rollout's (no dropout, same positions)."""
    model, tok = fresh_policy
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=4, ppo_epochs=1), model, tok)
    queries = [T(tok("the plot")["input_ids"]), T(tok("i")["input_ids"])] * 2
    responses = trainer.generate(queries, max_new_tokens=5, do_sample=True, top_k=0)
    stats = trainer.step(queries, responses, T([1.0, -1.0, 0.5, 0.0]))
    assert stats["approx_kl"] < 1e-10 and stats["clip_fraction"] == 0.0


def test_step_matches_the_building_blocks(fresh_policy):
    """step()'s policy loss on its first minibatch is ppo_policy_loss on tensors built by hand."""
    model, tok = fresh_policy
    cfg = PPOConfig(batch_size=3, mini_batch_size=3, ppo_epochs=1, whiten_advantages=False, kl_coef=0.1)
    trainer = PPOTrainer(cfg, model, tok)
    queries = [T(tok("the film")["input_ids"]), T(tok("i")["input_ids"]), T(tok("a very long start")["input_ids"])]
    responses = [T(tok(" was great.")["input_ids"]), T(tok(" loved it")["input_ids"]), T(tok(".")["input_ids"])]
    scores = T([1.0, -0.5, 2.0])
    with torch.no_grad():
        R = max(len(r) for r in responses)
        seqs = [torch.cat([q, r]) for q, r in zip(queries, responses)]
        ids, mask = _left_padded([s.tolist() for s in seqs], tok.pad_token_id)
        rmask = torch.zeros(3, R, dtype=torch.long)
        for i, r in enumerate(responses):
            rmask[i, R - len(r):] = 1
        logits, values = trainer.model(ids, mask)
        lp = logprobs_from_logits(logits[:, -R - 1:-1], ids[:, -R:])
        rewards = kl_penalized_rewards(scores, lp, lp, rmask, 0.1)  # policy == reference: score only
        adv, _ = compute_gae(rewards, values[:, -R - 1:-1], rmask, cfg.gamma, cfg.lam)
        expected = ppo_policy_loss(lp, lp, adv, rmask, cfg.cliprange).item()
    stats = trainer.step(queries, responses, scores)
    assert stats["policy_loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def _three_rollouts(tok):
    queries = [T(tok("the film")["input_ids"]), T(tok("i")["input_ids"]), T(tok("a very long start")["input_ids"])]
    responses = [T(tok(" was great.")["input_ids"]), T(tok(" loved it")["input_ids"]), T(tok(".")["input_ids"])]
    return queries, responses, T([1.0, -0.5, 2.0])


def test_trainer_calls_the_functions_it_is_given(fresh_policy, monkeypatch):
    """Lab 3 passes the learner's four building blocks; with the module's own switched off (as in
    lab 3's grading sandbox), step() runs on the given ones alone and gives the same stats."""
    import rlhf_helpers.ppo as ppo

    model, tok = fresh_policy
    queries, responses, scores = _three_rollouts(tok)
    cfg = PPOConfig(batch_size=3, mini_batch_size=3, ppo_epochs=2, seed=0)
    reference = PPOTrainer(cfg, copy_model(model), tok).step(queries, responses, scores)

    calls = {name: 0 for name in ppo.TRAINER_FUNCTIONS}

    def counting(name):
        original = getattr(ppo, name)

        def fn(*args):  # positional, in the documented order
            calls[name] += 1
            return original(*args)
        return fn

    given = {name: counting(name) for name in ppo.TRAINER_FUNCTIONS}

    def refuses(*args, **kwargs):
        raise RuntimeError("the module's own version was called")

    for name in ppo.TRAINER_FUNCTIONS:
        monkeypatch.setattr(ppo, name, refuses)
    stats = PPOTrainer(cfg, copy_model(model), tok, **given).step(queries, responses, scores)
    assert calls == {"kl_penalized_rewards": 1, "compute_gae": 1, "ppo_policy_loss": 2, "ppo_value_loss": 2}
    for key in ("policy_loss", "value_loss", "kl", "advantage_mean", "return_mean"):
        assert stats[key] == pytest.approx(reference[key], rel=1e-5, abs=1e-7), key
    # without them, the module's functions are looked up when step() runs (here: the refusing ones)
    with pytest.raises(RuntimeError, match="own version"):
        PPOTrainer(cfg, copy_model(model), tok).step(queries, responses, scores)
    with pytest.raises(TypeError, match="compute_gae"):
        PPOTrainer(cfg, model, tok, compute_gae="gae")
    with pytest.raises(TypeError):
        PPOTrainer(cfg, model, tok, None, compute_gae)  # keyword only: positional use stays as it was


def test_lab3_box_holds_no_ppo_update_and_keeps_the_learners_tools(tmp_path, monkeypatch):
    """In lab 3's box (tests/grader/test_answer_key_stubs.py: what is stubbed) no copy of the graded logic
    is left anywhere in the module, and what the learner's step may use (value head, padding, the sequence
    tools, the config) is there."""
    from _box import boxed

    box, _, text = boxed("lab3_ppo", "ppo", tmp_path, monkeypatch)
    for name in ("PPOTrainer", "PPOConfig", "ValueHeadModel", "pad_rollouts", "masked_mean", "masked_whiten",
                 "logprobs_from_logits", "causal_lm_logprobs", "position_ids_from_attention_mask"):
        assert hasattr(box, name), name
    assert "reversed(range" not in text and "torch.clamp(ratio" not in text
    assert "torch.randperm" not in text and ".backward()" not in text  # no PPO update anywhere in the box


def test_ppo_step_samples_scores_and_updates(fresh_policy):
    """The kit's ppo_step (lab 3's answer): the batch it returns is what it trained on, and
    ppo_update on that batch from the same start gives the same policy."""
    import copy

    from rlhf_helpers.models import frozen_copy
    from rlhf_helpers.ppo import ppo_step, ppo_update
    from rlhf_helpers.rewards import LengthSampler

    model, tok = fresh_policy
    queries = [T(tok("the film")["input_ids"]), T(tok("i")["input_ids"]), T(tok("a very long start")["input_ids"])] * 2
    cfg = PPOConfig(batch_size=6, mini_batch_size=4, ppo_epochs=2, learning_rate=1e-3)
    probe = T([tok("the music was good")["input_ids"]])

    def fresh():
        torch.manual_seed(0)
        policy = ValueHeadModel(copy.deepcopy(model))
        return policy, torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)

    ref = frozen_copy(model)
    policy, opt = fresh()
    before = policy(probe)[0].detach()
    stats, batch = ppo_step(policy, ref, tok, lambda texts: T([float(len(t)) / 10 for t in texts]), queries, opt, cfg,
                            LengthSampler(2, 6), {"do_sample": True, "top_k": 0}, torch.Generator().manual_seed(1))
    assert set(batch) == {"queries", "responses", "texts", "scores"} and len(batch["texts"]) == 6
    assert batch["texts"][0] == tok.decode(batch["queries"][0], skip_special_tokens=True) + tok.decode(
        batch["responses"][0], skip_special_tokens=True)
    torch.testing.assert_close(batch["scores"], T([len(t) / 10 for t in batch["texts"]]))
    assert stats["reward_mean"] == pytest.approx(batch["scores"].mean().item())
    assert stats["kl"] == pytest.approx(0.0, abs=1e-5)  # the policy is the reference at rollout time
    after = policy(probe)[0].detach()
    assert not torch.allclose(before, after)
    again, opt2 = fresh()
    stats2 = ppo_update(again, ref, opt2, cfg, batch["queries"], batch["responses"], batch["scores"], tok.pad_token_id,
                        generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again(probe)[0].detach(), after)
    assert stats2["policy_loss"] == pytest.approx(stats["policy_loss"])


def test_trainer_train_loop_returns_stats(fresh_policy):
    from rlhf_helpers.rewards import LengthSampler

    model, tok = fresh_policy
    trainer = PPOTrainer(PPOConfig(batch_size=4, mini_batch_size=2, ppo_epochs=1, adaptive_kl=True), model, tok)
    seen = []
    history = trainer.train(
        2, lambda: [T(tok("the film")["input_ids"])] * 4, lambda texts: torch.tensor([float(len(t)) for t in texts]),
        {"length_sampler": LengthSampler(2, 4), "do_sample": True, "top_k": 0}, progress=False,
        callback=lambda i, s: seen.append(i))
    assert seen == [0, 1] and len(history) == 2
    for key in ("time_generate", "time_score", "time_optimise", "reward_mean", "kl", "entropy"):
        assert key in history[-1]
    assert history[1]["kl_coef"] != history[0]["kl_coef"]  # the adaptive controller moved beta
    assert len(trainer.last_batch["texts"]) == 4


# ----------------------------------------------------------------------------- training works
@pytest.mark.slow
def test_short_training_raises_the_reward(fresh_policy, reward_pipe):
    from rlhf_helpers.data import load_reviews
    from rlhf_helpers.rewards import LengthSampler, build_queries, make_reward_fn

    model, tok = fresh_policy
    cfg = PPOConfig(batch_size=32, mini_batch_size=8, seed=0)
    trainer = PPOTrainer(cfg, model, tok)
    texts = load_reviews("train")["text"][:2000]
    gen = torch.Generator().manual_seed(0)
    lengths = LengthSampler(2, 5, generator=gen)

    def query_fn():
        idx = torch.randint(len(texts), (cfg.batch_size,), generator=gen).tolist()
        return build_queries([texts[i] for i in idx], tok, lengths)

    history = trainer.train(12, query_fn, make_reward_fn(reward_pipe),
                            {"length_sampler": LengthSampler(12, 17, generator=gen), "do_sample": True, "top_k": 0},
                            progress=False)
    first = sum(h["reward_mean"] for h in history[:2]) / 2
    last = sum(h["reward_mean"] for h in history[-2:]) / 2
    assert last > first + 1.0, (first, last)
    assert all(math.isfinite(h["kl"]) for h in history)


def test_value_head_model_save_and_reference_argument(fresh_policy, tmp_path):
    from rlhf_helpers.models import frozen_copy

    model, tok = fresh_policy
    vh = ValueHeadModel(model)
    with pytest.raises(TypeError):
        ValueHeadModel(vh)
    vh.save_pretrained(str(tmp_path))
    assert (tmp_path / "value_head.pt").is_file() and (tmp_path / "config.json").is_file()
    trainer = PPOTrainer(PPOConfig(), vh, tok, ref_model=ValueHeadModel(frozen_copy(model)))
    assert trainer.model is vh and not isinstance(trainer.ref_model, ValueHeadModel)
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())
    with pytest.raises(TypeError, match="PPOConfig"):
        PPOTrainer({"batch_size": 4}, model, tok)


def test_plot_training_curves():
    import matplotlib

    matplotlib.use("Agg")
    from rlhf_helpers.plots import plot_training_curves

    history = [{"step": i, "reward_mean": float(i), "kl": 0.5 * i} for i in range(4)]
    axes = plot_training_curves(history, keys=("reward_mean", "kl"))
    assert len(axes) == 2
    assert list(axes[1].lines[-1].get_ydata()) == [0.0, 0.5, 1.0, 1.5]
    with pytest.raises(KeyError, match="entropy"):
        plot_training_curves(history, keys=("entropy",))
    import matplotlib.pyplot as plt

    plt.close("all")


def test_the_ground_floor_pads_left_and_scores_responses_like_one_by_one(policy):
    """rlhf_helpers.sequences: left padding with position ids gives each response the log-prob it
    has alone (the one place the kit writes this), and the pad id falls back to EOS."""
    from types import SimpleNamespace

    from rlhf_helpers.sequences import pad_left, pad_right, pad_token_id, response_logprobs

    ids, mask = pad_left([torch.tensor([5, 6, 7]), torch.tensor([8])], 0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_right([torch.tensor([5, 6, 7]), torch.tensor([8])], 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=3)) == 3
    with pytest.raises(ValueError, match="pad_token"):
        pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=None))
    model, tok = policy
    queries = [torch.tensor(tok.encode("the film")), torch.tensor(tok.encode("i saw this movie at the"))]
    responses = [torch.tensor(tok.encode(" was great")), torch.tensor(tok.encode(" cinema"))]
    with torch.no_grad():
        batched = response_logprobs(model, queries, responses, tok.pad_token_id)
        alone = [response_logprobs(model, [q], [r], tok.pad_token_id)[0] for q, r in zip(queries, responses)]
    for got, alone in zip(batched, alone):
        assert abs(float(got) - float(alone)) < 1e-4
