"""Rewards from a sentiment classifier, query/response lengths, and rollouts.

In RLHF a reward model stands in for human feedback: it reads the query plus
the response and returns a score. In this kit (as in the classic
``gpt2-sentiment`` notebook) the reward model is a sentiment classifier used
through ``transformers.pipeline("sentiment-analysis")``.

==============================  ==================================================
``LengthSampler``               uniform integer lengths in ``[min_value, max_value)``
                                (TRL removed its own; the PPO trainer and the labs
                                use this one)
``scores_from_pipe_outputs``    the pipeline's ``pipe_outputs`` -> a reward tensor,
                                selected **by label**
``pipeline_rewards``            texts -> rewards (raw logits or probabilities)
``make_reward_fn``              the same, as a ``reward_fn(texts) -> tensor``
``build_queries``               the first ``n`` tokens of each text, ``n`` drawn per text
``rollout``                     queries -> sampled responses (one dict per query)
``rollout_texts``               query + response texts of rollouts (what is scored)
``decoded_texts``               the same text from query and response token ids
``expected_reward``             the empirical mean reward and its standard error
==============================  ==================================================

Two facts about the pipeline (measured on transformers 5.x) that this module
exists to get right:

* ``pipe(texts, top_k=None)`` returns, for each text, a list of
  ``{"label", "score"}`` dicts **sorted by score**, so ``outputs[i][1]["score"]``
  is the *smaller* score, not the POSITIVE one. Always select by label.
* ``function_to_apply="none"`` returns raw logits (the classic PPO reward);
  the default applies a softmax and returns probabilities.

Nothing here seeds or changes global state; randomness comes from the
``torch.Generator`` you pass (or torch's global generator when you pass none).

Lab 2 grades ``LengthSampler``, ``scores_from_pipe_outputs``, ``build_queries``,
``rollout`` and ``expected_reward``: while it is graded they are stubs in the
sandbox's copy of this module, and so are the two steps of ``rollout`` that
:data:`CARRIES` names. No other helper here holds their logic: ``pipeline_rewards``
and ``make_reward_fn`` call ``scores_from_pipe_outputs`` by name, looked up at call
time, or the function given as ``scores_fn``; ``rollout_texts`` only joins strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlhf_helpers import _args

__all__ = [
    "LengthSampler",
    "REWARD_KINDS",
    "scores_from_pipe_outputs",
    "pipeline_rewards",
    "make_reward_fn",
    "build_queries",
    "rollout",
    "rollout_texts",
    "decoded_texts",
    "expected_reward",
]

CARRIES = {"_check_rollout_args": ["rollout"], "_generate_batch": ["rollout"], "_cut_response": ["rollout"]}
"""Helpers that do part of a graded function's work (lab 2's ``rollout``), stubbed with it while lab 2 is graded."""

REWARD_KINDS: dict[str, str] = {"logit": "none", "probability": "softmax"}
"""Reward kinds and the pipeline's ``function_to_apply`` that gives each."""


