"""rlhf_helpers.kl: exact KL, the sample estimators, the KL-regularised optimum, the beta widget."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical
from torch.distributions import kl_divergence as torch_kl

from rlhf_helpers.kl import (
    TOY_REF_PROBS,
    TOY_REWARDS,
    TOY_VOCAB,
    beta_explorer_state,
    check_distribution,
    estimator_summary,
    kl_divergence,
    kl_estimators,
    optimal_policy,
    regularized_objective,
)


def _probs(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=g, dtype=torch.float64), -1).to(dtype)


# ----------------------------------------------------------------------------- kl_divergence
@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 4, 6)])
def test_kl_matches_torch_distributions(shape):
    p, q = _probs(*shape, seed=1), _probs(*shape, seed=2)
    got = kl_divergence(p, q)
    want = torch_kl(Categorical(probs=p), Categorical(probs=q))
    assert got.shape == shape[:-1] and got.dtype == p.dtype
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_kl_is_zero_on_itself_and_asymmetric():
    p, q = _probs(6, seed=3), _probs(6, seed=4)
    assert kl_divergence(p, p).abs().item() < 1e-6
    assert abs(kl_divergence(p, q).item() - kl_divergence(q, p).item()) > 1e-3


def test_kl_zero_in_p_counts_as_zero():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.5, 0.25])
    assert math.isclose(kl_divergence(p, q).item(), 0.5 * math.log(2), rel_tol=1e-6)
    q0 = torch.tensor([0.5, 0.5, 0.0])  # 0 log(0/0) = 0 too
    assert kl_divergence(p, q0).item() == 0.0
    torch.testing.assert_close(kl_divergence(p, q), torch_kl(Categorical(probs=p), Categorical(probs=q)))


def test_kl_inf_where_q_is_zero():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = torch.tensor([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    got = kl_divergence(p, q)
    assert torch.isinf(got[0]) and got[0] > 0 and got[1].item() == 0.0
    torch.testing.assert_close(got, torch_kl(Categorical(probs=p), Categorical(probs=q)))


@pytest.mark.parametrize("bad", [torch.tensor([0.6, 0.6, -0.2]), torch.tensor([0.5, 0.4]),
                                 torch.tensor([0.5, 0.5 + 2e-4]), torch.tensor([float("nan"), 1.0])])
def test_kl_rejects_non_distributions(bad):
    good = torch.full_like(bad, 1 / bad.numel())
    with pytest.raises(ValueError):
        kl_divergence(bad, good)
    with pytest.raises(ValueError):
        kl_divergence(good, bad)


def test_kl_accepts_small_rounding_and_checks_types_and_shapes():
    p = torch.tensor([0.5, 0.5 + 5e-5])
    assert torch.isfinite(kl_divergence(p, torch.tensor([0.5, 0.5])))
    with pytest.raises(TypeError):
        kl_divergence([0.5, 0.5], torch.tensor([0.5, 0.5]))
    with pytest.raises(TypeError):
        kl_divergence(torch.tensor([1, 0]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(_probs(3), _probs(4))
    with pytest.raises(ValueError, match="logits"):
        check_distribution(torch.tensor([-1.0, 2.0]))


# ----------------------------------------------------------------------------- estimators
def test_estimator_formulas():
    logp = torch.log(torch.tensor([0.5, 0.2, 0.1, 0.9]))
    logq = torch.log(torch.tensor([0.25, 0.4, 0.1, 0.05]))
    est = kl_estimators(logp, logq)
    assert set(est) == {"k1", "k2", "k3"}
    r = torch.exp(logq - logp)
    torch.testing.assert_close(est["k1"], logp - logq)
    torch.testing.assert_close(est["k2"], (logp - logq) ** 2 / 2)
    torch.testing.assert_close(est["k3"], (r - 1) - torch.log(r))
    assert (est["k2"] >= 0).all() and (est["k3"] >= 0).all()
    assert est["k1"][2].item() == 0 and est["k3"][2].item() == 0


def test_estimators_keep_shape_and_dtype():
    logp = torch.log(_probs(3, 5, dtype=torch.float64))
    logq = torch.log(_probs(3, 5, seed=9, dtype=torch.float64))
    for v in kl_estimators(logp, logq).values():
        assert v.shape == (3, 5) and v.dtype == torch.float64
    with pytest.raises(ValueError):
        kl_estimators(logp, logq[:, :4])


def test_k1_and_k3_are_unbiased_k2_is_not():
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    summary = estimator_summary(p, q, 200_000, generator=torch.Generator().manual_seed(0))
    exact = kl_divergence(p, q).item()
    assert summary["exact"]["kl"] == pytest.approx(exact)
    for name in ("k1", "k3"):  # within 4 standard errors of the truth
        assert abs(summary[name]["bias"]) < 4 * summary[name]["std_error"], (name, summary[name])
    assert summary["k2"]["bias"] > 10 * summary["k2"]["std_error"]
    assert summary["k3"]["std"] < summary["k1"]["std"]
    assert summary["k1"]["min"] < 0 <= summary["k3"]["min"]


# ----------------------------------------------------------------------------- optimal policy
def test_optimal_policy_closed_form():
    ref, r = _probs(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64,
                                                            generator=torch.Generator().manual_seed(5))
    for beta in (0.1, 1.0, 7.0):
        unnorm = ref * torch.exp(r / beta)
        torch.testing.assert_close(optimal_policy(ref, r, beta), unnorm / unnorm.sum(-1, keepdim=True))


def test_optimal_policy_stable_for_extreme_rewards():
    ref = torch.tensor([0.5, 0.3, 0.2])
    r = torch.tensor([0.0, 1000.0, 2000.0])
    got = optimal_policy(ref, r, 1e-3)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, torch.tensor([0.0, 0.0, 1.0]))
    # a tie at the top shares the mass in proportion to the reference
    tie = optimal_policy(torch.tensor([0.1, 0.6, 0.3]), torch.tensor([5.0, 0.0, 5.0]), 1e-4)
    torch.testing.assert_close(tie, torch.tensor([0.25, 0.0, 0.75]))


def test_optimal_policy_limits_and_zero_reference():
    ref = torch.tensor([0.0, 0.5, 0.3, 0.2])
    r = torch.tensor([10.0, 1.0, -1.0, 0.5])
    assert optimal_policy(ref, r, 0.01)[0].item() == 0.0  # pi_ref = 0 stays 0
    torch.testing.assert_close(optimal_policy(ref, r, 1e6), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(optimal_policy(ref, r, math.inf), ref)


@pytest.mark.parametrize("beta", [0, 0.0, -1.0, float("nan")])
def test_optimal_policy_rejects_bad_beta(beta):
    with pytest.raises(ValueError):
        optimal_policy(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), beta)


def test_optimal_policy_beats_perturbations():
    ref, r, beta = _probs(6, seed=11, dtype=torch.float64), torch.linspace(-1, 2, 6, dtype=torch.float64), 0.3
    star = optimal_policy(ref, r, beta)
    best = regularized_objective(star, ref, r, beta)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        other = torch.softmax(torch.log(star) + 0.5 * torch.randn(6, generator=g, dtype=torch.float64), -1)
        assert regularized_objective(other, ref, r, beta) <= best + 1e-12
    # the optimum's value is beta log Z
    assert best.item() == pytest.approx(beta * torch.logsumexp(torch.log(ref) + r / beta, -1).item())


# ----------------------------------------------------------------------------- objective
def test_regularized_objective_direct():
    p, ref = _probs(4, 5, seed=12), _probs(4, 5, seed=13)
    r = torch.randn(4, 5, generator=torch.Generator().manual_seed(14))
    got = regularized_objective(p, ref, r, 0.25)
    want = (p * r).sum(-1) - 0.25 * torch_kl(Categorical(probs=p), Categorical(probs=ref))
    assert got.shape == (4,)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(regularized_objective(p, ref, r, 0), (p * r).sum(-1))
    with pytest.raises(ValueError):
        regularized_objective(p, ref, r, -0.1)


# ----------------------------------------------------------------------------- widget logic
def test_beta_explorer_state_moves_with_beta():
    low, mid, high = (beta_explorer_state(TOY_REF_PROBS, TOY_REWARDS, b) for b in (0.02, 1.0, 100.0))
    assert len(TOY_VOCAB) == len(TOY_REF_PROBS) == len(TOY_REWARDS)
    hack = max(range(len(TOY_REWARDS)), key=lambda i: TOY_REWARDS[i])
    assert low["top"] == hack and low["policy"][hack] > 0.99  # reward hacking: all on the over-rated word
    assert mid["top"] != hack
    assert high["kl"] < 1e-3 and abs(high["expected_reward"] - high["ref_expected_reward"]) < 0.05
    assert low["kl"] > mid["kl"] > high["kl"]
    assert low["expected_reward"] > mid["expected_reward"] > high["expected_reward"]
    assert mid["objective"] == pytest.approx(mid["expected_reward"] - mid["beta"] * mid["kl"])
    with pytest.raises(ValueError):
        beta_explorer_state(TOY_REF_PROBS, TOY_REWARDS, 0.0)


def test_beta_explorer_widget_redraws():
    pytest.importorskip("ipywidgets")
    from rlhf_helpers.widgets import BETA_EXPLORER_CLASS, beta_explorer

    panel = beta_explorer(beta=1.0)
    explorer = panel.explorer
    assert BETA_EXPLORER_CLASS in panel._dom_classes
    assert explorer.slider.description == "beta"
    chart0 = explorer.chart.value
    assert chart0[:8] == b"\x89PNG\r\n\x1a\n"
    explorer.slider.value = 0.05
    assert explorer.state["beta"] == pytest.approx(0.05)
    assert explorer.chart.value != chart0
    assert "good good good" in explorer.info.value
    with pytest.raises(ValueError):
        beta_explorer(vocab=["a", "b"])


def test_widget_logic_uses_the_functions_it_is_given():
    """The lab passes the learner's functions: beta_explorer_state and estimator_summary must use them
    (not the kit's), and the beta widget must pass them on."""
    calls = []

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return wrapped

    s = beta_explorer_state(beta=0.5, policy_fn=spy("policy", optimal_policy), kl_fn=spy("kl", kl_divergence),
                            objective_fn=spy("objective", regularized_objective))
    assert calls == ["policy", "kl", "objective"]
    kit = beta_explorer_state(beta=0.5)
    assert (s["kl"], s["objective"], s["top"]) == (kit["kl"], kit["objective"], kit["top"])
    uniform = beta_explorer_state(beta=0.5, policy_fn=lambda ref, r, beta: torch.full_like(ref, 1 / ref.numel()),
                                  kl_fn=lambda p, q: torch.tensor(7.0), objective_fn=lambda *a: torch.tensor(-1.0))
    assert uniform["kl"] == 7.0 and uniform["objective"] == -1.0 and uniform["policy"][0].item() == pytest.approx(1 / 6)

    calls.clear()
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    summary = estimator_summary(p, q, 100, generator=torch.Generator().manual_seed(0),
                                estimators=spy("estimators", kl_estimators), kl_fn=lambda a, b: torch.tensor(1.5))
    assert calls == ["estimators"] and summary["exact"]["kl"] == 1.5
    assert summary["k1"]["bias"] == pytest.approx(summary["k1"]["mean"] - 1.5)
    with pytest.raises(ValueError):  # the KL function checks the distributions (the kit's by default)
        estimator_summary(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]), 10)

    pytest.importorskip("ipywidgets")
    from rlhf_helpers.widgets import beta_explorer

    calls.clear()
    panel = beta_explorer(beta=1.0, policy_fn=spy("policy", optimal_policy), kl_fn=spy("kl", kl_divergence),
                          objective_fn=spy("objective", regularized_objective))
    assert calls and set(calls) == {"policy", "kl", "objective"}
    calls.clear()
    panel.explorer.slider.value = 0.1  # moving the slider recomputes with the same functions
    assert calls == ["policy", "kl", "objective"]


