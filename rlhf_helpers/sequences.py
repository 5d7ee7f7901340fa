"""The ground floor: token sequences in padded batches, and what a causal LM says about them.

Every module that runs a language model on a batch (``rewards``' rollouts, the
PPO trainer, the KL of a tuned policy, DPO's log-probabilities) goes through
here, so the subtlest correctness point of the kit is written once: a plain
forward pass on a **left-padded** batch needs explicit position ids
(``generate()`` derives them, ``model(...)`` does not; without them GPT-2
scores the tokens at shifted positions).

=====================================================  ==============================================
``pad_token_id(tokenizer)``                             the pad id, else EOS (GPT-2 has no pad token)
``pad_left(sequences, pad_id)``                         ``(input_ids, attention_mask)``, each ``(B, L)``
``pad_right(sequences, pad_id)``                        the same, padded on the right
``position_ids_from_attention_mask(mask)``              ``(mask.cumsum(-1) - 1).clamp(min=0)``
``logprobs_from_logits(logits, labels)``                ``log softmax(logits)[labels]``: ``(..., V), (...) -> (...)``
``causal_lm_logprobs(model, ids, mask, n)``             per-token log-probs of the last ``n`` tokens, ``(B, n)``
``response_logprobs(model, queries, responses, pad)``   log pi(y | x) of whole responses, ``(N,)``
``entropy_from_logits(logits)``                         per-token entropy ``(..., V) -> (...)``
``masked_mean(x, mask)`` / ``masked_whiten(x, mask)``   statistics over real tokens only
=====================================================  ==============================================

The log-probability helpers do part of lab 5's ``sequence_logprobs``; the
grading sandbox hides them while lab 5 is graded (``CARRIES``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from rlhf_helpers import _args

__all__ = [
    "pad_token_id",
    "pad_left",
    "pad_right",
    "position_ids_from_attention_mask",
    "logprobs_from_logits",
    "causal_lm_logprobs",
    "response_logprobs",
    "entropy_from_logits",
    "masked_mean",
    "masked_whiten",
]

CARRIES = {"logprobs_from_logits": ["sequence_logprobs"], "causal_lm_logprobs": ["sequence_logprobs"],
           "response_logprobs": ["sequence_logprobs"]}
"""Helpers that do a graded function's work under another name, hidden with it while its lab is
graded: the gather, and the shift-and-sum, of lab 5's ``sequence_logprobs`` (lab 5 uses none of them)."""


def pad_token_id(tokenizer: Any) -> int:
    """The tokenizer's pad id, or its EOS id when it has none (GPT-2); ``ValueError`` if neither."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token first.")
    return int(pad)


def pad_left(sequences: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad 1-D token tensors into ``(input_ids, attention_mask)``, each ``(B, L)`` ``torch.long``
    on the CPU (``torch.nn.utils.rnn.pad_sequence``); the mask is 1 on real tokens."""
    return _pad(sequences, pad_id, "left")


def pad_right(sequences: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`pad_left`, padding on the right (how TRL's trainers lay out completions)."""
    return _pad(sequences, pad_id, "right")


def _pad(sequences: Sequence[torch.Tensor], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    seqs = [s.detach().to("cpu", torch.long) for s in sequences]
    ids = pad_sequence(seqs, batch_first=True, padding_value=int(pad_id), padding_side=side)
    ones = [torch.ones_like(s) for s in seqs]
    return ids, pad_sequence(ones, batch_first=True, padding_value=0, padding_side=side)


def position_ids_from_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a (left-)padded batch: ``(mask.cumsum(-1) - 1).clamp(min=0)``.

    Args:
        attention_mask: ``(B, L)``, 1 on real tokens, 0 on padding.

    Returns:
        ``(B, L)`` ``torch.long``: 0, 1, 2, ... along each row's real tokens
        (padding gets 0), the positions ``generate()`` uses.
    """
    _args.tensor(attention_mask, "attention_mask", dim=2)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label under ``softmax(logits)``.

    Args:
        logits: ``(..., V)`` unnormalised scores.
        labels: ``(...)`` ``torch.long`` token ids in ``[0, V)``.

    Returns:
        ``(...)``: ``log_softmax(logits, -1)`` gathered at ``labels``, in float32
        or the logits' dtype if wider.
    """
    _args.tensor(logits, "logits")
    _args.tensor(labels, "labels")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not line up: "
                         "expected logits of shape labels.shape + (vocab,).")
    logp = torch.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    return logp.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def causal_lm_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       n_last: int) -> torch.Tensor:
    """Per-token log-probs ``(B, n_last)`` of each row's last ``n_last`` tokens under a causal LM,
    from one forward pass with the position ids a left-padded batch needs (logits at position t
    predict token t + 1)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=position_ids_from_attention_mask(attention_mask), use_cache=False)
    return logprobs_from_logits(out.logits[:, -n_last - 1:-1], input_ids[:, -n_last:])


def response_logprobs(model: Any, query_tensors: Sequence[torch.Tensor], response_tensors: Sequence[torch.Tensor],
                      pad_token_id: int, batch_size: int = 64) -> torch.Tensor:
    """log pi(y | x) = sum_t log pi(y_t | x, y_<t) of each response under a causal LM.

    The query + response sequences are left-padded into batches; the sum runs over
    each response's own tokens only. The model runs in eval mode (restored after).

    Args:
        model: a causal LM (or a value-head wrapper with ``.pretrained_model``).
        query_tensors: N one-dimensional ``torch.long`` tensors x.
        response_tensors: N one-dimensional ``torch.long`` tensors y (at least one token each).
        pad_token_id: the id used for padding (masked out).
        batch_size: sequences per forward pass.

    Returns:
        Float32 tensor of shape ``(N,)`` on the CPU.
    """
    lm = getattr(model, "pretrained_model", model)
    if len(query_tensors) != len(response_tensors):
        raise ValueError(f"got {len(query_tensors)} queries but {len(response_tensors)} responses.")
    for name, seqs in (("query_tensors", query_tensors), ("response_tensors", response_tensors)):
        for i, t in enumerate(seqs):
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.numel() == 0:
                raise ValueError(f"{name}[{i}] should be a non-empty 1-D tensor of token ids.")
    device = next(lm.parameters()).device
    was_training = lm.training
    lm.eval()
    out = []
    try:
        for start in range(0, len(query_tensors), batch_size):
            qs, rs = query_tensors[start:start + batch_size], response_tensors[start:start + batch_size]
            ids, attn = pad_left([torch.cat([q.cpu().long(), r.cpu().long()]) for q, r in zip(qs, rs)], pad_token_id)
            _, mask = pad_left(rs, 0)  # (B, R): 1 on each response's own tokens
            R = mask.shape[1]
            lp = causal_lm_logprobs(lm, ids.to(device), attn.to(device), R).float().cpu()  # (B, R)
            out.append(torch.where(mask.bool(), lp, torch.zeros_like(lp)).sum(-1))
    finally:
        lm.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` over the last dimension: ``(..., V) -> (...)``."""
    _args.tensor(logits, "logits")
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over entries where ``mask`` is non-zero (padding may hold anything, even NaN).

    ``dim=None`` averages over everything and returns a scalar.
    """
    m = mask.bool()
    zeros = torch.zeros((), dtype=x.dtype, device=x.device)
    total = torch.where(m, x, zeros)
    if dim is None:
        return total.sum() / m.sum().clamp(min=1)
    return total.sum(dim) / m.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` with mean and (unbiased) std over the masked entries; 0 on padding."""
    m = mask.bool()
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    n = m.sum()
    if n > 1:
        var = var * n / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(m, out, torch.zeros_like(out))
