"""Lab 9: rewards a program can check. An answer format, a verifier, supervised fine-tuning to the format, pass@k.

The task (:mod:`rlhf_helpers.arithmetic`): the prompt ``"47+38="`` is answered
``<answer>85</answer>``. A program reads the answer and compares it with the
reference, so the reward needs no reward model and cannot be argued with, only
written carelessly (lab 9, Part E).

=============================================================  ==================================================
``parse_answer(completion)``                                    the integer of the one answer block, else None
``exact_match_reward(completions, answer)``                     1.0 where the parsed answer is the reference
``format_reward(completions)``                                  1.0 where a completion is one answer block alone
``to_sft_example(problem)``                                     ``{"prompt", "completion"}`` for ``SFTTrainer``
``check_completion_only_loss(batch, tokenizer, examples)``      ValueError unless the loss covers each completion + EOS
``pass_at_k(n, c, k)``                                          Chen et al.'s unbiased pass@k estimator
``first_number(text)``                                          the first integer of a text (a loose reading)
``sample_answers(model, tokenizer, prompts, n)``                ``n`` completions per prompt, on a random stream of their own
``mean_reward(model, tokenizer, problems, reward_fn)``          a reward function's mean over sampled completions
``count_correct(model, tokenizer, problems, reward_fn, n)``     per problem, how many of ``n`` samples it accepts
``pass_at_k_curve(counts, n, ks, estimator)``                   mean pass@k over problems, for each k
=============================================================  ==================================================

The first six are the kit's answers to lab 9's graded exercises (the grading
sandbox hides them while lab 9 is graded); the helpers below them take the
reward function or estimator they need as an argument, so the lab passes the
learner's. Reward functions have the form TRL's ``GRPOTrainer`` calls:
``f(completions, answer=..., **kwargs) -> list[float]``, one float per completion.

Nothing here seeds or changes global state at import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from rlhf_helpers import _args
from rlhf_helpers.sampling import sample_completions

__all__ = ["ANSWER_OPEN", "ANSWER_CLOSE", "parse_answer", "exact_match_reward", "format_reward", "to_sft_example",
           "check_completion_only_loss", "pass_at_k", "first_number", "sample_answers", "mean_reward",
           "count_correct", "pass_at_k_curve"]

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_INTEGER = re.compile(r"-?[0-9]+")


# ----------------------------------------------------------------------------- the verifier (graded in lab 9)
def parse_answer(completion: str) -> int | None:
    """The integer in a completion's one answer block, or None.

    A completion answers when it holds exactly one ``<answer>`` and exactly one ``</answer>``,
    in that order. Between them, once surrounding spaces are stripped (``str.strip``), must be an
    integer in digits, optionally after a ``-`` (leading zeros are allowed: ``"085"`` is 85).
    Text before or after the block does not matter here.

    Returns:
        The integer, or None: no block, more than one tag of a kind, tags in the wrong order, or
        anything else between them (an empty block, ``"8 5"``, ``"85.0"``, ``"+85"``, ``"eighty"``).
    """
    if completion.count(ANSWER_OPEN) != 1 or completion.count(ANSWER_CLOSE) != 1:
        return None
    start, end = completion.index(ANSWER_OPEN) + len(ANSWER_OPEN), completion.index(ANSWER_CLOSE)
    if end < start:
        return None
    content = completion[start:end].strip()
    return int(content) if _INTEGER.fullmatch(content) else None


def exact_match_reward(completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
    """1.0 for each completion whose parsed answer (:func:`parse_answer`) equals its reference, else 0.0.

    Args:
        completions: the completions (text after the prompt).
        answer: the reference of each, an integer written as a string (the dataset's ``answer``
            column, which ``GRPOTrainer`` passes by name).
        **kwargs: whatever else the trainer passes (``prompts``, ``completion_ids``, ...), unused.
    """
    return [1.0 if parse_answer(c) == int(a) else 0.0 for c, a in zip(completions, answer)]


def format_reward(completions: list[str], **kwargs: Any) -> list[float]:
    """1.0 for each completion that is one answer block and nothing else, else 0.0.

    The block is ``<answer>``, an integer as :func:`parse_answer` reads it, ``</answer>``; only
    spaces (``str.strip``) may come before or after it.
    """
    out = []
    for c in completions:
        text = c.strip()
        ok = text.startswith(ANSWER_OPEN) and text.endswith(ANSWER_CLOSE) and parse_answer(text) is not None
        out.append(1.0 if ok else 0.0)
    return out


# ----------------------------------------------------------------------------- supervised fine-tuning (graded in lab 9)
def to_sft_example(problem: dict) -> dict:
    """A problem ``{"prompt": "47+38=", "answer": "85", ...}`` as ``SFTTrainer``'s prompt-completion
    example ``{"prompt": "47+38=", "completion": "<answer>85</answer>"}``: the prompt unchanged, the
    answer in its block, no EOS (the trainer appends it), no other keys."""
    return {"prompt": problem["prompt"], "completion": f"{ANSWER_OPEN}{problem['answer']}{ANSWER_CLOSE}"}


def check_completion_only_loss(batch: dict, tokenizer: Any, examples: list[dict]) -> None:
    """Raise ``ValueError`` unless, in each row of a collated batch, the loss covers exactly that row's
    completion and the end-of-text token after it.

    Args:
        batch: ``input_ids``, ``attention_mask`` and ``labels``, each ``(B, L)`` ``torch.long``, as
            ``SFTTrainer``'s data collator returns them; a label of -100 takes no loss.
        tokenizer: the tokenizer that made the batch.
        examples: the batch's ``B`` examples in order, each with ``prompt`` and ``completion`` text.

    Raises:
        ValueError: naming the first row where a counted label is not its input id, or where the
            counted tokens, decoded, are not the completion followed by ``tokenizer.eos_token``.
    """
    ids, labels = batch["input_ids"], batch["labels"]
    if len(examples) != ids.shape[0]:
        raise ValueError(f"the batch has {ids.shape[0]} rows but {len(examples)} examples were given.")
    for row, example in enumerate(examples):
        counted = labels[row] != -100
        if not torch.equal(labels[row][counted], ids[row][counted]):
            raise ValueError(f"row {row}: a counted label differs from its input id (labels shifted or edited?).")
        trained = tokenizer.decode(ids[row][counted].tolist())
        wanted = example["completion"] + tokenizer.eos_token
        if trained != wanted:
            raise ValueError(f"row {row}: the loss covers {trained!r}, not the completion and EOS {wanted!r}.")


# ----------------------------------------------------------------------------- pass@k (graded in lab 9)
def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al. (2021)'s unbiased estimate of pass@k from ``n`` samples of which ``c`` are correct:
    ``1 - C(n - c, k) / C(n, k)``, the chance that ``k`` of the samples drawn without replacement hold
    at least one correct one.

    Args:
        n: samples drawn, >= 1.  c: correct among them, 0 <= c <= n.  k: 1 <= k <= n.

    Returns:
        A Python float in [0, 1].

    Raises:
        ValueError: ``c`` or ``k`` out of range.
    """
    for value, name in ((n, "n"), (c, "c"), (k, "k")):
        _args.integer(value, name, minimum=0)
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}.")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