# ----------------------------------------------------------------------------- lengths
class LengthSampler:
    """Draw integer lengths uniformly from ``[min_value, max_value)`` (upper bound excluded).

    The same contract as TRL's old ``trl.core.LengthSampler`` (removed from
    TRL): ``LengthSampler(2, 8)()`` returns one of 2, 3, ..., 7, each with
    probability 1/6. Drawing query and response lengths at random makes the
    policy meet (and the reward model score) texts of many lengths.

    Args:
        min_value: smallest length, at least 1.
        max_value: one past the largest length; greater than ``min_value``.
        generator: a CPU ``torch.Generator`` for reproducible draws; ``None``
            uses torch's global generator.

    Raises:
        TypeError: the bounds are not integers, or ``generator`` is not a
            ``torch.Generator``.
        ValueError: ``min_value < 1`` or ``min_value >= max_value``.
    """

    def __init__(self, min_value: int, max_value: int, generator: torch.Generator | None = None):
        _args.integer(min_value, "min_value")
        _args.integer(max_value, "max_value")
        if min_value < 1:
            raise ValueError(f"min_value must be at least 1 (a length of 0 tokens is empty), got {min_value}.")
        if min_value >= max_value:
            raise ValueError(
                f"min_value ({min_value}) must be smaller than max_value ({max_value}): "
                f"lengths are drawn from [min_value, max_value), upper bound excluded."
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator should be a torch.Generator or None, got {type(generator).__name__}.")
        self.min_value = min_value
        self.max_value = max_value
        self.generator = generator

    def __call__(self) -> int:
        """One length, a Python ``int`` in ``[min_value, max_value)``."""
        return int(torch.randint(self.min_value, self.max_value, (1,), generator=self.generator).item())

    def __repr__(self) -> str:
        return f"LengthSampler(min_value={self.min_value}, max_value={self.max_value})"


# ----------------------------------------------------------------------------- pipeline outputs
def scores_from_pipe_outputs(pipe_outputs: list[list[dict]], label: str = "POSITIVE") -> torch.Tensor:
    """The score of ``label`` for each text, from a sentiment pipeline's output.

    Args:
        pipe_outputs: what ``pipe(texts, top_k=None, ...)`` returns: for each of
            the N texts, a list of ``{"label": str, "score": float}`` dicts in
            any order (the pipeline sorts them by score).
        label: the label whose score is the reward, e.g. ``"POSITIVE"``.

    Returns:
        A float32 tensor of shape ``(N,)`` on the CPU.

    Raises:
        TypeError: ``pipe_outputs`` is not a list of lists of dicts (a dict per
            text means the pipeline was called without ``top_k=None`` and
            returned only the top label).
        ValueError: ``label`` is missing from a text's output (the message
            names it and the labels that are there).
    """
    if not isinstance(pipe_outputs, (list, tuple)):
        raise TypeError(f"pipe_outputs should be a list (one entry per text), got {type(pipe_outputs).__name__}.")
    scores: list[float] = []
    for i, per_text in enumerate(pipe_outputs):
        if isinstance(per_text, dict):
            raise TypeError(
                f"pipe_outputs[{i}] is a single dict {per_text!r}: the pipeline returned only the top label. "
                "Call it with top_k=None to get every label's score for each text."
            )
        if not isinstance(per_text, (list, tuple)) or not all(isinstance(d, dict) for d in per_text):
            raise TypeError(f"pipe_outputs[{i}] should be a list of {{'label', 'score'}} dicts, got {per_text!r}.")
        found = [d["score"] for d in per_text if d.get("label") == label]
        if not found:
            present = [d.get("label") for d in per_text]
            raise ValueError(f"label {label!r} is missing from pipe_outputs[{i}] (labels there: {present}).")
        scores.append(float(found[0]))
    return torch.tensor(scores, dtype=torch.float32)


def pipeline_rewards(
    reward_pipe: Any,
    texts: Sequence[str],
    *,
    label: str = "POSITIVE",
    kind: str = "logit",
    batch_size: int = 64,
    truncation: bool = True,
    scores_fn: Callable[[list[list[dict]], str], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Score texts with a sentiment pipeline and return one reward per text.

    Args:
        reward_pipe: a ``pipeline("sentiment-analysis")`` (see
            :func:`rlhf_helpers.models.load_reward_pipeline`).
        texts: N texts (for rollouts, query + response: :func:`rollout_texts`).
        label: the label whose score is the reward.
        kind: ``"logit"`` for the raw logit of ``label`` (``function_to_apply="none"``,
            the classic PPO reward, unbounded), or ``"probability"`` for its
            softmax probability (in ``[0, 1]``, saturates near 0 and 1).
        batch_size: texts per forward pass of the classifier.
        truncation: cut texts longer than the classifier's maximum length
            (IMDb reviews can exceed DistilBERT's 512 tokens).
        scores_fn: ``(pipe_outputs, label) -> (N,) tensor`` that reads the
            pipeline's output (lab 2 passes the learner's own
            ``scores_from_pipe_outputs``); default :func:`scores_from_pipe_outputs`.

    Returns:
        A float32 tensor of shape ``(N,)`` on the CPU.
    """
    if kind not in REWARD_KINDS:
        raise ValueError(f"kind must be one of {sorted(REWARD_KINDS)}, got {kind!r}.")
    if isinstance(texts, str):
        raise TypeError("texts should be a list of strings, got a single string: wrap it in a list.")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts should be a list of strings.")
    if not texts:
        return torch.zeros(0, dtype=torch.float32)
    outputs = reward_pipe(texts, top_k=None, function_to_apply=REWARD_KINDS[kind], batch_size=batch_size,
                          truncation=truncation)
    return (scores_fn or scores_from_pipe_outputs)(outputs, label)


def make_reward_fn(
    reward_pipe: Any, *, label: str = "POSITIVE", kind: str = "logit", batch_size: int = 64,
    scores_fn: Callable[[list[list[dict]], str], torch.Tensor] | None = None,
) -> Callable[[Sequence[str]], torch.Tensor]:
    """A ``reward_fn(texts) -> float32 tensor (N,)`` built on :func:`pipeline_rewards`.

    This is the shape of reward function the kit's PPO trainer takes.
    ``scores_fn`` is passed on to :func:`pipeline_rewards` (default: the kit's
    :func:`scores_from_pipe_outputs`, looked up at each call).
    """
    if kind not in REWARD_KINDS:
        raise ValueError(f"kind must be one of {sorted(REWARD_KINDS)}, got {kind!r}.")

    def reward_fn(texts: Sequence[str]) -> torch.Tensor:
        return pipeline_rewards(reward_pipe, texts, label=label, kind=kind, batch_size=batch_size,
                                scores_fn=scores_fn)

    reward_fn.__doc__ = f"Reward of each text: the {kind} of {label!r} from the sentiment pipeline."
    return reward_fn


# ----------------------------------------------------------------------------- queries and rollouts
def build_queries(texts: list[str], tokenizer: Any, length_sampler: LengthSampler) -> list[torch.Tensor]:
    """The first ``n`` tokens of each text, with ``n = length_sampler()`` drawn once per text.

    A text shorter than ``n`` tokens gives all its tokens (a query never runs
    past its text).

    Args:
        texts: N texts (e.g. movie reviews).
        tokenizer: the policy's tokenizer.
        length_sampler: draws the query length, once per text, in order.

    Returns:
        N one-dimensional ``torch.long`` tensors on the CPU, the i-th of length
        ``min(n_i, len(tokens of texts[i]))``.

    Raises:
        TypeError: ``texts`` is not a list of strings.
        ValueError: a text has no tokens (a query needs at least one).
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts should be a list of strings.")
    queries = []
    for i, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        if len(ids) == 0:
            raise ValueError(f"texts[{i}] is empty: a query needs at least one token.")
        n = length_sampler()
        queries.append(torch.tensor(ids[:n], dtype=torch.long))
    return queries


def _eos_ids(model: Any, tokenizer: Any, generation_kwargs: dict) -> set[int]:
    eos = generation_kwargs.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None))
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in eos} if isinstance(eos, (list, tuple)) else {int(eos)}


