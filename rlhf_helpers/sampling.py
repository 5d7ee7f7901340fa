"""From logits to text: the kit's reference sampling and decoding code (lab 1).

A causal language model gives, at every step, a vector of logits
:math:`z \\in \\mathbb{R}^{V}` over the vocabulary. Decoding turns them into the
next token:

1. *processors* change the logits: the repetition penalty, a ban on EOS until
   ``min_new_tokens`` are written, a :class:`TokenBiasProcessor`;
2. when sampling, *warpers* reshape the distribution: temperature
   :math:`p_i = \\mathrm{softmax}(z / T)_i`, then top-k, then top-p (nucleus);
3. greedy decoding takes :math:`\\arg\\max_i z_i`; sampling draws from
   :math:`\\mathrm{softmax}` of the warped logits.

This is the order ``transformers``' ``generate()`` uses, and the functions here
are thin wrappers around its own logits processors
(``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper``,
``RepetitionPenaltyLogitsProcessor``, ``MinNewTokensLengthLogitsProcessor``), so
they serve as the reference the lab's hidden tests and later labs rely on.

Shapes: ``logits`` is ``(V,)`` or ``(B, V)``; ``input_ids`` is ``(T,)`` or ``(B, T)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from rlhf_helpers import _args
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

__all__ = [
    "softmax_with_temperature",
    "top_k_filter",
    "top_p_filter",
    "apply_repetition_penalty",
    "TokenBiasProcessor",
    "build_logits_processors",
    "generate_ids",
    "generate_text",
    "next_token_distribution",
    "NextTokenDistribution",
    "sequence_logprob",
    "beam_search",
    "encode_prompt",
    "sample_completions",
]


GREEDY_HINT = "For greedy decoding use do_sample=False (temperature -> 0 is its limit)."

CARRIES = {"generate_ids": ["generate_text"], "sequence_logprob": ["sequence_logprobs"]}
"""Helpers that do a graded function's work under another name: the grader hides them with it."""


