"""Honest answers to lab4_kl_beta in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: helpers of helpers for the checks, torch.where for 0 log 0, a table of assigned lambdas,
    # a module-level alias of the learner's kl_divergence, an lru_cache'd beta check and an explicit
    # log-sum-exp; locals named like the notebook's globals (forward, reverse, star, curve, beta).
    "a": {
        "kl_divergence": r'''def _rows_off_one(x):
    """True where a row of x does not sum to 1 within 1e-4 (summed in float64)."""
    return (x.double().sum(dim=-1) - 1.0).abs() > 1e-4


def _check_distribution(name, x):
    if bool((x < 0).any()):
        raise ValueError(f"{name} has a negative entry: it is not a probability distribution")
    if bool(_rows_off_one(x).any()):
        raise ValueError(f"a row of {name} does not sum to 1 (tolerance 1e-4)")


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) along the last dimension.

    Args:
        p: probabilities, shape (..., V).
        q: probabilities, shape (..., V).

    Returns:
        Tensor of shape (...), dtype of p: sum_i p_i (log p_i - log q_i), with
        0 log 0 = 0 and inf where p_i > 0 and q_i = 0.

    Raises:
        ValueError: p or q has a negative entry, or a row that does not sum to 1
            within 1e-4.
    """
    _check_distribution("p", p)
    _check_distribution("q", q)
    forward = p * (torch.log(p) - torch.log(q))                # nan where p = 0 = q, +inf where p > 0 = q
    reverse = torch.where(p > 0, forward, torch.zeros_like(forward))
    return reverse.sum(dim=-1)
''',
        "kl_estimators": r'''_ESTIMATORS = {                                    # each a function of log r = log q - log p, x ~ p
    "k1": lambda log_r: -log_r,
    "k2": lambda log_r: log_r.pow(2) / 2,
    "k3": lambda log_r: log_r.exp() - 1 - log_r,
}


def kl_estimators(logp: torch.Tensor, logq: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample estimators of KL(p || q) from samples x ~ p.

    Args:
        logp: log p(x) of each sample, any shape S.
        logq: log q(x) of the same samples, shape S.

    Returns:
        {"k1": logp - logq, "k2": (logp - logq)**2 / 2, "k3": (r - 1) - log r with r = q / p},
        each a tensor of shape S and the dtype of logp.
    """
    log_r = logq - logp
    return {name: estimator(log_r) for name, estimator in _ESTIMATORS.items()}
''',
        "regularized_objective": r'''kl = kl_divergence


def regularized_objective(probs: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor,
                          beta: float) -> torch.Tensor:
    """E_probs[r] - beta * KL(probs || ref_probs), along the last dimension.

    Args:
        probs: the policy pi, shape (..., V).
        ref_probs: the reference policy, shape (..., V).
        rewards: r(y) for each outcome, shape (..., V).
        beta: the KL coefficient, >= 0.

    Returns:
        Tensor of shape (...).
    """
    expected = torch.sum(probs * rewards, dim=-1)
    return expected - beta * kl(probs, ref_probs)
''',
        "optimal_policy": r'''import functools


@functools.lru_cache(maxsize=64)
def _checked_beta(beta):
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return float(beta)


def optimal_policy(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The maximiser of E_pi[r] - beta * KL(pi || ref): pi* proportional to ref_probs * exp(rewards / beta).

    Args:
        ref_probs: the reference policy, shape (..., V).
        rewards: r(y) for each outcome, shape (..., V).
        beta: the KL coefficient, > 0.

    Returns:
        pi*, shape (..., V), dtype of ref_probs, each row summing to 1.

    Raises:
        ValueError: beta <= 0.
    """
    beta = _checked_beta(beta)
    log_weights = ref_probs.double().log() + rewards.double() / beta      # -inf where ref_probs = 0
    star = torch.exp(log_weights - torch.logsumexp(log_weights, dim=-1, keepdim=True))
    return star.to(ref_probs.dtype)
''',
    },
    # b: a class of checks with a class method, recursion over the leading dimensions, p * log(p / q),
    # properties of a small log-ratio class, torch.xlogy and einsum instead of reusing kl_divergence,
    # F.log_softmax(...).exp() with an assigned lambda and an f = f alias.
    "b": {
        "kl_divergence": r'''class _Distributions:
    """The checks a KL's inputs must pass."""

    @staticmethod
    def is_distribution(x):
        return bool((x >= 0).all()) and abs(float(x.double().sum()) - 1.0) <= 1e-4

    @classmethod
    def check(cls, **named):
        for name, x in named.items():
            if not cls.is_distribution(x):
                raise ValueError(f"{name} is not a probability distribution (negative, or a sum off 1 by > 1e-4)")


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) along the last dimension."""
    if p.dim() > 1:                                          # one distribution at a time
        return torch.stack([kl_divergence(p_row, q_row) for p_row, q_row in zip(p, q)])
    _Distributions.check(p=p, q=q)
    terms = torch.where(p == 0, torch.zeros_like(p), p * torch.log(p / q))
    return terms.sum()
''',
        "kl_estimators": r'''class _LogRatio:
    """log r = log q(x) - log p(x) of samples x ~ p, and the three estimators built on it."""

    def __init__(self, logp, logq):
        self.log_r = logq - logp

    @property
    def k1(self):
        return -self.log_r

    @property
    def k2(self):
        return 0.5 * self.log_r * self.log_r

    @property
    def k3(self):
        return self.k1 + torch.expm1(self.log_r)              # (r - 1) - log r


def kl_estimators(logp: torch.Tensor, logq: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample estimators of KL(p || q) from samples x ~ p."""
    est = _LogRatio(logp, logq)
    return {"k1": est.k1, "k2": est.k2, "k3": est.k3}
''',
        "regularized_objective": r'''def regularized_objective(probs: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor,
                          beta: float) -> torch.Tensor:
    """E_probs[r] - beta * KL(probs || ref_probs), along the last dimension."""
    expected = torch.einsum("...v,...v->...", probs, rewards)
    divergence = (torch.xlogy(probs, probs) - torch.xlogy(probs, ref_probs)).sum(-1)   # 0 log 0 = 0
    return expected - beta * divergence
''',
        "optimal_policy": r'''import torch.nn.functional as F

_positive = lambda beta: beta > 0


def optimal_policy(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The maximiser of E_pi[r] - beta * KL(pi || ref): pi* proportional to ref_probs * exp(rewards / beta)."""
    if not _positive(beta):
        raise ValueError("beta must be > 0")
    logits = torch.log(ref_probs.to(torch.float64)) + rewards.to(torch.float64) / beta
    return F.log_softmax(logits, dim=-1).exp().to(ref_probs.dtype)


optimal_policy = optimal_policy
''',
    },
}
