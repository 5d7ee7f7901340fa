"""A small, readable PPO trainer for causal language models.

TRL removed ``PPOTrainer``, ``PPOConfig`` and the value-head model (moved to
``trl.experimental`` in 2025, deleted in 2026), so every PPO tutorial pinned to
old TRL is broken. This module is the kit's own PPO, written to be read: one
function per equation, one class per moving part. Lab 3 builds each piece by
hand, writes the PPO step itself (:func:`ppo_step`) and trains the tiny policy
with it; lab 4 uses the trainer, with the pieces here, for a beta sweep.

Public API
==========

Building blocks (tensors in, tensors out; the graded functions of lab 3):

===================================================  ===========================================================
``policy_gradient_estimate(logits, actions, rewards)``  REINFORCE estimate of the gradient of E[r] for a categorical
                                                      policy, ``(K,)``
``sga_step(logits, actions, rewards, lr)``            one stochastic gradient *ascent* step on the logits
``kl_penalized_rewards(scores, logprobs, ref_logprobs, mask, beta)``  per-token rewards ``(B, T)``
``compute_gae(rewards, values, mask, gamma, lam)``    ``(advantages, returns)``, each ``(B, T)``
``ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)``   clipped surrogate, scalar
``ppo_value_loss(values, old_values, returns, mask, clip_range_value)``     clipped value loss, scalar
``ppo_step(policy, ref_model, tokenizer, reward_fn, queries, optimizer, config, length_sampler,
generation_kwargs, generator)``                       one PPO iteration: sample, score, update; ``(stats, batch)``
===================================================  ===========================================================

:func:`ppo_step` is :func:`rlhf_helpers.rewards.rollout`, decoding, the reward
function and :func:`ppo_update` (the update half, on rollouts already scored),
which :meth:`PPOTrainer.step` also calls. :func:`pad_rollouts` lays a batch of
rollouts out as described below.

The token-level tools the trainer uses (``logprobs_from_logits``,
``entropy_from_logits``, ``position_ids_from_attention_mask``, ``masked_mean``,
``masked_whiten``, padding) live in :mod:`rlhf_helpers.sequences` and are
re-exported here.

Moving parts:

* :class:`PPOConfig`: a dataclass of hyper-parameters, each with help text
  (``PPOConfig.help()`` prints them); unknown keys raise ``TypeError``
  (``PPOConfig(**d)`` or ``PPOConfig.from_dict(d)``).
* :class:`ValueHeadModel`: a causal LM plus a scalar value head on its last
  hidden state; ``forward(input_ids, attention_mask) -> (logits, values)``.
* :class:`FixedKLController`, :class:`AdaptiveKLController`: the KL coefficient
  beta, fixed or adapted towards a target KL (Ziegler et al., 2019).
* :class:`PPOTrainer`::

      trainer = PPOTrainer(PPOConfig(), model, tokenizer)     # ref_model: a frozen copy by default
      trainer = PPOTrainer(PPOConfig(), model, tokenizer,     # or with your own pieces (lab 3); each
                           compute_gae=my_gae, ...)           # one not given is the one in this module
      responses = trainer.generate(queries, length_sampler=LengthSampler(12, 17), do_sample=True, top_k=0)
      stats = trainer.step(queries, responses, scores)       # one PPO update; a dict of floats
      history = trainer.train(40, query_fn, reward_fn, generation_kwargs)   # the whole loop, with tqdm

Data layout inside :func:`ppo_update`
====================================
Each query + response is one sequence; the batch is LEFT-padded, so every
response ends at the last column. Per-token tensors (log-probs, values,
rewards, advantages) have shape ``(B, R)`` with ``R`` the longest response:
column ``j`` is response token ``j - (R - n_i)`` of sequence ``i`` (``n_i`` its
length), and ``mask`` is 1 on real response tokens, 0 on the padding at the
left. The value at column ``j`` is the value of the state *before* that token
is emitted. The score is added at the last real token (always column ``R - 1``
here; the functions above accept any mask, left- or right-padded).

Position ids
------------
``generate()`` derives position ids from the attention mask; a plain forward
pass does not, and on a left-padded batch log-probs then differ from the
sampling distribution by up to several nats. Every forward pass here passes
``position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)`` explicitly
(tested against ``generate()``'s own logits in ``tests/helpers/test_ppo.py``).

Nothing here seeds or changes global state at import. ``PPOTrainer`` seeds
torch's global generator once, when it is created, if ``config.seed`` is not
``None`` (``generate()`` samples from it), as TRL's trainer did.

References: Schulman et al. 2017 (PPO, arXiv:1707.06347); Schulman et al. 2016
(GAE, arXiv:1506.02438); Ziegler et al. 2019 (fine-tuning LMs from human
preferences, arXiv:1909.08593); Williams 1992 (REINFORCE).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from rlhf_helpers import _args
from rlhf_helpers.models import frozen_copy
from rlhf_helpers.rewards import LengthSampler, decoded_texts, rollout, rollout_texts
from rlhf_helpers.sequences import (causal_lm_logprobs, entropy_from_logits, logprobs_from_logits, masked_mean,
                                    masked_whiten, pad_left, pad_token_id, position_ids_from_attention_mask)

__all__ = [
    "TRAINER_FUNCTIONS",
    "PPOConfig",
    "ValueHeadModel",
    "FixedKLController",
    "AdaptiveKLController",
    "PPOTrainer",
    "policy_gradient_estimate",
    "sga_step",
    "logprobs_from_logits",
    "entropy_from_logits",
    "position_ids_from_attention_mask",
    "masked_mean",
    "masked_whiten",
    "kl_penalized_rewards",
    "compute_gae",
    "ppo_policy_loss",
    "ppo_value_loss",
    "pad_rollouts",
    "ppo_update",
    "ppo_step",
]

CARRIES = {"_last_token_index": ["kl_penalized_rewards"], "_policy_forward": ["ppo_step"], "ppo_update": ["ppo_step"],
           "_rollout_pass": ["ppo_step"], "_optimise": ["ppo_step"]}
"""Helpers that do a graded function's work under another name: the grader hides them with it
(``_last_token_index`` is the part of :func:`kl_penalized_rewards` that places the score;
:func:`ppo_update`, its forward pass and its two steps are the update half of lab 3's :func:`ppo_step`, so
:meth:`PPOTrainer.step`, which calls it, raises while lab 3 is graded; lab 4 keeps the trainer)."""

TRAINER_FUNCTIONS = ("kl_penalized_rewards", "compute_gae", "ppo_policy_loss", "ppo_value_loss")
"""The building blocks :meth:`PPOTrainer.step` calls; each can be replaced by a keyword argument
of :class:`PPOTrainer` (lab 3 passes the learner's own)."""


# ============================================================================ configuration
@dataclass
class PPOConfig:
    """Hyper-parameters of :class:`PPOTrainer`.

    The defaults take the tiny policy from about half to over 90% positive
    reviews in about 20 steps (10-30 s on 2 CPU cores; lab 3).

    ``PPOConfig(**kwargs)`` and ``PPOConfig.from_dict(d)`` raise ``TypeError`` on
    an unknown key; values are checked in ``__post_init__`` (``ValueError``).
    ``PPOConfig.help()`` returns every field with its help text.
    """

    learning_rate: float = field(default=2e-4, metadata={"help": "Adam learning rate for the policy and value head."})
    batch_size: int = field(default=64, metadata={"help": "rollouts per PPO step (queries passed to step())."})
    mini_batch_size: int = field(default=16, metadata={
        "help": "rollouts per gradient step; each epoch shuffles the batch into batch_size / mini_batch_size minibatches."})
    ppo_epochs: int = field(default=2, metadata={
        "help": "passes over each batch of rollouts (K in the PPO paper; classic TRL used 4: docs/BENCHMARKS.md)."})
    gamma: float = field(default=1.0, metadata={"help": "discount factor of GAE (1: no discount within a response)."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda: 0 = one-step TD advantages, 1 = Monte Carlo."})
    cliprange: float = field(default=0.2, metadata={
        "help": "epsilon of the clipped surrogate: the ratio pi/pi_old is clipped to [1 - eps, 1 + eps]."})
    cliprange_value: float = field(default=0.2, metadata={
        "help": "the new value may move at most this far from the rollout value before its loss is clipped."})
    vf_coef: float = field(default=0.1, metadata={"help": "weight of the value loss in the total loss."})
    kl_coef: float = field(default=0.2, metadata={
        "help": "beta: per-token KL penalty coefficient against the reference model (initial value if adaptive_kl)."})
    adaptive_kl: bool = field(default=False, metadata={
        "help": "adapt beta towards target_kl (Ziegler et al. 2019) instead of keeping it fixed."})
    target_kl: float = field(default=6.0, metadata={
        "help": "with adaptive_kl: the KL (nats per response, summed over tokens) beta steers towards."})
    horizon: float = field(default=10000.0, metadata={
        "help": "with adaptive_kl: rollouts over which beta can change by a factor of about e^0.2."})
    max_grad_norm: float | None = field(default=1.0, metadata={
        "help": "clip the gradient's global norm to this value; None turns clipping off."})
    whiten_advantages: bool = field(default=True, metadata={
        "help": "normalise advantages to mean 0, std 1 over the batch's real tokens (as TRL did)."})
    seed: int | None = field(default=0, metadata={
        "help": "seeds torch's global generator when the trainer is created, and the minibatch shuffling; "
                "None leaves torch's generator alone."})

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"PPOConfig: {msg}")

        for name in ("batch_size", "mini_batch_size", "ppo_epochs"):
            _args.integer(getattr(self, name), f"PPOConfig: {name}", minimum=1)
        need(self.mini_batch_size <= self.batch_size,
             f"mini_batch_size ({self.mini_batch_size}) must not exceed batch_size ({self.batch_size}).")
        need(self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}.")
        need(0.0 <= self.gamma <= 1.0, f"gamma must be in [0, 1], got {self.gamma}.")
        need(0.0 <= self.lam <= 1.0, f"lam must be in [0, 1], got {self.lam}.")
        need(self.cliprange > 0, f"cliprange must be positive, got {self.cliprange}.")
        need(self.cliprange_value > 0, f"cliprange_value must be positive, got {self.cliprange_value}.")
        need(self.vf_coef >= 0, f"vf_coef must be non-negative, got {self.vf_coef}.")
        need(self.kl_coef >= 0, f"kl_coef (beta) must be non-negative, got {self.kl_coef}.")
        need(self.target_kl > 0, f"target_kl must be positive, got {self.target_kl}.")
        need(self.horizon > 0, f"horizon must be positive, got {self.horizon}.")
        need(self.max_grad_norm is None or self.max_grad_norm > 0,
             f"max_grad_norm must be positive or None, got {self.max_grad_norm}.")
        need(not (self.adaptive_kl and self.kl_coef == 0),
             "adaptive_kl needs kl_coef > 0: the adaptive controller multiplies beta, so it would stay 0.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PPOConfig:
        """Build a config from a dict; an unknown key raises ``TypeError`` naming the valid ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"PPOConfig has no field(s) {unknown}; valid fields: {sorted(known)}.")
        return cls(**values)

    @classmethod
    def help(cls) -> str:
        """Every field, its default and its help text, one per line."""
        lines = []
        for f in dataclasses.fields(cls):
            lines.append(f"{f.name} = {f.default!r}: {f.metadata.get('help', '')}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ============================================================================ small tensor helpers
# ============================================================================ part A: policy gradient
def policy_gradient_estimate(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    r"""REINFORCE estimate of :math:`\nabla_\theta J` for a categorical policy :math:`\pi = \mathrm{softmax}(\theta)`.

    With :math:`J(\theta) = \mathbb{E}_{a\sim\pi_\theta}[r(a)]` the log-derivative trick gives
    :math:`\nabla J = \mathbb{E}[r(a)\,\nabla\log\pi_\theta(a)]`, and for a softmax
    :math:`\nabla_\theta \log\pi_\theta(a) = \mathrm{onehot}(a) - \pi_\theta`. So

    .. math:: \hat g = \frac1N \sum_{i=1}^N r_i\,(\mathrm{onehot}(a_i) - \mathrm{softmax}(\theta)).

    Args:
        logits: ``(K,)`` float, the policy's logits :math:`\theta`.
        actions: ``(N,)`` integer, sampled actions in ``[0, K)``.
        rewards: ``(N,)`` float, their rewards (or advantages).

    Returns:
        ``(K,)``, the logits' dtype.
    """
    _args.tensor(logits, "logits", dim=1)
    _args.tensor(actions, "actions", dim=1)
    _args.tensor(rewards, "rewards", dim=1)
    if actions.shape != rewards.shape:
        raise ValueError(f"actions {tuple(actions.shape)} and rewards {tuple(rewards.shape)} should both be (N,).")
    if actions.numel() == 0:
        raise ValueError("need at least one sampled action.")
    probs = torch.softmax(logits, dim=-1)  # (K,)
    onehot = F.one_hot(actions.long(), num_classes=logits.shape[-1]).to(logits.dtype)  # (N, K)
    return (rewards.to(logits.dtype).unsqueeze(-1) * (onehot - probs)).mean(0)  # (K,)


def sga_step(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, lr: float) -> torch.Tensor:
    r"""One stochastic gradient *ascent* step: :math:`\theta \leftarrow \theta + \eta\,\hat g` (a new tensor)."""
    return logits + lr * policy_gradient_estimate(logits, actions, rewards)


# ============================================================================ part B: the pieces of PPO
def _last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-zero entry of each row of ``mask`` ``(B, T)`` -> ``(B,)``."""
    m = mask.bool()
    if not bool(m.any(-1).all()):
        bad = (~m.any(-1)).nonzero().flatten().tolist()
        raise ValueError(f"mask rows {bad} have no real token: every response needs at least one token.")
    idx = torch.arange(m.shape[-1], device=m.device).expand_as(m)
    return torch.where(m, idx, torch.full_like(idx, -1)).amax(-1)


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> torch.Tensor:
    r"""Per-token rewards: a KL penalty on every response token, plus the score at the last one.

    .. math::
        r_t = -\beta\,\big(\log\pi_\theta(y_t\mid x, y_{<t}) - \log\pi_\mathrm{ref}(y_t\mid x, y_{<t})\big)
              + \mathbb{1}[t = \text{last real token}]\; s

    (Ziegler et al. 2019, eq. 2, with the KL estimated on the sampled tokens.)

    Args:
        scores: ``(B,)`` reward-model score of each response.
        logprobs, ref_logprobs: ``(B, T)`` per-token log-probs under the policy
            (at rollout time) and the reference.
        mask: ``(B, T)`` 1 on response tokens, 0 on padding (any padding side).
        beta: the KL coefficient (>= 0).

    Returns:
        ``(B, T)`` in ``logprobs``' dtype, 0 wherever ``mask`` is 0.
    """
    _args.tensor(logprobs, "logprobs", dim=2)
    _args.tensor(ref_logprobs, "ref_logprobs")
    _args.tensor(mask, "mask")
    _args.same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs, mask=mask)
    _args.tensor(scores, "scores", dim=1)
    if scores.shape[0] != logprobs.shape[0]:
        raise ValueError(f"scores has {scores.shape[0]} entries but logprobs has {logprobs.shape[0]} rows.")
    m = mask.bool()
    kl = logprobs - ref_logprobs  # (B, T)
    rewards = torch.where(m, -beta * kl, torch.zeros_like(kl))
    last = _last_token_index(m)  # (B,)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype).to(rewards.device)
    return rewards


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised advantage estimation (Schulman et al. 2016, eqs. 11-16).

    .. math::
        \delta_t = r_t + \gamma V_{t+1} - V_t, \qquad
        \hat A_t = \delta_t + \gamma\lambda\,\hat A_{t+1}, \qquad
        R_t = \hat A_t + V_t,

    computed backwards over each row's real tokens (padding is skipped, so
    either padding side works); the value after the last real token is 0
    (the episode ends with the response).

    Args:
        rewards: ``(B, T)`` per-token rewards (see :func:`kl_penalized_rewards`).
        values: ``(B, T)`` value of the state before each token.
        mask: ``(B, T)`` 1 on real tokens, 0 on padding.
        gamma: discount in [0, 1].
        lam: GAE lambda in [0, 1].

    Returns:
        ``(advantages, returns)``, each ``(B, T)`` in ``values``' dtype, 0 where
        ``mask`` is 0. Both are detached (they are targets, not graph nodes).
    """
    _args.tensor(rewards, "rewards", dim=2)
    _args.tensor(values, "values")
    _args.tensor(mask, "mask")
    _args.same_shape(rewards=rewards, values=values, mask=mask)
    rewards, values = rewards.detach(), values.detach()
    m = mask.bool()
    B, T = rewards.shape
    advantages = torch.zeros_like(values)
    next_value = torch.zeros(B, dtype=values.dtype, device=values.device)  # V after the last real token
    next_adv = torch.zeros(B, dtype=values.dtype, device=values.device)
    for t in reversed(range(T)):
        delta = rewards[:, t].to(values.dtype) + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        real = m[:, t]
        advantages[:, t] = torch.where(real, adv, torch.zeros_like(adv))
        next_adv = torch.where(real, adv, next_adv)  # padding carries the next real token's values through
        next_value = torch.where(real, values[:, t], next_value)
    returns = torch.where(m, advantages + values, torch.zeros_like(values))
    return advantages, returns


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float) -> torch.Tensor:
    r"""PPO's clipped surrogate loss (Schulman et al. 2017, eq. 7), to be minimised.

    .. math::
        \rho_t = \exp(\log\pi_\theta - \log\pi_{\theta_\mathrm{old}}),\qquad
        L = -\,\mathrm{mean}_t\,\min\big(\rho_t \hat A_t,\;
            \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,\hat A_t\big)

    with the mean over real tokens only.

    Args:
        logprobs: ``(B, T)`` log-probs under the current policy (with gradient).
        old_logprobs: ``(B, T)`` log-probs at rollout time.
        advantages: ``(B, T)``.
        mask: ``(B, T)``, 1 on real tokens.
        clip_range: epsilon > 0.

    Returns:
        A scalar tensor.
    """
    _args.tensor(logprobs, "logprobs", dim=2)
    _args.tensor(old_logprobs, "old_logprobs")
    _args.tensor(advantages, "advantages")
    _args.tensor(mask, "mask")
    _args.same_shape(logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    return -masked_mean(torch.min(unclipped, clipped), mask)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip_range_value: float) -> torch.Tensor:
    r"""Clipped value loss (as in OpenAI's baselines and TRL), to be minimised.

    .. math::
        V^\mathrm{clip}_t = \mathrm{clip}(V_t, V^\mathrm{old}_t - \epsilon, V^\mathrm{old}_t + \epsilon),\qquad
        L = \tfrac12\,\mathrm{mean}_t \max\big((V_t - R_t)^2, (V^\mathrm{clip}_t - R_t)^2\big)

    with the mean over real tokens only.

    Args:
        values: ``(B, T)`` current value predictions (with gradient).
        old_values: ``(B, T)`` values at rollout time.
        returns: ``(B, T)`` targets (:func:`compute_gae`).
        mask: ``(B, T)``.
        clip_range_value: epsilon > 0.

    Returns:
        A scalar tensor.
    """
    _args.tensor(values, "values", dim=2)
    _args.tensor(old_values, "old_values")
    _args.tensor(returns, "returns")
    _args.tensor(mask, "mask")
    _args.same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    loss = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


# ============================================================================ KL controllers
class FixedKLController:
    """A constant KL coefficient beta. ``update()`` does nothing."""

    def __init__(self, kl_coef: float):
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be non-negative, got {kl_coef}.")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to do: beta stays fixed."""

    def __repr__(self) -> str:
        return f"FixedKLController(value={self.value:g})"


class AdaptiveKLController:
    r"""Adaptive KL coefficient of Ziegler et al. (2019), section 2.2.

    After each batch of ``n_steps`` rollouts with mean KL ``current_kl``:

    .. math::
        e = \mathrm{clip}\Big(\frac{\mathrm{KL}}{\mathrm{KL}_\mathrm{target}} - 1, -0.2, 0.2\Big),\qquad
        \beta \leftarrow \beta\,(1 + e\, n_\mathrm{steps} / \mathrm{horizon}).

    beta grows while the KL is above target and shrinks while it is below.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        if init_kl_coef <= 0:
            raise ValueError(f"init_kl_coef must be positive, got {init_kl_coef}.")
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be positive, got {target} and {horizon}.")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move beta towards the target (see the class docstring)."""
        proportional_error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon

    def __repr__(self) -> str:
        return f"AdaptiveKLController(value={self.value:g}, target={self.target:g}, horizon={self.horizon:g})"


# ============================================================================ the value-head model
class ValueHeadModel(torch.nn.Module):
    """A causal LM with a scalar value head on its last hidden state.

    The policy and the critic share the transformer; the head is one linear
    layer ``hidden_size -> 1`` with PyTorch's default initialisation, as in TRL's
    classic value head (a head of near-zero weights made the first PPO steps move
    the policy further from the reference: on the tiny task, 6.9 nats of KL where
    the held-out reward first reaches 3, against 4.1; docs/BENCHMARKS.md). Generation
    is delegated to the wrapped model (``.pretrained_model``).

    Args:
        pretrained_model: a ``transformers`` causal LM (``AutoModelForCausalLM``).
    """

    def __init__(self, pretrained_model: torch.nn.Module):
        super().__init__()
        if isinstance(pretrained_model, ValueHeadModel):
            raise TypeError("pretrained_model is already a ValueHeadModel.")
        config = getattr(pretrained_model, "config", None)
        hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
        if hidden is None:
            raise TypeError("pretrained_model should be a transformers causal LM with config.hidden_size.")
        self.pretrained_model = pretrained_model
        param = next(pretrained_model.parameters())
        self.v_head = torch.nn.Linear(hidden, 1).to(device=param.device, dtype=param.dtype)

    @property
    def config(self):
        return self.pretrained_model.config

    @property
    def generation_config(self):
        return self.pretrained_model.generation_config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, logits_to_keep: int = 0,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, L, V)`` and values ``(B, L)``.

        ``position_ids`` default to :func:`position_ids_from_attention_mask`
        (right for left-padded batches) when an attention mask is given.
        ``logits_to_keep=n > 0`` computes the logits of the last ``n`` positions
        only (``(B, n, V)``; the language-model head is skipped on the rest).
        """
        _args.tensor(input_ids, "input_ids", dim=2)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = position_ids_from_attention_mask(attention_mask)
        kept = {"logits_to_keep": logits_to_keep} if logits_to_keep else {}
        out = self.pretrained_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                    output_hidden_states=True, use_cache=False, **kept)
        hidden = out.hidden_states[-1]  # (B, L, H)
        values = self.v_head(hidden.to(self.v_head.weight.dtype)).squeeze(-1)  # (B, L)
        return out.logits, values

    def generate(self, *args: Any, **kwargs: Any):
        """``pretrained_model.generate(...)``."""
        return self.pretrained_model.generate(*args, **kwargs)

    def save_pretrained(self, directory: str) -> None:
        """Save the LM with ``save_pretrained`` and the head as ``value_head.pt`` beside it."""
        from pathlib import Path

        self.pretrained_model.save_pretrained(directory)
        torch.save(self.v_head.state_dict(), Path(directory) / "value_head.pt")


# ============================================================================ one PPO step
def _check_rollouts(query_tensors: Sequence[torch.Tensor], response_tensors: Sequence[torch.Tensor],
                    scores: Any) -> torch.Tensor:
    """Validate a batch of rollouts; the scores as a float32 ``(N,)`` tensor."""
    if not isinstance(query_tensors, (list, tuple)) or not isinstance(response_tensors, (list, tuple)):
        raise TypeError("query_tensors and response_tensors should be lists of 1-D torch.long tensors.")
    if len(query_tensors) != len(response_tensors):
        raise ValueError(f"got {len(query_tensors)} queries but {len(response_tensors)} responses.")
    if len(query_tensors) == 0:
        raise ValueError("a PPO step needs at least one rollout.")
    for name, seqs in (("query_tensors", query_tensors), ("response_tensors", response_tensors)):
        for i, t in enumerate(seqs):
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.numel() == 0 or t.dtype != torch.long:
                desc = type(t).__name__ if not isinstance(t, torch.Tensor) else f"tensor {t.dtype} {tuple(t.shape)}"
                raise ValueError(f"{name}[{i}] should be a non-empty 1-D torch.long tensor, got {desc}.")
    if isinstance(scores, (list, tuple)):
        scores = torch.stack([s.reshape(()) if isinstance(s, torch.Tensor) else torch.tensor(float(s))
                              for s in scores])
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores should be a tensor of shape (N,), got {type(scores).__name__}.")
    scores = scores.detach().float().reshape(-1)
    if scores.numel() != len(query_tensors):
        raise ValueError(f"got {scores.numel()} scores for {len(query_tensors)} rollouts.")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contain NaN or infinity.")
    return scores


def pad_rollouts(query_tensors: Sequence[torch.Tensor], response_tensors: Sequence[torch.Tensor],
                 pad_token_id: int, device: torch.device | str | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One left-padded batch of query + response sequences, and where the responses are.

    Args:
        query_tensors: N one-dimensional ``torch.long`` tensors.
        response_tensors: N one-dimensional ``torch.long`` tensors (at least one token each;
            a response that ended keeps its end-of-text token, which counts as a response token).
        pad_token_id: the id used for padding (masked out).
        device: where to put the results (default: the CPU).

    Returns:
        ``(input_ids, attention_mask, mask)``, all ``torch.long``: ``input_ids`` and
        ``attention_mask`` ``(N, L)``, each row ``query + response`` padded on the LEFT (so
        every response ends at the last column); ``mask`` ``(N, R)``, ``R`` the longest
        response, 1 on the response tokens, which are the last ``R`` columns of ``input_ids``
        (a shorter response leaves query tokens or padding there, with ``mask`` 0).
    """
    input_ids, attention_mask = pad_left([torch.cat([q.cpu(), r.cpu()]) for q, r in zip(query_tensors, response_tensors)],
                                         pad_token_id)
    _, mask = pad_left(response_tensors, 0)
    return input_ids.to(device or "cpu"), attention_mask.to(device or "cpu"), mask.to(device or "cpu")


def _policy_forward(policy: ValueHeadModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, R: int):
    """Per-token log-probs and values ``(B, R)`` and logits ``(B, R, V)`` of the last R tokens."""
    logits, values = policy(input_ids, attention_mask, logits_to_keep=R + 1)
    logits = logits[:, :-1]  # position t predicts token t + 1: the last R + 1 positions predict the R response tokens
    logprobs = logprobs_from_logits(logits, input_ids[:, -R:])
    return logprobs, values[:, -R - 1:-1], logits


def ppo_update(policy: ValueHeadModel, ref_model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               config: PPOConfig, query_tensors: Sequence[torch.Tensor], response_tensors: Sequence[torch.Tensor],
               scores: torch.Tensor | Sequence[float], pad_token_id: int, *, beta: float | None = None,
               generator: torch.Generator | None = None,
               functions: dict[str, Callable[..., Any] | None] | None = None) -> dict[str, float]:
    """The update half of one PPO step, on rollouts already sampled and scored.

    1. Rollout pass (no gradient): per-token log-probs and values of the
       policy, log-probs of the reference (:func:`pad_rollouts` layout).
    2. Rewards :func:`kl_penalized_rewards` with ``beta`` (default
       ``config.kl_coef``), then :func:`compute_gae` (advantages whitened over
       real tokens with :func:`masked_whiten` if ``config.whiten_advantages``).
    3. ``config.ppo_epochs`` passes; in each, ``perm = torch.randperm(N,
       generator=generator)`` and one minibatch per ``perm.split(config.mini_batch_size)``:
       loss = :func:`ppo_policy_loss` + ``vf_coef`` * :func:`ppo_value_loss`,
       ``optimizer.zero_grad()``, backward, ``clip_grad_norm_`` to
       ``config.max_grad_norm`` (unless ``None``), ``optimizer.step()``.

    The policy is in eval mode (no dropout) throughout. ``functions`` maps the
    names of :data:`TRAINER_FUNCTIONS` to replacements (``None`` or absent: this
    module's own, looked up now). Returns the stats dict described in
    :meth:`PPOTrainer.step` (without ``time_optimise``).
    """
    given = functions or {}

    def function(name: str) -> Callable[..., Any]:
        fn = given.get(name)
        return fn if fn is not None else globals()[name]

    device = policy.device
    scores = _check_rollouts(query_tensors, response_tensors, scores).to(device)
    beta = config.kl_coef if beta is None else float(beta)
    input_ids, attention_mask, mask = pad_rollouts(query_tensors, response_tensors, pad_token_id, device)
    policy.eval()  # no dropout: rollout and update log-probs agree
    old = _rollout_pass(policy, ref_model, input_ids, attention_mask, mask.shape[1], config.mini_batch_size)
    with torch.no_grad():  # 2. rewards and advantages
        rewards = function("kl_penalized_rewards")(scores, old["logprobs"], old["ref_logprobs"], mask, beta)
        advantages, returns = function("compute_gae")(rewards, old["values"], mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = masked_whiten(advantages, mask)
        kl_per_seq = ((old["logprobs"] - old["ref_logprobs"]) * mask).sum(-1)  # (B,)
    acc = _optimise(policy, optimizer, config, input_ids, attention_mask, mask, old, advantages, returns, generator,
                    function("ppo_policy_loss"), function("ppo_value_loss"))
    return {
        "reward_mean": scores.mean().item(),
        "reward_std": scores.std().item() if len(query_tensors) > 1 else 0.0,
        "kl": kl_per_seq.mean().item(),
        "kl_coef": beta,
        "non_score_reward": (-beta * kl_per_seq).mean().item(),
        "entropy": masked_mean(old["entropy"], mask).item(),
        **{k: sum(v) / len(v) for k, v in acc.items()},
        "advantage_mean": masked_mean(advantages, mask).item(),
        "return_mean": masked_mean(returns, mask).item(),
        "value_mean": masked_mean(old["values"], mask).item(),
        "response_length": mask.sum(-1).float().mean().item(),
    }


@torch.no_grad()
def _rollout_pass(policy: ValueHeadModel, ref_model: torch.nn.Module, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor, R: int, mini_batch_size: int) -> dict[str, torch.Tensor]:
    """Step 1 of :func:`ppo_update`: the policy's per-token log-probs, values and entropies and the
    reference's log-probs of the sampled responses, each ``(B, R)``, in minibatches, without gradient."""
    parts: dict[str, list[torch.Tensor]] = {"logprobs": [], "values": [], "entropy": [], "ref_logprobs": []}
    for idx in torch.arange(input_ids.shape[0]).split(mini_batch_size):
        lp, v, logits = _policy_forward(policy, input_ids[idx], attention_mask[idx], R)
        parts["logprobs"].append(lp)
        parts["values"].append(v)
        parts["entropy"].append(entropy_from_logits(logits))
        parts["ref_logprobs"].append(causal_lm_logprobs(ref_model, input_ids[idx], attention_mask[idx], R))
    return {k: torch.cat(v) for k, v in parts.items()}


def _optimise(policy: ValueHeadModel, optimizer: torch.optim.Optimizer, cfg: PPOConfig, input_ids: torch.Tensor,
              attention_mask: torch.Tensor, mask: torch.Tensor, old: dict[str, torch.Tensor], advantages: torch.Tensor,
              returns: torch.Tensor, generator: torch.Generator | None, policy_loss_fn: Callable[..., torch.Tensor],
              value_loss_fn: Callable[..., torch.Tensor]) -> dict[str, list[float]]:
    """Step 3 of :func:`ppo_update`: ``cfg.ppo_epochs`` passes over shuffled minibatches, one optimiser
    step each; returns each minibatch's losses and clip fractions, per stat."""
    acc: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "loss", "clip_fraction",
                                                     "value_clip_fraction", "approx_kl")}
    params = [p for p in policy.parameters() if p.requires_grad]
    R = mask.shape[1]
    for _ in range(cfg.ppo_epochs):
        perm = torch.randperm(input_ids.shape[0], generator=generator)
        for idx in perm.split(cfg.mini_batch_size):
            idx = idx.to(policy.device)
            m = mask[idx]
            logprobs, values, _ = _policy_forward(policy, input_ids[idx], attention_mask[idx], R)
            pg_loss = policy_loss_fn(logprobs, old["logprobs"][idx], advantages[idx], m, cfg.cliprange)
            vf_loss = value_loss_fn(values, old["values"][idx], returns[idx], m, cfg.cliprange_value)
            loss = pg_loss + cfg.vf_coef * vf_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                log_ratio = logprobs - old["logprobs"][idx]
                ratio = log_ratio.exp()
                acc["policy_loss"].append(pg_loss.item())
                acc["value_loss"].append(vf_loss.item())
                acc["loss"].append(loss.item())
                acc["clip_fraction"].append(masked_mean(((ratio - 1).abs() > cfg.cliprange).float(), m).item())
                acc["value_clip_fraction"].append(
                    masked_mean(((values - old["values"][idx]).abs() > cfg.cliprange_value).float(), m).item())
                acc["approx_kl"].append(masked_mean(0.5 * log_ratio ** 2, m).item())
    return acc


