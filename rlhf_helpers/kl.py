"""KL divergence, its sample estimators, and the KL-regularised optimum.

RLHF does not maximise the reward alone; it maximises

.. math::
    J(\\pi) = \\mathbb{E}_{y \\sim \\pi}[r(y)] - \\beta\\, \\mathrm{KL}(\\pi \\,\\|\\, \\pi_{\\mathrm{ref}})   \\tag{1}

whose maximiser over all distributions has the closed form

.. math::
    \\pi^*(y) = \\frac{1}{Z}\\, \\pi_{\\mathrm{ref}}(y)\\, e^{r(y)/\\beta},
    \\qquad Z = \\sum_y \\pi_{\\mathrm{ref}}(y)\\, e^{r(y)/\\beta}   \\tag{2}

(the starting point of the DPO derivation in lab 5).

==========================  ===========================================================
``kl_divergence``           exact KL(p || q) of probability vectors (last dimension)
``kl_estimators``           per-sample estimators k1, k2, k3 of KL(p || q), samples from p
``optimal_policy``          pi* of Eq. (2), computed in log space
``regularized_objective``   J of Eq. (1) for a distribution ``probs``
``estimator_summary``       bias and spread of the estimators on samples from p
``beta_explorer_state``     what the beta widget shows for one beta (pure logic)
``response_logprobs``       log pi(y | x) of whole responses (from :mod:`rlhf_helpers.sequences`)
``evaluate_reward_and_kl``  sample from a tuned policy; its mean reward and KL to the reference
==========================  ===========================================================

The first four are the graded functions of lab 4; these are the kit's reference
versions. While lab 4 is graded they are stubs in the sandbox (see
``autograder.grading.answer_key``), and so are the helpers listed in :data:`CARRIES`,
which do part of their work (the input checks). The helpers the lab calls take
the graded functions they need as parameters (``estimators=``, ``kl_fn=``,
``policy_fn=``, ``objective_fn=``; default: the kit's, looked up at call time),
so the notebook passes the learner's own. Nothing here seeds or changes global state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rlhf_helpers import _args
from rlhf_helpers.sequences import pad_token_id, response_logprobs  # noqa: F401 (response_logprobs: re-exported)

__all__ = [
    "SUM_TOLERANCE",
    "TOY_VOCAB",
    "TOY_REF_PROBS",
    "TOY_REWARDS",
    "check_distribution",
    "kl_divergence",
    "kl_estimators",
    "optimal_policy",
    "regularized_objective",
    "estimator_summary",
    "beta_explorer_state",
    "response_logprobs",
    "evaluate_reward_and_kl",
]

SUM_TOLERANCE = 1e-4
"""How far the entries of a probability vector may sum from 1."""

CARRIES = {"check_distribution": ["kl_divergence"],
           "estimator_summary": ["expected_reward"], "evaluate_reward_and_kl": ["expected_reward"]}
"""Helpers that do part of a graded function's work, stubbed with it while its lab is graded:
the distribution checks graded by lab 4's error tests; a mean and standard error (lab 2's
``expected_reward``).
None of them is used by the lab whose answer it carries."""


# ----------------------------------------------------------------------------- input checks
def _check_tensor(x: Any, name: str) -> torch.Tensor:
    """A floating-point tensor whose last dimension (the outcomes) is not empty."""
    _args.tensor(x, name, floating=True)
    if x.dim() == 0:
        raise ValueError(f"{name} should have at least one dimension (the vocabulary is the last one), got a scalar.")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has an empty last dimension: a distribution needs at least one outcome.")
    return x


def check_distribution(p: Any, name: str = "p", atol: float = SUM_TOLERANCE) -> torch.Tensor:
    """Raise unless ``p`` holds probability vectors along its last dimension.

    Args:
        p: float tensor of shape ``(..., V)``.
        name: how error messages call it.
        atol: how far each row may sum from 1.

    Returns:
        ``p`` itself, unchanged.

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: a scalar, an empty last dimension, a NaN or negative entry, or a
            row whose sum is off 1 by more than ``atol``.
    """
    p = _check_tensor(p, name)
    if torch.isnan(p).any():
        raise ValueError(f"{name} contains NaN: not a probability distribution.")
    if (p < 0).any():
        raise ValueError(f"{name} has negative entries (min {p.min().item():.3g}): probabilities are >= 0. "
                         "Did you pass logits or log-probabilities instead of probabilities?")
    sums = p.double().sum(-1)
    worst = (sums - 1).abs().max().item()
    if not worst <= atol:  # also catches inf
        raise ValueError(f"{name} does not sum to 1 along the last dimension (off by up to {worst:.3g}, "
                         f"tolerance {atol:g}). Normalise it, or apply softmax to logits.")
    return p


# ----------------------------------------------------------------------------- graded (reference versions)
def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_i p_i (log p_i - log q_i) along the last dimension.

    Terms with ``p_i = 0`` count as 0 (the limit of x log x at 0); a term with
    ``p_i > 0`` and ``q_i = 0`` makes the divergence ``inf``. Agrees with
    ``torch.distributions.kl_divergence(Categorical(probs=p), Categorical(probs=q))``.

    Args:
        p: probabilities, shape ``(..., V)``.
        q: probabilities, same shape as ``p``.

    Returns:
        Shape ``(...)`` (the last dimension summed out), dtype of ``p``; every entry >= 0.

    Raises:
        TypeError / ValueError: see :func:`check_distribution`, or shapes differ.
    """
    check_distribution(p, "p")
    check_distribution(q, "q")
    _args.same_shape(p=p, q=q)
    # xlogy(0, .) = 0 and xlogy(x > 0, 0) = -inf, which is exactly the convention above.
    terms = torch.xlogy(p, p) - torch.xlogy(p, q)  # (..., V)
    return terms.sum(-1)