# ----------------------------------------------------------------------------- reading and sampling
def first_number(text: str) -> int | None:
    """The first integer written in ``text`` (digits, optionally after ``-``), or None: how the base
    model's loose answers (``" 85"``, ``"? answer: 85"``) are read before it has learnt a format."""
    match = _INTEGER.search(text)
    return int(match.group()) if match else None


@torch.no_grad()
def sample_answers(model: Any, tokenizer: Any, prompts: Sequence[str], n: int = 1, *, greedy: bool = False,
                   max_new_tokens: int = 24, seed: int = 0, batch_size: int = 512,
                   desc: str | None = None) -> list[list[str]]:
    """``n`` completions of each prompt (text after it, special tokens dropped), by
    :func:`rlhf_helpers.sampling.sample_completions`: pure sampling at temperature 1, or greedy decoding.

    The draws come from their own random stream, seeded with ``seed``, so an evaluation gives the same
    samples wherever it runs and leaves the caller's random state as it was. The model runs in eval mode
    (restored after).
    """
    _args.integer(n, "n", minimum=1)
    prompts = _args.texts(prompts, "prompts")
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed)
            return sample_completions(model.eval(), tokenizer, prompts, n, max_new_tokens, batch_size=batch_size,
                                      desc=desc, greedy=greedy)
    finally:
        model.train(was_training)


def _scores(problems: Any, samples: list[list[str]], reward_fn: Callable[..., list[float]]) -> list[list[float]]:
    answers = list(problems["answer"])
    return [list(reward_fn(group, answer=[a] * len(group))) for group, a in zip(samples, answers)]


def mean_reward(model: Any, tokenizer: Any, problems: Any, reward_fn: Callable[..., list[float]], n: int = 1, *,
                greedy: bool = False, seed: int = 0, max_new_tokens: int = 24) -> float:
    """``reward_fn``'s mean over ``n`` completions of each problem (``problems``: a ``datasets.Dataset``
    or a dict with ``prompt`` and ``answer`` columns). With :func:`exact_match_reward` it is the accuracy
    (pass@1 when sampling), with :func:`format_reward` the share of well-formed answers."""
    samples = sample_answers(model, tokenizer, list(problems["prompt"]), n, greedy=greedy, seed=seed,
                             max_new_tokens=max_new_tokens)
    scores = [s for group in _scores(problems, samples, reward_fn) for s in group]
    return sum(scores) / len(scores)


def count_correct(model: Any, tokenizer: Any, problems: Any, reward_fn: Callable[..., list[float]], n: int, *,
                  seed: int = 0, max_new_tokens: int = 24, desc: str | None = None) -> list[int]:
    """For each problem, how many of ``n`` sampled completions ``reward_fn`` gives 1.0 (the ``c`` of pass@k)."""
    samples = sample_answers(model, tokenizer, list(problems["prompt"]), n, seed=seed, max_new_tokens=max_new_tokens,
                             desc=desc)
    return [sum(1 for s in group if s == 1.0) for group in _scores(problems, samples, reward_fn)]


def pass_at_k_curve(counts: Sequence[int], n: int, ks: Sequence[int],
                    estimator: Callable[[int, int, int], float] | None = None) -> list[float]:
    """The mean over problems of ``estimator(n, c, k)`` for each ``k`` in ``ks`` (``counts``: the ``c`` of
    each problem, from :func:`count_correct`); ``estimator`` defaults to the kit's :func:`pass_at_k`."""
    fn = estimator if estimator is not None else globals()["pass_at_k"]
    return [sum(fn(n, int(c), int(k)) for c in counts) / len(counts) for k in ks]