def ppo_step(policy: ValueHeadModel, ref_model: torch.nn.Module, tokenizer: Any,
             reward_fn: Callable[[list[str]], torch.Tensor], query_tensors: list[torch.Tensor],
             optimizer: torch.optim.Optimizer, config: PPOConfig, length_sampler: Any,
             generation_kwargs: dict[str, Any], generator: torch.Generator | None = None,
             ) -> tuple[dict[str, float], dict[str, Any]]:
    """One PPO iteration: sample a response per query, score it, and update the policy (lab 3's graded step).

    Samples with :func:`rlhf_helpers.rewards.rollout` (``policy.pretrained_model``,
    ``length_sampler``, ``generation_kwargs``); the texts are
    ``decode(query, skip_special_tokens=True) + decode(response, skip_special_tokens=True)``;
    ``scores = reward_fn(texts)``; then :func:`ppo_update` with ``beta = config.kl_coef``
    and the minibatch order drawn from ``generator``.

    Returns:
        ``(stats, batch)``: the stats of :func:`ppo_update`, and ``batch`` with
        ``"queries"``, ``"responses"`` (lists of 1-D ``torch.long`` CPU tensors),
        ``"texts"`` (list of str) and ``"scores"`` (``(N,)`` float32, CPU).
    """
    outs = rollout(policy.pretrained_model, tokenizer, list(query_tensors), length_sampler, generation_kwargs)
    queries = [o["query_ids"] for o in outs]
    responses = [o["response_ids"] for o in outs]
    texts = rollout_texts(outs)
    scores = reward_fn(texts)
    if not isinstance(scores, torch.Tensor):
        scores = torch.tensor([float(s) for s in scores])
    scores = scores.detach().float().cpu().reshape(-1)
    stats = ppo_update(policy, ref_model, optimizer, config, queries, responses, scores, pad_token_id(tokenizer),
                       generator=generator)
    return stats, {"queries": queries, "responses": responses, "texts": texts, "scores": scores}