def test_lab4_box_keeps_the_helpers_working_with_the_learners_functions(tmp_path, monkeypatch):
    """In lab 4's box (tests/grader/test_answer_key_stubs.py: what is stubbed) the helpers the lab calls
    (the estimator experiment, the beta widget) work when given the learner's functions, and raise (the
    stub) without them."""
    import sys

    from _box import boxed as boxed_module

    import rlhf_helpers
    import rlhf_helpers.kl as real

    boxed, _, _ = boxed_module("lab4_kl_beta", "kl", tmp_path, monkeypatch)
    mine = {"policy_fn": real.optimal_policy, "kl_fn": real.kl_divergence, "objective_fn": real.regularized_objective}

    with pytest.raises(RuntimeError, match="graded"):
        boxed.beta_explorer_state(beta=0.5)
    assert boxed.beta_explorer_state(beta=0.5, **mine)["kl"] == pytest.approx(real.beta_explorer_state(beta=0.5)["kl"])
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    with pytest.raises(RuntimeError, match="graded"):
        boxed.estimator_summary(p, q, 100, generator=torch.Generator().manual_seed(0), kl_fn=real.kl_divergence)
    with pytest.raises(RuntimeError, match="graded"):
        boxed.estimator_summary(p, q, 100, generator=torch.Generator().manual_seed(0), estimators=real.kl_estimators)
    got = boxed.estimator_summary(p, q, 100, generator=torch.Generator().manual_seed(0), estimators=real.kl_estimators,
                                  kl_fn=real.kl_divergence)
    assert got == real.estimator_summary(p, q, 100, generator=torch.Generator().manual_seed(0))

    pytest.importorskip("ipywidgets")
    from rlhf_helpers.widgets import beta_explorer

    monkeypatch.setitem(sys.modules, "rlhf_helpers.kl", boxed)
    monkeypatch.setattr(rlhf_helpers, "kl", boxed, raising=False)
    with pytest.raises(RuntimeError, match="graded"):
        beta_explorer(beta=1.0)
    panel = beta_explorer(beta=1.0, **mine)
    panel.explorer.slider.value = 0.05
    assert panel.explorer.state["top"] == len(real.TOY_VOCAB) - 1