# ----------------------------------------------------------------------------- input checks
def _as_2d(logits: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(V,) -> (1, V)``; the flag says whether to squeeze back."""
    return (logits.unsqueeze(0), True) if logits.dim() == 1 else (logits, False)


# ----------------------------------------------------------------------------- the graded functions' references
def softmax_with_temperature(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Next-token probabilities :math:`p_i = e^{z_i/T} / \\sum_j e^{z_j/T}` over the last dimension.

    Args:
        logits: ``(V,)`` or ``(B, V)`` float tensor; ``-inf`` entries get probability 0.
        temperature: :math:`T > 0`. ``T < 1`` sharpens, ``T > 1`` flattens.

    Returns:
        Probabilities, same shape and dtype as ``logits``; each row sums to 1.

    Raises:
        ValueError: ``temperature <= 0``.
    """
    _args.tensor(logits, "logits", dim=(1, 2), floating=True)
    t = _args.positive_number(temperature, "temperature", hint=GREEDY_HINT)
    x, squeeze = _as_2d(logits)
    probs = torch.softmax(TemperatureLogitsWarper(t)(None, x), dim=-1)
    return probs.squeeze(0) if squeeze else probs


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to ``-inf``.

    Ties with the k-th largest value are all kept (``TopKLogitsWarper``'s rule), so
    a row can keep more than ``k`` tokens. ``k == 0`` or ``k >= V`` keeps everything.

    Args:
        logits: ``(V,)`` or ``(B, V)``.
        k: number of tokens to keep, ``>= 0``.

    Returns:
        A new tensor, same shape and dtype.
    """
    _args.tensor(logits, "logits", dim=(1, 2), floating=True)
    _args.integer(k, "k", minimum=0, hint="(0 keeps all tokens)")
    if k == 0 or k >= logits.shape[-1]:
        return logits.clone()
    x, squeeze = _as_2d(logits)
    out = TopKLogitsWarper(top_k=k, min_tokens_to_keep=1)(None, x)
    return out.squeeze(0) if squeeze else out


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probabilities sum to ``>= p``.

    With the probabilities sorted in ascending order, a token is dropped when the
    cumulative sum up to and including it is :math:`\\le 1 - p`; the most probable
    token is always kept (``TopPLogitsWarper(p, min_tokens_to_keep=1)``).

    Args:
        logits: ``(V,)`` or ``(B, V)``.
        p: in ``[0, 1]``; ``p = 1`` keeps every token with non-zero probability.

    Returns:
        A new tensor, same shape and dtype, dropped tokens at ``-inf``.
    """
    _args.tensor(logits, "logits", dim=(1, 2), floating=True)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a number in [0, 1], got {p!r}")
    x, squeeze = _as_2d(logits)
    out = TopPLogitsWarper(top_p=float(p), min_tokens_to_keep=1)(None, x)
    return out.squeeze(0) if squeeze else out


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Discourage tokens that already occur in ``input_ids`` (CTRL, Keskar et al. 2019).

    For every token id present in the row's ``input_ids`` (once, however often it
    occurs): :math:`z_i \\leftarrow z_i / \\theta` if :math:`z_i > 0`, else
    :math:`z_i \\cdot \\theta` (``RepetitionPenaltyLogitsProcessor``). ``penalty``
    :math:`\\theta > 1` discourages repeats, ``< 1`` encourages them, ``1`` does nothing.

    Args:
        logits: ``(V,)`` or ``(B, V)``.
        input_ids: long tensor of the tokens so far: ``(T,)`` with ``(V,)`` logits, or
            ``(B, T)`` with ``(B, V)`` logits, row ``b`` penalising row ``b``. Any other
            pairing (one logits vector with ids of B > 1 rows) is a ``ValueError``.
        penalty: :math:`\\theta > 0`.

    Returns:
        A new tensor, same shape and dtype as ``logits``.
    """
    _args.tensor(logits, "logits", dim=(1, 2), floating=True)
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.long, torch.int32, torch.int64):
        raise TypeError("input_ids should be an integer torch.Tensor of shape (T,) or (B, T)")
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not penalty > 0:
        raise ValueError(f"penalty must be a positive number, got {penalty!r}")
    x, squeeze = _as_2d(logits)
    ids = input_ids.unsqueeze(0) if input_ids.dim() == 1 else input_ids
    if ids.shape[0] != x.shape[0]:
        raise ValueError(f"input_ids has {ids.shape[0]} rows but logits has {x.shape[0]}")
    out = RepetitionPenaltyLogitsProcessor(float(penalty))(ids.long(), x)
    return out.squeeze(0) if squeeze else out


class TokenBiasProcessor(LogitsProcessor):
    """Add a fixed bias to chosen tokens' logits at chosen generation steps.

    The step is the number of tokens generated so far,
    ``input_ids.shape[-1] - prompt_length`` (0 for the first new token). A large
    finite bias (``100.0``) forces a token, ``-inf`` bans it, a few units nudge it.
    ``+inf`` does not force: the softmax of a row holding ``+inf`` is NaN, so sampling
    fails (greedy would cope). Works inside
    ``model.generate(logits_processor=LogitsProcessorList([...]))``.

    Args:
        token_bias: ``{token_id: bias}``.
        steps: the steps at which to add the bias; ``None`` means every step.
        prompt_length: the (padded) prompt length, ``input_ids.shape[-1]`` of the prompt.
    """

    def __init__(self, token_bias: dict[int, float], steps: Iterable[int] | None = None, prompt_length: int = 0):
        if not isinstance(token_bias, dict) or not all(isinstance(t, int) and t >= 0 for t in token_bias):
            raise TypeError("token_bias should be a dict {token_id (int >= 0): bias (float)}")
        self.token_bias = {int(t): float(b) for t, b in token_bias.items()}
        self.steps = None if steps is None else {int(s) for s in steps}
        self.prompt_length = _args.integer(prompt_length, "prompt_length", minimum=0)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores``: ``(B, V)`` logits for the next token; returns a new ``(B, V)`` tensor."""
        step = input_ids.shape[-1] - self.prompt_length
        if (self.steps is not None and step not in self.steps) or not self.token_bias:
            return scores
        ids = torch.tensor(list(self.token_bias), device=scores.device)
        bias = torch.tensor(list(self.token_bias.values()), dtype=scores.dtype, device=scores.device)
        out = scores.clone()
        out[..., ids] += bias
        return out


# ----------------------------------------------------------------------------- decoding
def build_logits_processors(
    prompt_length: int,
    eos_token_id: int | None,
    min_new_tokens: int = 0,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    extra: Iterable[LogitsProcessor] = (),
) -> LogitsProcessorList:
    """The processors ``generate()`` would build for these settings, in its order.

    Repetition penalty, min-new-tokens (EOS banned until reached), ``extra``
    processors, then, only when sampling, temperature, top-k and top-p.
    """
    procs = LogitsProcessorList()
    if repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(float(repetition_penalty)))
    if min_new_tokens > 0 and eos_token_id is not None:
        procs.append(MinNewTokensLengthLogitsProcessor(prompt_length, int(min_new_tokens), eos_token_id))
    procs.extend(extra)
    if do_sample:
        t = _args.positive_number(temperature, "temperature", hint=GREEDY_HINT)
        if t != 1.0:
            procs.append(TemperatureLogitsWarper(t))
        if top_k:
            procs.append(TopKLogitsWarper(top_k=int(top_k), min_tokens_to_keep=1))
        if top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=float(top_p), min_tokens_to_keep=1))
    return procs


