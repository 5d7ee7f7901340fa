"""Lab 3's graded PPO step, judged on held-out implementations.

The two step tests of ``solutions/lab3_ppo`` (``test_ppo_step``, ``test_ppo_step_minibatches``)
run here exactly as the grader runs them, without grading the whole notebook: the cell's
observation program runs in "observe" mode with a ``ppo_step`` written below (the learner's
side), its outcomes are recorded as the kernel would publish them, and ``autograder.grading.judge``
then decides in a fresh namespace with those outcomes replayed (the checking side).

Three wrong steps must lose both cells' points: one that recomputes the "old" log-probs in
every minibatch (so the ratio is always 1 and nothing is ever clipped), one that never clips,
and one that whitens the advantages over padding too. Two right ones, written differently,
must keep them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch

from autograder.grading import judge as J
from autograder.grading import answer_key
from rlhf_helpers import observations as O
from rlhf_helpers.ppo import compute_gae, kl_penalized_rewards, pad_rollouts, ppo_policy_loss, ppo_value_loss
from rlhf_helpers.rewards import rollout
from rlhf_helpers.sequences import causal_lm_logprobs, logprobs_from_logits, masked_mean, masked_whiten, pad_token_id

SOURCE = Path(__file__).resolve().parents[2] / "solutions" / "lab3_ppo" / "lab3_ppo.ipynb"
STEP_TESTS = ("test_ppo_step", "test_ppo_step_minibatches")


def step_with(*, forget_old: bool = False, no_clip: bool = False, whiten_padding: bool = False):
    """A PPO step as lab 3 asks for it; each flag plants one held-out mistake."""

    def ppo_step(policy, ref_model, tokenizer, reward_fn, queries, optimizer, config, length_sampler,
                 generation_kwargs, generator=None):
        responses = [r["response_ids"] for r in rollout(policy.pretrained_model, tokenizer, queries, length_sampler,
                                                        generation_kwargs)]
        texts = [tokenizer.decode(q, skip_special_tokens=True) + tokenizer.decode(r, skip_special_tokens=True)
                 for q, r in zip(queries, responses)]
        scores = torch.as_tensor(reward_fn(texts), dtype=torch.float32).reshape(-1)
        ids, attn, mask = pad_rollouts(queries, responses, pad_token_id(tokenizer))
        R = mask.shape[1]
        policy.eval()

        def forward(rows):
            logits, values = policy(ids[rows], attn[rows])
            return logprobs_from_logits(logits[:, -R - 1:-1], ids[rows, -R:]), values[:, -R - 1:-1]

        with torch.no_grad():
            old_logprobs, old_values = forward(torch.arange(len(queries)))
            ref_logprobs = causal_lm_logprobs(ref_model, ids, attn, R)
            rewards = kl_penalized_rewards(scores, old_logprobs, ref_logprobs, mask, config.kl_coef)
            advantages, returns = compute_gae(rewards, old_values, mask, config.gamma, config.lam)
            if config.whiten_advantages:
                if whiten_padding:  # mistake: the zeros on padding enter the mean and the spread
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                else:
                    advantages = masked_whiten(advantages, mask)
        log = {"policy_loss": [], "value_loss": [], "clip_fraction": []}
        for _ in range(config.ppo_epochs):
            for rows in torch.randperm(len(queries), generator=generator).split(config.mini_batch_size):
                logprobs, values = forward(rows)
                old = logprobs.detach() if forget_old else old_logprobs[rows]  # mistake: ratio always 1
                if no_clip:  # mistake: the plain importance-weighted surrogate
                    policy_loss = -masked_mean((logprobs - old).exp() * advantages[rows], mask[rows])
                else:
                    policy_loss = ppo_policy_loss(logprobs, old, advantages[rows], mask[rows], config.cliprange)
                value_loss = ppo_value_loss(values, old_values[rows], returns[rows], mask[rows], config.cliprange_value)
                optimizer.zero_grad()
                (policy_loss + config.vf_coef * value_loss).backward()
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
                optimizer.step()
                ratio = (logprobs.detach() - old).exp()
                log["policy_loss"].append(policy_loss.item())
                log["value_loss"].append(value_loss.item())
                log["clip_fraction"].append(masked_mean(((ratio - 1).abs() > config.cliprange).float(), mask[rows]).item())
        stats = {"reward_mean": scores.mean().item(), "kl": ((old_logprobs - ref_logprobs) * mask).sum(1).mean().item(),
                 **{k: sum(v) / len(v) for k, v in log.items()}}
        return stats, {"queries": list(queries), "responses": responses, "texts": texts, "scores": scores}

    return ppo_step


def ppo_step_written_differently(policy, ref_model, tokenizer, reward_fn, queries, optimizer, config, length_sampler,
                                 generation_kwargs, generator=None):
    """Right, but built another way: per-minibatch rollout passes, log-probs and values from two calls,
    whitening by boolean indexing, a flat list of per-update records, set_to_none=False."""
    outs = rollout(policy.pretrained_model, tokenizer, list(queries), length_sampler, generation_kwargs)
    responses = [o["response_ids"] for o in outs]
    texts = [tokenizer.decode(q, skip_special_tokens=True) + tokenizer.decode(r, skip_special_tokens=True)
             for q, r in zip(queries, responses)]
    scores = reward_fn(texts).float()
    n = len(queries)
    ids, attn, mask = pad_rollouts(queries, responses, pad_token_id(tokenizer))
    real = mask.bool()
    width = mask.shape[1]
    policy.eval()

    def logprobs_and_values(rows):
        lp = causal_lm_logprobs(policy.pretrained_model, ids[rows], attn[rows], width)
        values = policy(ids[rows], attn[rows])[1][:, -width - 1:-1]
        return lp, values

    with torch.no_grad():
        chunks = [logprobs_and_values(rows) for rows in torch.arange(n).split(3)]
        old_lp = torch.cat([c[0] for c in chunks])
        old_v = torch.cat([c[1] for c in chunks])
        ref_lp = torch.cat([causal_lm_logprobs(ref_model, ids[r], attn[r], width) for r in torch.arange(n).split(5)])
        adv, ret = compute_gae(kl_penalized_rewards(scores, old_lp, ref_lp, mask, config.kl_coef), old_v, mask,
                               config.gamma, config.lam)
        if config.whiten_advantages:
            adv = torch.where(real, (adv - adv[real].mean()) / (adv[real].std() + 1e-8), torch.zeros_like(adv))
    records = []
    for _epoch in range(config.ppo_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.mini_batch_size):
            rows = order[start:start + config.mini_batch_size]
            lp, values = logprobs_and_values(rows)
            pl = ppo_policy_loss(lp, old_lp[rows], adv[rows], mask[rows], config.cliprange)
            vl = ppo_value_loss(values, old_v[rows], ret[rows], mask[rows], config.cliprange_value)
            optimizer.zero_grad(set_to_none=False)
            (pl + config.vf_coef * vl).backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], config.max_grad_norm)
            optimizer.step()
            outside = ((lp.detach() - old_lp[rows]).exp() - 1).abs() > config.cliprange
            records.append((pl.item(), vl.item(), (outside & real[rows]).sum().item() / real[rows].sum().item()))
    kl = sum(((old_lp[i] - ref_lp[i])[real[i]]).sum().item() for i in range(n)) / n
    stats = {"reward_mean": float(scores.mean()), "kl": kl,
             "policy_loss": sum(r[0] for r in records) / len(records),
             "value_loss": sum(r[1] for r in records) / len(records),
             "clip_fraction": sum(r[2] for r in records) / len(records)}
    return stats, {"queries": list(queries), "responses": responses, "texts": texts, "scores": scores.cpu()}


@pytest.fixture(scope="module")
def lab():
    nb = nbformat.read(SOURCE, as_version=4)
    sources = answer_key.test_sources(nb)
    missing = [t for t in STEP_TESTS if t not in sources]
    assert not missing, f"lab 3 has no test cells {missing}"
    return {"tests": {t: sources[t] for t in STEP_TESTS}, "names": set(answer_key.learner_names(nb))}


def grade(source: str, names: set[str], step, monkeypatch) -> J.Verdict:
    """One test cell as the grader runs it: the observation program with ``step`` as the learner's
    ``ppo_step`` (outcomes recorded as the kernel publishes them), then the judge on those outcomes."""
    import IPython.display

    records: list[dict] = []
    monkeypatch.setattr(IPython.display, "publish_display_data", lambda data, *a, **k: records.append(data[O.MIME]))
    saved = dict(O._STATE)
    O._STATE.update(mode="observe", wires={})
    try:
        exec(compile(J.observation_program(source), "<observation program>", "exec"),  # noqa: S102 - the lab's own test
             {"__name__": "__kernel__", "ppo_step": step})
    finally:
        O._STATE.clear()
        O._STATE.update(saved)
    return J.judge_test(source, records, names)


RIGHT = {"as in the solution": step_with(), "written differently": ppo_step_written_differently}
WRONG = {"forgets the old log-probs": step_with(forget_old=True), "never clips": step_with(no_clip=True),
         "whitens over padding": step_with(whiten_padding=True)}


@pytest.mark.parametrize("test_id", STEP_TESTS)
@pytest.mark.parametrize("name", sorted(RIGHT))
def test_a_right_step_keeps_the_points(lab, test_id, name, monkeypatch):
    verdict = grade(lab["tests"][test_id], lab["names"], RIGHT[name], monkeypatch)
    assert verdict.passed, f"{test_id} fails a right step ({name}): {verdict.ename}: {verdict.message}"


@pytest.mark.parametrize("test_id", STEP_TESTS)
@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_step_loses_the_points(lab, test_id, name, monkeypatch):
    verdict = grade(lab["tests"][test_id], lab["names"], WRONG[name], monkeypatch)
    assert not verdict.passed, f"{test_id} passes a step that {name}"
    assert verdict.ename == "AssertionError", (verdict.ename, verdict.message)  # a check failed, not the test itself