# ============================================================================ the trainer
def _adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, with PyTorch's fused kernel where the parameters' device has one (a tenth faster a minibatch on a
    CPU for the tiny policy); the same update up to rounding."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


class PPOTrainer:
    """PPO for a causal LM against a frozen reference, in the spirit of TRL's classic ``PPOTrainer``.

    Args:
        config: a :class:`PPOConfig`.
        model: a causal LM (wrapped here in a :class:`ValueHeadModel`, available
            as ``trainer.model``) or a :class:`ValueHeadModel`. It is trained in
            place. Dropout is switched off (eval mode) throughout, so that the
            log-probs of the rollout and of the first optimisation pass agree.
        tokenizer: its tokenizer; ``pad_token_id`` (or ``eos_token_id``) must be set.
        ref_model: the frozen reference causal LM; default
            ``rlhf_helpers.models.frozen_copy`` of the policy as it is now.
        kl_penalized_rewards, compute_gae, ppo_policy_loss, ppo_value_loss:
            (keyword only) the building blocks :meth:`step` calls, with the
            signatures of the functions of this module of the same names and
            called positionally in that order of arguments. ``None`` (the
            default) means this module's own function, looked up when
            :meth:`step` runs. Lab 3 passes the learner's versions.

    Attributes:
        kl_ctl: the KL controller (``kl_ctl.value`` is the current beta).
        history: the stats dict of every ``step()`` so far.
        last_batch: ``{"queries", "responses", "texts", "scores"}`` of the last
            ``train()`` step (texts decoded, scores a CPU tensor).
        functions: building-block name -> the callable given for it, or
            ``None`` for this module's own (see :data:`TRAINER_FUNCTIONS`).
    """

    def __init__(self, config: PPOConfig, model: torch.nn.Module, tokenizer: Any,
                 ref_model: torch.nn.Module | None = None, *,
                 kl_penalized_rewards: Callable[..., torch.Tensor] | None = None,
                 compute_gae: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
                 ppo_policy_loss: Callable[..., torch.Tensor] | None = None,
                 ppo_value_loss: Callable[..., torch.Tensor] | None = None):
        if not isinstance(config, PPOConfig):
            raise TypeError(f"config should be a PPOConfig, got {type(config).__name__}.")
        self.config = config
        given = {"kl_penalized_rewards": kl_penalized_rewards, "compute_gae": compute_gae,
                 "ppo_policy_loss": ppo_policy_loss, "ppo_value_loss": ppo_value_loss}
        for name, fn in given.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} should be a function (or None for rlhf_helpers.ppo.{name}), "
                                f"got {type(fn).__name__}.")
        self.functions: dict[str, Callable[..., Any] | None] = given
        if config.seed is not None:
            torch.manual_seed(config.seed)
        self.model = model if isinstance(model, ValueHeadModel) else ValueHeadModel(model)
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id(tokenizer)
        if ref_model is None:
            ref_model = frozen_copy(self.model.pretrained_model)
        elif isinstance(ref_model, ValueHeadModel):
            ref_model = ref_model.pretrained_model
        self.ref_model = ref_model.eval()
        for p in self.ref_model.parameters():
            p.requires_grad_(False)
        self.device = self.model.device
        self.optimizer = _adam([p for p in self.model.parameters() if p.requires_grad], config.learning_rate)
        if config.adaptive_kl:
            self.kl_ctl: FixedKLController | AdaptiveKLController = AdaptiveKLController(
                config.kl_coef, config.target_kl, config.horizon)
        else:
            self.kl_ctl = FixedKLController(config.kl_coef)
        self._shuffle = torch.Generator().manual_seed(config.seed if config.seed is not None else 0)
        if config.seed is None:
            self._shuffle.seed()
        self.history: list[dict[str, float]] = []
        self.last_batch: dict[str, Any] = {}

    # ------------------------------------------------------------------ rollouts
    @torch.no_grad()
    def generate(self, query_tensors: list[torch.Tensor], length_sampler: Any | None = None,
                 **generation_kwargs: Any) -> list[torch.Tensor]:
        """Sample one response per query (the responses only, on the CPU).

        Args:
            query_tensors: N one-dimensional ``torch.long`` tensors.
            length_sampler: draws each response's maximum number of new tokens
                (e.g. ``rlhf_helpers.rewards.LengthSampler(12, 17)``); without
                one, ``max_new_tokens`` must be in ``generation_kwargs``.
            **generation_kwargs: for ``model.generate`` (``do_sample=True,
                top_k=0, top_p=1.0`` samples from the policy itself, as PPO
                assumes).

        Returns:
            N one-dimensional ``torch.long`` tensors; a response stops after its
            first end-of-sequence token, which it keeps. Generated in one
            left-padded batch (see :func:`rlhf_helpers.rewards.rollout`).
        """
        kwargs = dict(generation_kwargs)
        if length_sampler is None:
            if "max_new_tokens" not in kwargs:
                raise ValueError("pass length_sampler=... or max_new_tokens=... to bound the response length.")
            n = int(kwargs.pop("max_new_tokens"))
            length_sampler = LengthSampler(n, n + 1)
        elif "max_new_tokens" in kwargs or "max_length" in kwargs:
            raise ValueError("pass either length_sampler or max_new_tokens/max_length, not both.")
        outs = rollout(self.model.pretrained_model, self.tokenizer, list(query_tensors), length_sampler, kwargs)
        return [o["response_ids"] for o in outs]

    # ------------------------------------------------------------------ one PPO step
    def step(self, query_tensors: list[torch.Tensor], response_tensors: list[torch.Tensor],
             scores: torch.Tensor | Sequence[float]) -> dict[str, float]:
        """One PPO update on a batch of rollouts: :func:`ppo_update` with this trainer's model,
        reference, optimizer, building blocks, KL coefficient (``kl_ctl.value``) and shuffling
        generator; then the KL controller is updated with this batch's mean KL.

        Args:
            query_tensors: N 1-D ``torch.long`` tensors.
            response_tensors: N 1-D ``torch.long`` tensors (responses only).
            scores: ``(N,)`` reward of each query + response.

        Returns:
            A dict of floats: ``reward_mean``, ``reward_std``, ``kl`` (mean over
            responses of the summed per-token log-ratio to the reference),
            ``kl_coef`` (beta used), ``non_score_reward`` (mean summed KL
            penalty), ``entropy`` (mean per-token, rollout policy),
            ``policy_loss``, ``value_loss``, ``loss`` (means over the gradient
            steps), ``clip_fraction`` (tokens whose ratio was clipped),
            ``value_clip_fraction``, ``approx_kl`` (policy change during the
            update), ``advantage_mean``, ``return_mean``, ``value_mean``,
            ``response_length``, ``time_optimise`` (seconds in ``step``).
        """
        t0 = time.perf_counter()
        stats = ppo_update(self.model, self.ref_model, self.optimizer, self.config, query_tensors, response_tensors,
                           scores, self.pad_token_id, beta=self.kl_ctl.value, generator=self._shuffle,
                           functions=self.functions)
        self.kl_ctl.update(stats["kl"], len(query_tensors))
        stats["time_optimise"] = time.perf_counter() - t0
        self.history.append(stats)
        return stats

    # ------------------------------------------------------------------ the loop
    def train(self, num_steps: int, query_fn: Callable[[], list[torch.Tensor]],
              reward_fn: Callable[[list[str]], torch.Tensor], generation_kwargs: dict[str, Any],
              progress: bool = True, callback: Callable[[int, dict[str, float]], None] | None = None,
              ) -> list[dict[str, float]]:
        """Run ``num_steps`` PPO steps: generate, score, :meth:`step`.

        Args:
            num_steps: number of PPO steps.
            query_fn: returns a fresh batch of queries (1-D ``torch.long``
                tensors), usually ``config.batch_size`` of them.
            reward_fn: texts (query + response, decoded without special tokens)
                -> ``(N,)`` scores (e.g. :func:`rlhf_helpers.rewards.make_reward_fn`).
            generation_kwargs: passed to :meth:`generate` (may hold
                ``length_sampler``); not modified.
            progress: show a ``tqdm.auto`` progress bar with the mean reward and KL.
            callback: called as ``callback(step_index, stats)`` after each step.

        Returns:
            One stats dict per step: those of :meth:`step` plus ``step``,
            ``time_generate``, ``time_score`` and ``time_total`` (seconds).
        """
        from tqdm.auto import tqdm

        _args.integer(num_steps, "num_steps", minimum=0)
        if not isinstance(generation_kwargs, dict):
            raise TypeError(f"generation_kwargs should be a dict, got {type(generation_kwargs).__name__}.")
        history = []
        bar = tqdm(range(num_steps), desc="PPO", disable=not progress)
        for i in bar:
            t0 = time.perf_counter()
            queries = query_fn()
            responses = self.generate(queries, **generation_kwargs)
            t1 = time.perf_counter()
            texts = decoded_texts(self.tokenizer, queries, responses)
            scores = reward_fn(texts)
            if not isinstance(scores, torch.Tensor):
                scores = torch.tensor([float(s) for s in scores])
            t2 = time.perf_counter()
            stats = dict(self.step(queries, responses, scores))
            stats.update(step=i, time_generate=t1 - t0, time_score=t2 - t1, time_total=time.perf_counter() - t0)
            self.last_batch = {"queries": queries, "responses": responses, "texts": texts,
                               "scores": scores.detach().float().cpu()}
            history.append(stats)
            bar.set_postfix(reward=f"{stats['reward_mean']:.2f}", kl=f"{stats['kl']:.2f}")
            if callback is not None:
                callback(i, stats)
        return history