def encode_prompt(model, tokenizer, prompt: str) -> torch.Tensor:
    """``(1, T)`` ids of ``prompt`` on the model's device; an empty prompt becomes the BOS token."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt should be a str, got {type(prompt).__name__}")
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    if ids.shape[-1] == 0:  # an empty prompt: start from the BOS token, as GPT-2 does
        ids = torch.tensor([[tokenizer.bos_token_id]])
    return ids.to(model.device)


@torch.no_grad()
def generate_ids(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int = 20,
    min_new_tokens: int = 0,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
    logits_processor: Iterable[LogitsProcessor] = (),
) -> torch.Tensor:
    """A plain decoding loop with a KV cache, one prompt at a time.

    At each step: logits of the last position -> processors (see
    :func:`build_logits_processors`) -> ``argmax`` (greedy) or
    ``torch.multinomial(softmax(.), 1, generator=generator)``; stops after
    ``max_new_tokens`` or right after EOS. With ``do_sample=False`` the result
    equals ``model.generate(..., do_sample=False)`` with the same settings.

    Args:
        input_ids: ``(1, T)`` prompt ids.

    Returns:
        ``(N,)`` the new token ids (EOS included when it was generated), ``N <= max_new_tokens``.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids should have shape (1, T), got {tuple(input_ids.shape)}")
    if eos_token_id is None:
        eos_token_id = model.generation_config.eos_token_id
        if isinstance(eos_token_id, list):
            eos_token_id = eos_token_id[0]
    prompt_length = input_ids.shape[-1]
    procs = build_logits_processors(prompt_length, eos_token_id, min_new_tokens, do_sample, temperature,
                                    top_k, top_p, repetition_penalty, logits_processor)
    ids, cache, step_input = input_ids, None, input_ids
    for _ in range(max_new_tokens):
        out = model(input_ids=step_input, cache=cache, use_cache=True)  # only the new token after step 1
        cache = out.cache
        scores = procs(ids, out.logits[:, -1, :].float())  # (1, V)
        if do_sample:
            next_id = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)  # (1, 1)
        else:
            next_id = scores.argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, next_id], dim=-1)
        step_input = next_id
        if eos_token_id is not None and next_id.item() == eos_token_id:
            break
    return ids[0, prompt_length:]


def generate_text(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 20,
    min_new_tokens: int = 0,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
) -> str:
    """The new text :func:`generate_ids` writes after ``prompt`` (special tokens removed)."""
    ids = encode_prompt(model, tokenizer, prompt)
    new = generate_ids(model, ids, max_new_tokens, min_new_tokens, do_sample, temperature, top_k, top_p,
                       repetition_penalty, generator, tokenizer.eos_token_id)
    return tokenizer.decode(new, skip_special_tokens=True)


# ----------------------------------------------------------------------------- inspection
@dataclass
class NextTokenDistribution:
    """The most probable next tokens after processing (what the widget plots)."""

    tokens: list[str] = field(metadata={"help": "decoded tokens, most probable first"})
    token_ids: list[int] = field(metadata={"help": "their ids"})
    probs: list[float] = field(metadata={"help": "their probabilities after processing"})
    kept: int = field(metadata={"help": "how many tokens have non-zero probability after processing"})


_LATER_STEP_SETTINGS = {"num_beams", "max_new_tokens", "seed", "generator"}


@torch.no_grad()
def next_token_distribution(model, tokenizer, prompt: str, top_n: int = 10, min_new_tokens: int = 0,
                            do_sample: bool = True, temperature: float = 1.0, top_k: int = 0,
                            top_p: float = 1.0, repetition_penalty: float = 1.0,
                            **later_steps: Any) -> NextTokenDistribution:
    """The distribution of the first new token after ``prompt``, processed as generation would.

    With ``do_sample=True`` it is :math:`\\mathrm{softmax}` of the processed and warped
    logits (what sampling draws from); with ``do_sample=False`` the warpers do not
    apply and it is the model's distribution after the repetition penalty and the
    EOS ban (greedy takes its first entry). The settings that do not change the
    first step's distribution (``num_beams``, ``max_new_tokens``, ``seed``,
    ``generator``) are accepted and ignored, so a full parameter dict can be
    passed; any other keyword is a ``TypeError``.

    Returns:
        :class:`NextTokenDistribution` with the ``top_n`` most probable tokens.
    """
    unknown = set(later_steps) - _LATER_STEP_SETTINGS
    if unknown:
        raise TypeError(f"next_token_distribution() got unknown setting(s) {sorted(unknown)}")
    ids = encode_prompt(model, tokenizer, prompt)
    procs = build_logits_processors(ids.shape[-1], tokenizer.eos_token_id, min_new_tokens, do_sample,
                                    temperature, top_k, top_p, repetition_penalty)
    logits = model(input_ids=ids).logits[:, -1, :].float()
    probs = torch.softmax(procs(ids, logits), dim=-1)[0]  # (V,)
    kept = int((probs > 0).sum())
    top = torch.topk(probs, min(top_n, kept))  # tokens cut by the filters are not listed
    token_ids = top.indices.tolist()
    return NextTokenDistribution(
        tokens=[tokenizer.decode([i]) for i in token_ids],
        token_ids=token_ids,
        probs=top.values.tolist(),
        kept=kept,
    )


