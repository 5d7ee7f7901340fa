"""Honest answers to lab5_dpo_derivation in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: torch.mul, exp(-softplus) for the logistic, F.cross_entropy(reduction="none") for the token
    # log-probs, softplus(-h) for -log sigma(h) reusing the learner's implied_reward; locals named like
    # the notebook's globals (implied, log_z, labels, losses, chosen_rewards, rejected_rewards, h).
    "a": {
        "implied_reward": r'''def implied_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """The reward a policy implies: beta * (log pi(y|x) - log pi_ref(y|x)), elementwise.

    Args:
        policy_logps: log pi(y|x), a float tensor of any shape, e.g. (B,).
        ref_logps: log pi_ref(y|x), same shape.
        beta: the KL coefficient, > 0.

    Returns:
        A tensor of the same shape and dtype as policy_logps, not detached (gradients flow).
    """
    log_z = policy_logps - ref_logps            # the log-ratio (named like the notebook's log Z on purpose)
    implied = torch.mul(log_z, beta)
    return implied
''',
        "bradley_terry_probability": r'''def bradley_terry_probability(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry probability that the chosen response is preferred: sigma(r_chosen - r_rejected).

    Args:
        reward_chosen: r(x, y_w), a float tensor of any shape.
        reward_rejected: r(x, y_l), same shape.

    Returns:
        Probabilities in [0, 1], elementwise, same shape and dtype; finite for rewards of any size.
    """
    # e^a / (e^a + e^b) = 1 / (1 + e^(b - a)) = exp(-softplus(b - a)), with no exponential to overflow
    return torch.exp(-F.softplus(reward_rejected - reward_chosen))
''',
        "sequence_logprobs": r'''def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probabilities of the masked tokens of each sequence.

    Args:
        logits: (B, T, V) float32 or float64 next-token logits of a causal LM, on any device;
            logits[:, t - 1] predict labels[:, t].
        labels: (B, T) token ids (int64), on the device of logits.
        loss_mask: (B, T) of 0s and 1s in any dtype (int, float or bool): 1 where labels[:, t]
            counts (completion tokens), 0 elsewhere (prompt, padding: anywhere in the row).

    Returns:
        (B,) in the dtype of logits: the sum over t >= 1 with loss_mask[:, t] == 1 of
        log softmax(logits[:, t - 1])[labels[:, t]] (0 for a row with no such token).
        Gradients flow to logits.
    """
    predicted = logits[:, :-1]                                   # (B, T-1, V): position t-1 predicts t
    labels = labels[:, 1:]                                      # (B, T-1)
    # cross-entropy per token is minus the log-probability of the label; classes on dimension 1
    token_logps = -F.cross_entropy(predicted.transpose(1, 2), labels, reduction="none")
    return (token_logps * loss_mask[:, 1:].to(token_logps.dtype)).sum(dim=-1)
''',
        "dpo_loss": r'''def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of each pair, and the implied rewards.

    Args:
        policy_chosen_logps: log pi(y_w|x), (B,), float32 or float64.
        policy_rejected_logps: log pi(y_l|x), (B,).
        ref_chosen_logps: log pi_ref(y_w|x), (B,).
        ref_rejected_logps: log pi_ref(y_l|x), (B,).
        beta: the KL coefficient, > 0.

    Returns:
        (losses, chosen_rewards, rejected_rewards), each (B,) in the inputs' dtype:
        losses = -log sigma(beta [(log pi_w - log pi_ref,w) - (log pi_l - log pi_ref,l)]), computed stably;
        chosen_rewards = beta (log pi_w - log pi_ref,w) and rejected_rewards likewise, both detached.
    """
    chosen_rewards = implied_reward(policy_chosen_logps, ref_chosen_logps, beta)
    rejected_rewards = implied_reward(policy_rejected_logps, ref_rejected_logps, beta)
    h = chosen_rewards - rejected_rewards
    losses = F.softplus(-h)                                     # log(1 + e^-h) = -log sigma(h), stable
    return losses, chosen_rewards.detach(), rejected_rewards.detach()
''',
    },
    # b: another order of operations, a class with a stable piecewise logistic, log-sum-exp and gather
    # with a namedtuple for the shifted views, a custom decorator that detaches, functools.partial and
    # an assigned lambda.
    "b": {
        "implied_reward": r'''def implied_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """The reward a policy implies: beta * (log pi(y|x) - log pi_ref(y|x)), elementwise."""
    return beta * policy_logps - beta * ref_logps
''',
        "bradley_terry_probability": r'''class _Logistic:
    """sigma(x) without overflow: 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below."""

    @staticmethod
    def of(x):
        safe = -x.abs()                                          # e^safe <= 1 on both branches
        return torch.where(x >= 0, 1 / (1 + torch.exp(safe)), torch.exp(safe) / (1 + torch.exp(safe)))


def bradley_terry_probability(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry probability that the chosen response is preferred: sigma(r_chosen - r_rejected)."""
    return _Logistic.of(reward_chosen - reward_rejected)
''',
        "sequence_logprobs": r'''from collections import namedtuple

Shifted = namedtuple("Shifted", "logits labels mask")


def _shift(logits, labels, loss_mask):
    """Logits at t - 1 beside the label and mask at t."""
    return Shifted(logits[:, :-1], labels[:, 1:], loss_mask[:, 1:].bool())


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probabilities of the masked tokens of each sequence."""
    s = _shift(logits, labels, loss_mask)
    picked = s.logits.gather(-1, s.labels.unsqueeze(-1)).squeeze(-1)          # (B, T-1) the label's logit
    logp = picked - torch.logsumexp(s.logits, dim=-1)                       # log-softmax at the label
    return torch.where(s.mask, logp, torch.zeros_like(logp)).sum(-1)
''',
        "dpo_loss": r'''import functools

_nll = lambda margin: -F.logsigmoid(margin)


def _detach_rewards(loss_fn):
    """Decorator: the rewards a loss returns are for logging, so they come back detached."""
    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        losses, chosen, rejected = loss_fn(*args, **kwargs)
        return losses, chosen.detach(), rejected.detach()
    return wrapper


@_detach_rewards
def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of each pair, and the implied rewards."""
    reward = functools.partial(implied_reward, beta=beta)
    chosen = reward(policy_chosen_logps, ref_chosen_logps)
    rejected = reward(policy_rejected_logps, ref_rejected_logps)
    return _nll(chosen - rejected), chosen, rejected
''',
    },
}