def _check_rollout_args(query_tensors: Any, generation_kwargs: Any) -> None:
    """:func:`rollout`'s argument checks: a list of non-empty 1-D long queries, and generation kwargs
    that leave the length to the sampler."""
    if not isinstance(query_tensors, (list, tuple)):
        raise TypeError(f"query_tensors should be a list of 1-D tensors, got {type(query_tensors).__name__}.")
    for i, q in enumerate(query_tensors):
        if not isinstance(q, torch.Tensor) or q.dim() != 1 or q.numel() == 0 or q.dtype != torch.long:
            desc = f"{type(q).__name__}" if not isinstance(q, torch.Tensor) else f"tensor {q.dtype} {tuple(q.shape)}"
            raise ValueError(f"query_tensors[{i}] should be a non-empty 1-D torch.long tensor, got {desc}.")
    if not isinstance(generation_kwargs, dict):
        raise TypeError(f"generation_kwargs should be a dict, got {type(generation_kwargs).__name__}.")
    for key in ("max_new_tokens", "max_length"):
        if key in generation_kwargs:
            raise ValueError(f"generation_kwargs must not set {key!r}: the response length comes from length_sampler.")


def _generate_batch(model: Any, tokenizer: Any, query_tensors: Sequence[torch.Tensor], max_new_tokens: int,
                    generation_kwargs: dict) -> torch.Tensor:
    """The new tokens ``model.generate`` writes after the left-padded queries, ``(N, <= max_new_tokens)`` on
    the CPU, generated in eval mode (the model's mode is restored after)."""
    from rlhf_helpers.sequences import pad_left, pad_token_id

    pad_id = pad_token_id(tokenizer)
    device = next(model.parameters()).device
    input_ids, attention_mask = pad_left(query_tensors, pad_id)  # (N, T), left-padded
    width = input_ids.shape[1]
    kwargs = {"pad_token_id": pad_id, **generation_kwargs, "max_new_tokens": max_new_tokens}
    was_training = model.training
    model.eval()
    try:
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs)
    finally:
        model.train(was_training)
    return out[:, width:].cpu()  # (N, max n): new tokens only


def _cut_response(row: torch.Tensor, n: int, eos: set[int]) -> torch.Tensor:
    """The first ``n`` new tokens of a generated row, cut after the first end-of-sequence token (which
    is kept: ending is an action of the policy), so the padding after it goes."""
    ids = row[:n]
    hits = [j for j, t in enumerate(ids.tolist()) if t in eos]
    if hits:
        ids = ids[: hits[0] + 1]
    return ids