def kl_estimators(logp: torch.Tensor, logq: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample estimators of KL(p || q) from samples x ~ p (Schulman, "Approximating KL divergence", 2020).

    With the log-ratio :math:`\\log r = \\log q(x) - \\log p(x)`:

    * ``k1 = -log r = log p - log q``: unbiased, high variance, can be negative;
    * ``k2 = (log r)^2 / 2``: biased, low variance, always >= 0;
    * ``k3 = (r - 1) - log r``: unbiased (E_p[r] = 1), low variance, always >= 0.

    Args:
        logp: ``log p(x)`` of each sample, any shape ``S``.
        logq: ``log q(x)`` of the same samples, shape ``S``.

    Returns:
        ``{"k1", "k2", "k3"}``, each of shape ``S`` and the dtype of ``logp``.
        The mean over samples estimates KL(p || q).
    """
    for x, name in ((logp, "logp"), (logq, "logq")):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} should be a torch.Tensor, got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(f"{name} should have a floating-point dtype, got {x.dtype}.")
    _args.same_shape(logp=logp, logq=logq)
    log_r = logq - logp
    return {
        "k1": -log_r,
        "k2": log_r.pow(2) / 2,
        "k3": torch.expm1(log_r) - log_r,  # expm1: accurate when r is close to 1
    }


def optimal_policy(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The maximiser of E_pi[r] - beta KL(pi || pi_ref): pi* proportional to pi_ref exp(r / beta) (Eq. 2).

    Computed as ``softmax(log pi_ref + r / beta)`` so that large ``r / beta``
    cannot overflow. As beta -> 0 the mass goes to the highest-reward outcomes
    (shared in proportion to pi_ref); as beta -> inf pi* -> pi_ref. Outcomes
    with ``pi_ref = 0`` keep probability 0.

    Args:
        ref_probs: pi_ref, shape ``(..., V)``.
        rewards: finite rewards r, same shape.
        beta: the KL coefficient, > 0 (``math.inf`` gives pi_ref).

    Returns:
        pi*, shape ``(..., V)``, dtype of ``ref_probs``; rows sum to 1.

    Raises:
        ValueError: beta <= 0, ``ref_probs`` not a distribution, non-finite rewards or
            a shape mismatch.
    """
    beta = _args.positive_number(beta, "beta", allow_inf=True)
    check_distribution(ref_probs, "ref_probs")
    _check_tensor(rewards, "rewards")
    _args.same_shape(ref_probs=ref_probs, rewards=rewards)
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards should be finite.")
    logits = torch.log(ref_probs.double()) + rewards.double() / beta  # float64: r / beta may be huge
    return torch.softmax(logits, dim=-1).to(ref_probs.dtype)


def regularized_objective(probs: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor,
                          beta: float) -> torch.Tensor:
    """J(pi) = E_{y ~ probs}[r(y)] - beta KL(probs || ref_probs) (Eq. 1).

    Args:
        probs: the policy pi, shape ``(..., V)``.
        ref_probs: pi_ref, same shape.
        rewards: r, same shape.
        beta: the KL coefficient, >= 0 (0 gives the expected reward alone).

    Returns:
        Shape ``(...)``, dtype of ``probs``; ``-inf`` where ``probs`` puts mass
        where ``ref_probs`` has none (and beta > 0).
    """
    beta = _args.positive_number(beta, "beta", allow_zero=True, allow_inf=True)
    kl = kl_divergence(probs, ref_probs)
    _check_tensor(rewards, "rewards")
    _args.same_shape(probs=probs, rewards=rewards)
    expected = (probs * rewards).sum(-1)
    if beta == 0:
        return expected
    return expected - beta * kl


# ----------------------------------------------------------------------------- estimator experiment
def estimator_summary(p: torch.Tensor, q: torch.Tensor, num_samples: int,
                      generator: torch.Generator | None = None,
                      estimators=None, kl_fn=None) -> dict[str, dict[str, float]]:
    """Draw samples from ``p`` and report each KL estimator's mean, bias and spread.

    Args:
        p, q: 1-D probability vectors of length V (``q > 0`` wherever ``p > 0``).
        num_samples: how many samples x ~ p to draw.
        generator: the random source (global torch RNG when None).
        estimators: a function like :func:`kl_estimators` (the learner's, in the lab);
            default the kit's.
        kl_fn: a function like :func:`kl_divergence`, for the exact KL (the learner's, in
            the lab); default the kit's. It also checks that ``p`` and ``q`` are distributions.

    Returns:
        ``{name: {"mean", "bias", "std", "std_error", "min"}}`` for k1, k2, k3, where
        ``bias = mean - KL(p || q)`` and ``std`` is the per-sample standard deviation;
        plus ``"exact": {"kl": KL(p || q)}``.
    """
    estimators = kl_estimators if estimators is None else estimators  # looked up now: the lab passes its own
    kl_fn = kl_divergence if kl_fn is None else kl_fn
    _check_tensor(p, "p")
    _check_tensor(q, "q")
    if p.dim() != 1:
        raise ValueError(f"p should be one distribution (1-D), got shape {tuple(p.shape)}.")
    _args.same_shape(p=p, q=q)
    _args.integer(num_samples, "num_samples", minimum=2)
    exact = float(kl_fn(p, q))  # first: the KL function checks that p and q are distributions
    x = torch.multinomial(p, num_samples, replacement=True, generator=generator)  # (N,)
    est = estimators(torch.log(p[x]), torch.log(q[x]))
    out: dict[str, dict[str, float]] = {}
    for name in ("k1", "k2", "k3"):
        v = est[name].double()
        mean, std = v.mean().item(), v.std().item()
        out[name] = {"mean": mean, "bias": mean - exact, "std": std,
                     "std_error": std / math.sqrt(num_samples), "min": v.min().item()}
    out["exact"] = {"kl": exact}
    return out


# ----------------------------------------------------------------------------- the beta widget's logic
TOY_VOCAB: tuple[str, ...] = ("superb", "good", "fine", "boring", "awful", "good good good")
"""The toy vocabulary of the beta explorer: the next word after "the film was"."""
TOY_REF_PROBS: tuple[float, ...] = (0.12, 0.30, 0.25, 0.18, 0.14, 0.01)
"""pi_ref over :data:`TOY_VOCAB`: the fluent words are likely, the degenerate one rare."""
TOY_REWARDS: tuple[float, ...] = (2.0, 1.2, 0.3, -1.0, -2.0, 2.6)
"""A sentiment reward over :data:`TOY_VOCAB` that over-rates the degenerate "good good good"."""


def beta_explorer_state(ref_probs: Sequence[float] | torch.Tensor = TOY_REF_PROBS,
                        rewards: Sequence[float] | torch.Tensor = TOY_REWARDS,
                        beta: float = 1.0, *, policy_fn=None, kl_fn=None, objective_fn=None) -> dict[str, Any]:
    """Everything the beta explorer shows for one beta (no widgets involved).

    The numbers come from the three functions passed in (the learner's, in lab 4);
    each defaults to the kit's version, looked up at call time, and so does one that
    still raises ``NotImplementedError`` (the widget works before the learner writes it).

    Args:
        ref_probs: pi_ref over a toy vocabulary of V words (a sequence or 1-D tensor).
        rewards: the V rewards.
        beta: the KL coefficient, > 0 (``policy_fn`` refuses others).
        policy_fn: ``(ref_probs, rewards, beta) -> pi*``, like :func:`optimal_policy`.
        kl_fn: ``(p, q) -> KL(p || q)``, like :func:`kl_divergence`.
        objective_fn: ``(probs, ref_probs, rewards, beta) -> J``, like :func:`regularized_objective`.

    Returns:
        ``{"beta", "ref_probs", "rewards", "policy"`` (pi*, float64 tensors of shape ``(V,)``),
        ``"expected_reward"`` (E_pi*[r]), ``"ref_expected_reward"`` (E_ref[r]), ``"kl"``
        (KL(pi* || pi_ref)), ``"objective"`` (J(pi*)), ``"top"`` (index of pi*'s largest bar),
        ``"kit_fallback"`` (the names of given functions not written yet, replaced by the kit's)``}``;
        the numbers are Python floats.
    """
    kit = {"policy_fn": optimal_policy, "kl_fn": kl_divergence, "objective_fn": regularized_objective}
    given = {"policy_fn": policy_fn, "kl_fn": kl_fn, "objective_fn": objective_fn}
    fallback: list[str] = []

    def call(role: str, *args):
        """The given function (looked up now: the lab passes its own), or the kit's while the
        given one is not written yet (still raises NotImplementedError)."""
        if given[role] is not None:
            try:
                return given[role](*args)
            except NotImplementedError:
                fallback.append(getattr(given[role], "__name__", role))
        return kit[role](*args)

    ref = torch.as_tensor(ref_probs, dtype=torch.float64)
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if ref.dim() != 1 or r.dim() != 1:
        raise ValueError(f"ref_probs and rewards should be 1-D, got shapes {tuple(ref.shape)} and {tuple(r.shape)}.")
    pi = call("policy_fn", ref, r, beta)  # checks beta (> 0) and the inputs
    return {
        "beta": float(beta),
        "ref_probs": ref,
        "rewards": r,
        "policy": pi,
        "expected_reward": float((pi * r).sum()),
        "ref_expected_reward": float((ref * r).sum()),
        "kl": float(call("kl_fn", pi, ref)),
        "objective": float(call("objective_fn", pi, ref, r, beta)),
        "top": int(pi.argmax()),
        "kit_fallback": fallback,
    }


# ----------------------------------------------------------------------------- KL of a language model, from samples
def _unwrap(model: Any) -> Any:
    """The causal LM inside a PPO value-head model (``.pretrained_model``), or the model itself."""
    return getattr(model, "pretrained_model", model)


@torch.no_grad()
@torch.no_grad()
def evaluate_reward_and_kl(model: Any, ref_model: Any, tokenizer: Any, query_tensors: list[torch.Tensor],
                           reward_fn, length_sampler, generation_kwargs: dict | None = None,
                           estimators=None, seed: int | None = 0) -> dict[str, Any]:
    """Sample one response per query from ``model`` and measure its reward and KL to ``ref_model``.

    The KL(pi || pi_ref) of whole responses is estimated from the samples
    y ~ pi(. | x) with ``estimators(log pi(y|x), log pi_ref(y|x))`` (k1 and k3
    are unbiased; see :func:`kl_estimators`).

    Args:
        model: the tuned policy (a causal LM or a value-head wrapper).
        ref_model: the reference causal LM.
        tokenizer: their tokenizer.
        query_tensors: N queries (1-D ``torch.long``).
        reward_fn: texts -> ``(N,)`` rewards (e.g. :func:`rlhf_helpers.rewards.make_reward_fn`).
        length_sampler: draws each response's maximum length.
        generation_kwargs: for ``generate`` (default pure sampling: ``do_sample=True, top_k=0, top_p=1.0``).
        estimators: a function like :func:`kl_estimators` (the learner's, in lab 4; default
            the kit's, looked up at call time).
        seed: seeds the sampling without touching the caller's random state; None uses it as is.

    Returns:
        ``{"texts"`` (N query + response strings), ``"rewards"`` ``(N,)``, ``"logp"``, ``"ref_logp"`` ``(N,)``,
        ``"reward_mean"``, ``"reward_std_error"``, ``"kl"`` (``{name: mean}`` for each estimator),
        ``"kl_std_error"`` (``{name: standard error}``)``}``.
    """
    from rlhf_helpers.rewards import rollout, rollout_texts

    estimators = kl_estimators if estimators is None else estimators
    kwargs = dict(generation_kwargs or {"do_sample": True, "top_k": 0, "top_p": 1.0})
    lm = _unwrap(model)
    devices = [] if next(lm.parameters()).device.type != "cuda" else [torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        rolls = rollout(lm, tokenizer, list(query_tensors), length_sampler, kwargs)
    queries = [r["query_ids"] for r in rolls]
    responses = [r["response_ids"] for r in rolls]
    texts = rollout_texts(rolls)
    rewards = torch.as_tensor(reward_fn(texts), dtype=torch.float32).cpu()
    pad = pad_token_id(tokenizer)
    logp = response_logprobs(lm, queries, responses, pad)
    ref_logp = response_logprobs(ref_model, queries, responses, pad)
    est = estimators(logp, ref_logp)
    n = max(len(texts), 1)
    se = (lambda v: (v.std().item() / math.sqrt(n)) if n > 1 else float("nan"))
    return {
        "texts": texts,
        "rewards": rewards,
        "logp": logp,
        "ref_logp": ref_logp,
        "reward_mean": rewards.mean().item(),
        "reward_std_error": se(rewards),
        "kl": {k: v.double().mean().item() for k, v in est.items()},
        "kl_std_error": {k: se(v.double()) for k, v in est.items()},
    }