def test_plots_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhf_helpers.plots import plot_beta_bars, plot_kl_estimators, plot_reward_vs_kl

    s = beta_explorer_state(beta=0.5)
    axes = plot_beta_bars(TOY_VOCAB, s["ref_probs"], s["rewards"], s["policy"], beta=0.5)
    assert [len(ax.patches) for ax in axes] == [len(TOY_VOCAB)] * 3
    est = kl_estimators(torch.log(torch.tensor([0.5, 0.2])), torch.log(torch.tensor([0.3, 0.3])))
    ax = plot_kl_estimators(est, exact=0.1)
    assert ax.lines
    ax = plot_reward_vs_kl([[0, 1, 2], [0, 0.5]], [[0, 1, 2], [0, 0.4]], ["beta = 0", "beta = 1"])
    assert len(ax.lines) == 2
    with pytest.raises(ValueError):
        plot_reward_vs_kl([[0, 1]], [[0]], ["x"])
    plt.close("all")


# ----------------------------------------------------------------------------- KL of the tiny policy from samples
def test_response_logprobs_match_one_by_one(policy):
    from rlhf_helpers.kl import response_logprobs
    from rlhf_helpers.sampling import sequence_logprob

    model, tokenizer = policy
    queries = [torch.tensor(tokenizer(t)["input_ids"]) for t in ("i rented", "the cast was very", "a film")]
    responses = [torch.tensor([5, 9, 11]), torch.tensor([7]), torch.tensor([3, 4, 5, 6, 7, 8])]
    got = response_logprobs(model, queries, responses, tokenizer.pad_token_id, batch_size=2)
    want = torch.tensor([sequence_logprob(model, q, r) for q, r in zip(queries, responses)])
    assert got.shape == (3,) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)  # left padding + position ids change nothing
    with pytest.raises(ValueError):
        response_logprobs(model, queries, responses[:2], tokenizer.pad_token_id)