@torch.no_grad()
def rollout(
    model: Any,
    tokenizer: Any,
    query_tensors: list[torch.Tensor],
    length_sampler: LengthSampler,
    generation_kwargs: dict,
) -> list[dict]:
    """Sample one response per query from the policy.

    For each query (in order) a response length ``n`` is drawn from
    ``length_sampler`` and the policy generates at most ``n`` new tokens with
    ``generation_kwargs`` (e.g. ``{"do_sample": True, "top_k": 0, "top_p": 1.0}``:
    pure sampling from the policy, as PPO needs). All queries are generated in
    one left-padded batch on the model's device (``max_new_tokens`` = the
    largest ``n``) and each response is then cut to its own ``n``: the same
    distribution as generating each query alone, many times faster. A response
    stops after the first end-of-sequence token, which it keeps (ending is an
    action of the policy). Generation runs in eval mode (dropout off); the
    model's mode is restored afterwards. ``generation_kwargs`` is not modified.

    Args:
        model: a causal LM (the policy), on any device.
        tokenizer: its tokenizer (``pad_token_id`` must be set).
        query_tensors: N one-dimensional ``torch.long`` tensors of token ids.
        length_sampler: draws each response's maximum length, once per query.
        generation_kwargs: keyword arguments for ``model.generate``; it must not
            set ``max_new_tokens`` or ``max_length`` (the sampler does).

    Returns:
        N dicts with ``"query"`` (text), ``"response"`` (text, special tokens
        skipped), ``"query_ids"`` (the query tensor, on the CPU) and
        ``"response_ids"`` (``torch.long``, shape ``(n_i',)`` with
        ``1 <= n_i' <= n_i``, on the CPU). The response never includes the query.
    """
    _check_rollout_args(query_tensors, generation_kwargs)
    if not query_tensors:
        return []
    lengths = [int(length_sampler()) for _ in query_tensors]
    generated = _generate_batch(model, tokenizer, query_tensors, max(lengths), generation_kwargs)
    eos = _eos_ids(model, tokenizer, generation_kwargs)
    results = []
    for q, n, row in zip(query_tensors, lengths, generated):
        ids = _cut_response(row, n, eos)
        q_cpu = q.detach().cpu()
        results.append({
            "query": tokenizer.decode(q_cpu, skip_special_tokens=True),
            "response": tokenizer.decode(ids, skip_special_tokens=True),
            "query_ids": q_cpu,
            "response_ids": ids.clone(),
        })
    return results


def rollout_texts(rollouts: list[dict]) -> list[str]:
    """``query + response`` for each rollout: the text the reward model reads."""
    return [r["query"] + r["response"] for r in rollouts]


def decoded_texts(tokenizer: Any, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor]) -> list[str]:
    """The text the reward model reads, from token ids: each query and its response decoded with special
    tokens skipped, then joined (what :func:`rollout` decodes and :func:`rollout_texts` joins)."""
    return [tokenizer.decode(q, skip_special_tokens=True) + tokenizer.decode(r, skip_special_tokens=True)
            for q, r in zip(queries, responses)]


# ----------------------------------------------------------------------------- estimates
def expected_reward(rewards: torch.Tensor) -> tuple[float, float]:
    """The empirical expected reward and its standard error.

    With rewards :math:`r_1, \\dots, r_n` of independent rollouts,

    .. math::
        \\hat\\mu = \\frac1n \\sum_i r_i, \\qquad
        s = \\sqrt{\\frac{1}{n-1} \\sum_i (r_i - \\hat\\mu)^2}, \\qquad
        \\mathrm{SE}(\\hat\\mu) = \\frac{s}{\\sqrt n}.

    Args:
        rewards: a 1-D tensor of ``n >= 2`` rewards (any float dtype, any device).

    Returns:
        ``(mean, standard_error)`` as Python floats (computed in float64).

    Raises:
        TypeError: ``rewards`` is not a tensor.
        ValueError: ``rewards`` is not 1-D or has fewer than 2 entries (the
            sample standard deviation needs two).
    """
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(f"rewards should be a torch.Tensor, got {type(rewards).__name__}.")
    if rewards.dim() != 1:
        raise ValueError(f"rewards should be 1-D (one reward per rollout), got shape {tuple(rewards.shape)}.")
    n = rewards.numel()
    if n < 2:
        raise ValueError(f"need at least 2 rewards to estimate a standard error, got {n}.")
    r = rewards.detach().double()
    return float(r.mean()), float(r.std(correction=1)) / math.sqrt(n)