@torch.no_grad()
def sequence_logprob(model, prompt_ids: torch.Tensor, new_ids: torch.Tensor) -> float:
    """Total log-probability :math:`\\sum_t \\log \\pi(y_t \\mid x, y_{<t})` of ``new_ids`` after ``prompt_ids``.

    Args:
        prompt_ids: ``(T,)`` or ``(1, T)``.
        new_ids: ``(N,)`` or ``(1, N)`` continuation ids (N >= 1).
    """
    p = prompt_ids.reshape(1, -1)
    n = new_ids.reshape(1, -1).to(p.device)
    if n.shape[-1] == 0:
        return 0.0
    ids = torch.cat([p, n], dim=-1)
    logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1, :].float(), dim=-1)  # (1, T+N-1, V)
    token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)[:, p.shape[-1] - 1 :]  # (1, N)
    return float(token_logp.sum())


@torch.no_grad()
def beam_search(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int,
                eos_token_id: int | None = None) -> tuple[torch.Tensor, float]:
    """Beam search for the most probable response of exactly ``max_new_tokens`` tokens.

    Keeps the ``num_beams`` partial responses with the highest total log-probability
    :math:`\sum_t \log \pi(y_t \mid x, y_{<t})` (``log_softmax`` of the raw last-position
    logits, over the whole vocabulary); at each step every beam is extended by every token
    and the best ``num_beams`` of all those candidates are kept. ``eos_token_id`` (if given)
    is never chosen: its log-probability is set to ``-inf`` after the ``log_softmax``, as
    ``generate(min_new_tokens=max_new_tokens)`` does, so all responses have the same length.
    The result equals ``model.generate(input_ids, num_beams=num_beams, do_sample=False,
    max_new_tokens=n, min_new_tokens=n)``.

    Args:
        input_ids: ``(1, T)`` long tensor of prompt ids, on the model's device.
        num_beams: ``>= 1`` (1 is greedy decoding).
        max_new_tokens: ``>= 1``.

    Returns:
        ``(new_ids, score)``: the best response's ``(max_new_tokens,)`` long tensor (on the
        device of ``input_ids``) and its total log-probability as a Python float.
    """
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids should have shape (1, T), got {tuple(input_ids.shape)}")
    prompt_length = input_ids.shape[-1]
    beams, scores = input_ids, torch.zeros(1, device=input_ids.device)      # (b, T), (b,)
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(model(input_ids=beams).logits[:, -1, :].float(), dim=-1)  # (b, V)
        if eos_token_id is not None:
            logp[:, eos_token_id] = float("-inf")
        total = (scores[:, None] + logp).flatten()                         # (b * V,)
        best = torch.topk(total, min(num_beams, total.numel()))
        vocab = logp.shape[-1]
        beams = torch.cat([beams[best.indices // vocab], (best.indices % vocab)[:, None]], dim=-1)
        scores = best.values
    return beams[0, prompt_length:], float(scores[0])


@torch.no_grad()
def sample_completions(model, tokenizer, prompts: list[str], n_per_prompt: int, max_new_tokens: int,
                       batch_size: int = 256, desc: str | None = "sampling", greedy: bool = False) -> list[list[str]]:
    """``n_per_prompt`` continuations (text after the prompt, special tokens dropped) for each prompt:
    pure samples at temperature 1 (no top-k, no top-p), or greedy ones. ``desc=None`` hides the bar."""
    out: list[list[str]] = [[] for _ in prompts]
    flat = [(i, p) for i, p in enumerate(prompts) for _ in range(n_per_prompt)]
    settings = {"do_sample": False} if greedy else {"do_sample": True, "top_k": 0, "top_p": 1.0}
    for start in tqdm(range(0, len(flat), batch_size), desc=desc, unit="batch", disable=desc is None):
        chunk = flat[start : start + batch_size]
        enc = tokenizer([p for _, p in chunk], return_tensors="pt", padding=True, padding_side="left")
        enc = {k: v.to(model.device) for k, v in enc.items()}
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **settings)
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for (i, _), t in zip(chunk, texts):
            out[i].append(t)
    return out
