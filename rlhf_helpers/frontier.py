"""Best-of-n sampling, its KL to the reference, and the reward-KL frontier of lab 7.

Best-of-n: sample n completions of a prompt from the reference policy, keep the
one a reward model scores highest. No training; the "policy" is the sampling
procedure. If the reference's completions all have distinct rewards and none
carries noticeable probability on its own, its KL to the reference is

.. math::
    \\mathrm{KL}(\\pi_{\\mathrm{BoN}} \\,\\|\\, \\pi_{\\mathrm{ref}}) = \\log n - \\frac{n-1}{n},

the formula used in most papers (Stiennon et al. 2020; Gao et al. 2023). In
general it is only an upper bound (Beirami et al. 2024): when completions repeat
(short answers, a peaked policy) the true KL is smaller.

This module measures best-of-n on ``M`` reference samples per prompt, treating
them as the reference distribution (each distinct text with its share of the
samples). Drawing n of them with replacement and keeping the best by the
selecting score, the sample of rank i (ascending, among distinct scores) is kept
with probability ``(F_i)^n - (F_{i-1})^n`` (``F`` the share of samples scoring
at most as high). From these probabilities come the expected reward of the
kept sample, under any scorer, and the KL of that choice to the samples.

=================================================  =============================================================
``best_of_n_kl_bound(n)``                           ``log n - (n - 1) / n`` (graded in lab 7)
``best_of_n_probabilities(texts, scores, n)``      ``(M,)`` probability that each of M samples is the one kept
``best_of_n_curve(texts, select, values, ns)``     per n: expected value of the kept sample and its measured KL
``sample_groups(model, tok, queries, m, ...)``      m sampled responses per query, as groups of texts
``score_groups(score_fn, groups)``                 ``(Q, M)`` scores of those groups
=================================================  =============================================================

Nothing here seeds or changes global state at import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlhf_helpers import _args

__all__ = ["best_of_n_kl_bound", "best_of_n_probabilities", "best_of_n_curve", "sample_groups", "score_groups"]


def best_of_n_kl_bound(n: int) -> float:
    """The usual best-of-n KL to the reference, ``log n - (n - 1) / n`` (nats): exact for a continuous
    reward with no repeated completions, an upper bound otherwise.

    Args:
        n: completions sampled per prompt, an int >= 1.

    Returns:
        A Python float (0.0 for n = 1).
    """
    _args.integer(n, "n", minimum=1)
    return math.log(n) - (n - 1) / n


def best_of_n_probabilities(texts: Sequence[str], scores: torch.Tensor, n: int) -> torch.Tensor:
    """Probability that each of M reference samples is the one best-of-n keeps.

    The M samples stand for the reference distribution (a text that appears c
    times has probability c / M); n are drawn with replacement and the one with
    the highest score is kept. Samples with equal scores share their block's
    probability equally.

    Args:
        texts: the M sampled completions of one prompt (only used to check the length).
        scores: ``(M,)`` float, the selecting reward model's score of each.
        n: an int >= 1.

    Returns:
        ``(M,)`` float64 summing to 1.
    """
    s = _args.tensor(scores, "scores", dim=1, floating=True).detach().double().cpu()
    if len(texts) != s.numel() or s.numel() == 0:
        raise ValueError(f"got {len(texts)} texts but {s.numel()} scores.")
    _args.integer(n, "n", minimum=1)
    M = s.numel()
    values, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)  # ascending
    upper = counts.cumsum(0).double() / M
    lower = upper - counts.double() / M
    block = upper ** n - lower ** n  # probability that the kept sample's score is this value
    return block[inverse] / counts[inverse].double()


def _kl_to_samples(texts: Sequence[str], probs: torch.Tensor) -> float:
    """KL(p || uniform share of each distinct text) for probabilities ``probs`` over the samples."""
    mass: dict[str, float] = {}
    share: dict[str, float] = {}
    for t, p in zip(texts, probs.tolist()):
        mass[t] = mass.get(t, 0.0) + p
        share[t] = share.get(t, 0.0) + 1.0 / len(texts)
    return sum(p * math.log(p / share[t]) for t, p in mass.items() if p > 0)


def best_of_n_curve(texts: Sequence[Sequence[str]], select_scores: torch.Tensor, value_scores: dict[str, torch.Tensor],
                    ns: Sequence[int], kl_bound_fn: Callable[[int], float] | None = None) -> list[dict[str, float]]:
    """Best-of-n on Q prompts with M reference samples each, for each n in ``ns``.

    Args:
        texts: Q lists of M completions (one list per prompt).
        select_scores: ``(Q, M)`` scores of the reward model that picks the best.
        value_scores: name -> ``(Q, M)`` scores to report for the kept sample (e.g. ``{"gold": ..., "proxy": ...}``).
        ns: values of n.
        kl_bound_fn: ``n -> bound``, like :func:`best_of_n_kl_bound` (the learner's, in lab 7; default the
            kit's, looked up at call time).

    Returns:
        One dict per n: ``{"n", "kl"`` (mean over prompts of the measured KL to the samples),
        ``"kl_bound"`` (``kl_bound_fn(n)``), and for each name its expected value over prompts``}``.
    """
    bound = best_of_n_kl_bound if kl_bound_fn is None else kl_bound_fn
    Q = len(texts)
    sel = _args.tensor(select_scores, "select_scores", dim=2, floating=True)
    if sel.shape[0] != Q:
        raise ValueError(f"select_scores has {sel.shape[0]} rows for {Q} prompts.")
    out = []
    for n in ns:
        row: dict[str, float] = {"n": int(n), "kl_bound": float(bound(int(n)))}
        kls, sums = [], {name: 0.0 for name in value_scores}
        for q in range(Q):
            p = best_of_n_probabilities(texts[q], sel[q], int(n))
            kls.append(_kl_to_samples(texts[q], p))
            for name, v in value_scores.items():
                sums[name] += float(p @ v[q].detach().double().cpu())
        row["kl"] = sum(kls) / Q
        row.update({name: total / Q for name, total in sums.items()})
        out.append(row)
    return out


@torch.no_grad()
def sample_groups(model: Any, tokenizer: Any, queries: Sequence[torch.Tensor], m: int, length_sampler: Any,
                       generation_kwargs: dict | None = None, seed: int | None = 0) -> list[list[str]]:
    """``m`` responses to each query, sampled from ``model`` (pure sampling by default), as Q groups of
    m texts (query + response, :func:`rlhf_helpers.rewards.rollout_texts`), for :func:`score_groups`.
    (:func:`rlhf_helpers.sampling.sample_completions` samples continuations of prompt strings instead.) Seeds its own sampling when ``seed``
    is given, leaving the caller's random state as it was."""
    from rlhf_helpers.rewards import rollout, rollout_texts

    kwargs = dict(generation_kwargs or {"do_sample": True, "top_k": 0, "top_p": 1.0})
    repeated = [q for q in queries for _ in range(m)]
    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        rolls = rollout(model, tokenizer, repeated, length_sampler, kwargs)
    texts = rollout_texts(rolls)
    return [texts[i * m:(i + 1) * m] for i in range(len(queries))]


def score_groups(score_fn: Callable[[list[str]], Any], groups: Sequence[Sequence[str]]) -> torch.Tensor:
    """``(Q, M)`` float32 scores of Q equal-sized groups of texts, in one call of ``score_fn``."""
    flat = [t for g in groups for t in g]
    scores = torch.as_tensor(score_fn(flat), dtype=torch.float32).reshape(-1)
    return scores.view(len(groups), -1)