def test_evaluate_reward_and_kl_of_the_reference_is_zero(policy):
    from rlhf_helpers.kl import evaluate_reward_and_kl
    from rlhf_helpers.rewards import LengthSampler

    model, tokenizer = policy
    queries = [torch.tensor(tokenizer(t)["input_ids"]) for t in ("i rented", "the cast was", "the film")] * 2
    state = torch.get_rng_state()
    res = evaluate_reward_and_kl(model, model, tokenizer, queries, lambda texts: torch.ones(len(texts)),
                                 LengthSampler(3, 6, generator=torch.Generator().manual_seed(0)), seed=0)
    assert torch.equal(state, torch.get_rng_state()), "evaluation must not move the global random state"
    assert len(res["texts"]) == 6 and res["reward_mean"] == 1.0
    assert res["kl"] == {"k1": 0.0, "k2": 0.0, "k3": 0.0}
    assert res["logp"].shape == (6,) and (res["logp"] < 0).all()
    again = evaluate_reward_and_kl(model, model, tokenizer, queries, lambda texts: torch.zeros(len(texts)),
                                   LengthSampler(3, 6, generator=torch.Generator().manual_seed(0)), seed=0)
    assert again["texts"] == res["texts"], "the same seed gives the same samples"


def test_beta_explorer_works_before_the_learner_writes_their_functions():
    """The widget needs a working pi* before lab 4's exercises are done: a function that still raises
    NotImplementedError is replaced by the kit's, and the panel says so."""
    import rlhf_helpers.kl as K
    from rlhf_helpers.widgets import beta_explorer

    def optimal_policy(ref_probs, rewards, beta):
        raise NotImplementedError()

    state = K.beta_explorer_state(beta=0.5, policy_fn=optimal_policy, kl_fn=K.kl_divergence)
    assert state["kit_fallback"] == ["optimal_policy"]
    assert state["kl"] == pytest.approx(K.beta_explorer_state(beta=0.5)["kl"])
    panel = beta_explorer(beta=1.0, policy_fn=optimal_policy)
    assert "until you write yours" in panel.explorer.info.value
    assert K.beta_explorer_state(beta=0.5, policy_fn=K.optimal_policy)["kit_fallback"] == []
