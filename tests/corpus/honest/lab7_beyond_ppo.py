"""Honest answers to lab7_beyond_ppo in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: softplus(r_l - r_w) for -log sigma, torch.gt with integer division, k / (k - 1) times the
    # centred reward, a table of assigned lambdas for the scalings, another order of operations under
    # functools.lru_cache; locals named like the notebook's globals (batch, trl_loss, chosen_scores,
    # rejected_scores, agree, half, K, last_rewards).
    "a": {
        "pairwise_loss": r'''import torch.nn.functional as F


def pairwise_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss of a batch of pairs: the mean of -log sigmoid(r_chosen - r_rejected).

    Args:
        rewards_chosen: (B,) float, the reward model's score of each chosen (preferred) text.
        rewards_rejected: (B,) float, the score of the rejected text of the same pair.

    Returns:
        A 0-dim tensor of the inputs' dtype, differentiable with respect to both inputs.
    """
    chosen_scores, rejected_scores = rewards_chosen, rewards_rejected
    batch = F.softplus(rejected_scores - chosen_scores)         # log(1 + e^(r_l - r_w)) = -log sigma(r_w - r_l)
    trl_loss = batch.mean()
    return trl_loss
''',
        "pairwise_accuracy": r'''def pairwise_accuracy(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen text scores strictly higher than the rejected one (a tie is a miss).

    Args:
        rewards_chosen, rewards_rejected: (B,) float tensors of one shape.

    Returns:
        A Python float in [0, 1].
    """
    agree = int(torch.gt(rewards_chosen, rewards_rejected).sum())
    half = rewards_chosen.numel()
    return agree / half
''',
        "rloo_advantages": r'''def rloo_advantages(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """RLOO's advantages: each reward minus the mean reward of the other completions of its prompt.

    Args:
        rewards: (N,) float, N = P * num_generations; the num_generations completions of a prompt are consecutive.
        num_generations: k >= 2, completions per prompt.

    Returns:
        (N,) of the rewards' dtype: r_i - (sum of its group - r_i) / (k - 1).
    """
    K = num_generations
    last_rewards = rewards.unflatten(0, (-1, K))                    # (P, k)
    # r_i - (S - r_i) / (k - 1) = (k r_i - S) / (k - 1) = k / (k - 1) * (r_i - mean)
    centred = last_rewards - last_rewards.mean(dim=1, keepdim=True)
    return (centred * (K / (K - 1))).flatten()
''',
        "grpo_advantages": r'''_SCALES = {
    "group": lambda grouped, flat: grouped.std(dim=1, keepdim=True) + 1e-4,
    "batch": lambda grouped, flat: flat.std() + 1e-4,
    "none": lambda grouped, flat: 1.0,
}


def grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> torch.Tensor:
    """GRPO's advantages: each reward minus its group's mean, divided by a standard deviation + 1e-4.

    Args:
        rewards: (N,) float, N = P * num_generations; the completions of a prompt are consecutive.
        num_generations: k >= 2, completions per prompt.
        scale_rewards: "group" (divide by the group's unbiased std + 1e-4), "batch" (by the std of all
            N rewards + 1e-4) or "none" (no division).

    Returns:
        (N,) of the rewards' dtype.
    """
    grouped = rewards.reshape(-1, num_generations)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)) / _SCALES[scale_rewards](grouped, rewards)
    return advantages.reshape(rewards.shape)
''',
        "best_of_n_kl_bound": r'''import functools


@functools.lru_cache(maxsize=None)
def best_of_n_kl_bound(n: int) -> float:
    """The usual best-of-n KL to the reference, log(n) - (n - 1) / n, in nats.

    Args:
        n: completions sampled per prompt, an int >= 1.

    Returns:
        A Python float (0.0 for n = 1).
    """
    return math.log(n) - 1.0 + 1.0 / n
''',
    },
    # b: a torch.nn.Module loss, a Python loop for the accuracy, a leave-one-out mask, functools.partial
    # of torch.std with an f = g alias, and log1p through an assigned lambda.
    "b": {
        "pairwise_loss": r'''class BradleyTerryLoss(torch.nn.Module):
    """-log sigmoid(r_w - r_l), averaged over the pairs."""

    def forward(self, chosen, rejected):
        return -torch.nn.functional.logsigmoid(chosen - rejected).mean()


def pairwise_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss of a batch of pairs: the mean of -log sigmoid(r_chosen - r_rejected)."""
    return BradleyTerryLoss()(rewards_chosen, rewards_rejected)
''',
        "pairwise_accuracy": r'''def pairwise_accuracy(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen text scores strictly higher than the rejected one (a tie is a miss)."""
    hits = 0
    for chosen, rejected in zip(rewards_chosen.tolist(), rewards_rejected.tolist()):
        if chosen > rejected:
            hits += 1
    return hits / len(rewards_chosen)
''',
        "rloo_advantages": r'''def rloo_advantages(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """RLOO's advantages: each reward minus the mean reward of the other completions of its prompt."""
    k = num_generations
    grouped = rewards.view(-1, k)                                           # (P, k)
    others = ~torch.eye(k, dtype=torch.bool, device=rewards.device)          # row i: every j != i
    baseline = (grouped.unsqueeze(1) * others).sum(dim=-1) / (k - 1)       # (P, k)
    return (grouped - baseline).reshape(-1)
''',
        "grpo_advantages": r'''import functools

group_std = functools.partial(torch.std, dim=1, keepdim=True)
spread = group_std


def grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> torch.Tensor:
    """GRPO's advantages: each reward minus its group's mean, divided by a standard deviation + 1e-4."""
    grouped = rewards.view(-1, num_generations)
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale_rewards == "group":
        centred = centred / (spread(grouped) + 1e-4)
    elif scale_rewards == "batch":
        centred = centred / (torch.std(rewards) + 1e-4)
    elif scale_rewards != "none":
        raise ValueError(f"scale_rewards should be 'group', 'batch' or 'none', got {scale_rewards!r}")
    return centred.view(-1)
''',
        "best_of_n_kl_bound": r'''_log = lambda n: math.log1p(n - 1)


def best_of_n_kl_bound(n: int) -> float:
    """The usual best-of-n KL to the reference, log(n) - (n - 1) / n, in nats."""
    return float(_log(n) - (n - 1) / n)
''',
    },
    # c (finding): pairwise_loss through a private helper _loss; the hidden part of test_pairwise_loss
    # assigns `_loss, _gc, _gr = observe(...)` in the learner's namespace, so from its second case on the
    # helper is a tensor. The visible test passes.
    "c": {
        "pairwise_loss": r'''def _loss(margins):
    """-log sigmoid of each margin r_w - r_l, averaged."""
    return -torch.nn.functional.logsigmoid(margins).mean()


def pairwise_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss of a batch of pairs: the mean of -log sigmoid(r_chosen - r_rejected)."""
    return _loss(rewards_chosen - rewards_rejected)
''',
    },
}
