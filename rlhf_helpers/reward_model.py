"""A reward model learnt from preferences: the Bradley-Terry loss, and scoring texts with it.

Lab 7 trains a scalar reward model r_phi(x, y) on the kit's preference pairs
with TRL's ``RewardTrainer``. The model is a sequence classifier with one
output (``num_labels=1``); the loss is the negative log-likelihood of the
Bradley-Terry model (lab 5):

.. math::
    L(\\phi) = -\\frac{1}{B} \\sum_i \\log \\sigma\\big(r_\\phi(x_i, y_i^w) - r_\\phi(x_i, y_i^l)\\big)

==================================================  ==========================================================
``pairwise_loss(rewards_chosen, rewards_rejected)``  the loss above, a scalar tensor (graded in lab 7)
``pairwise_accuracy(rewards_chosen, rewards_rejected)``  share of pairs whose chosen scores strictly higher (graded)
``reward_model_scores(model, tokenizer, texts)``     ``(N,)`` float32 scores of texts, right-padded batches
``preference_texts(pairs)``                          ``(chosen texts, rejected texts)``: prompt + completion
``trl_reward_loss(model, tokenizer, pairs)``         what ``RewardTrainer.compute_loss`` gives on one batch
``reward_config(output_dir, **overrides)``           a ``trl.RewardConfig`` that trains on a CPU in seconds
``tiny_reward_model(tokenizer, seed)``               a small random GPT-2 classifier, the same for a seed (tests)
==================================================  ==========================================================

Padding: TRL's collator pads on the right, and a GPT-2 sequence classifier
reads its score at the last token that is not padding. Left padding without
position ids shifts every position of the shorter rows and changes their
scores, so :func:`reward_model_scores` pads on the right, as TRL does.

Nothing here seeds or changes global state at import.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rlhf_helpers import _args

__all__ = ["pairwise_loss", "pairwise_accuracy", "reward_model_scores", "preference_texts", "TRLRewardLoss",
           "trl_reward_loss", "reward_config", "tiny_reward_model"]

CARRIES = {"trl_reward_loss": ["pairwise_loss"]}
"""Helpers that do a graded function's work under another name, hidden with it while lab 7 is graded
(``trl_reward_loss`` returns TRL's value of the loss lab 7's ``pairwise_loss`` asks for)."""


def _pair_tensors(rewards_chosen: Any, rewards_rejected: Any) -> tuple[torch.Tensor, torch.Tensor]:
    c = _args.tensor(rewards_chosen, "rewards_chosen", dim=1, floating=True)
    r = _args.tensor(rewards_rejected, "rewards_rejected", dim=1, floating=True)
    _args.same_shape(rewards_chosen=c, rewards_rejected=r)
    if c.numel() == 0:
        raise ValueError("rewards_chosen is empty: there are no pairs.")
    return c, r


def pairwise_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss of a batch of pairs: mean of -log sigmoid(r_chosen - r_rejected).

    Args:
        rewards_chosen: ``(B,)`` float, the reward model's score of each chosen text.
        rewards_rejected: ``(B,)`` float, the score of the rejected text of the same pair.

    Returns:
        A 0-dim tensor of the inputs' dtype, differentiable with respect to both.

    Raises:
        TypeError / ValueError: not floating-point 1-D tensors of one shape, or empty.
    """
    c, r = _pair_tensors(rewards_chosen, rewards_rejected)
    return -F.logsigmoid(c - r).mean()


def pairwise_accuracy(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen text scores strictly higher than the rejected one (a tie is a miss).

    Args:
        rewards_chosen, rewards_rejected: ``(B,)`` float tensors of one shape.

    Returns:
        A Python float in [0, 1].
    """
    c, r = _pair_tensors(rewards_chosen, rewards_rejected)
    return (c > r).float().mean().item()


@torch.no_grad()
def reward_model_scores(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 64,
                        max_length: int | None = None) -> torch.Tensor:
    """The scalar score of each text under a one-output sequence classifier.

    Batches are padded on the **right** (as TRL's ``RewardTrainer`` collates
    them), the model runs in eval mode (restored afterwards).

    Args:
        model: an ``AutoModelForSequenceClassification`` with ``num_labels=1``.
        tokenizer: its tokenizer (a pad token must be set).
        texts: N strings (prompt + completion).
        batch_size: texts per forward pass.
        max_length: truncate longer texts (default: the model's maximum positions, if known).

    Returns:
        ``(N,)`` float32 on the CPU.
    """
    texts = _args.texts(texts, "texts")
    if max_length is None:
        max_length = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    device = next(model.parameters()).device
    side, was_training = tokenizer.padding_side, model.training
    tokenizer.padding_side = "right"
    model.eval()
    out = []
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                            truncation=max_length is not None, max_length=max_length)
            logits = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
            out.append(logits.reshape(len(enc["input_ids"]), -1)[:, 0].float().cpu())
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def preference_texts(pairs: Any) -> tuple[list[str], list[str]]:
    """``(prompt + chosen, prompt + rejected)`` of each pair (a ``datasets.Dataset`` or a list of dicts
    with ``prompt``, ``chosen``, ``rejected``)."""
    rows = [pairs[i] for i in range(len(pairs))]
    return [r["prompt"] + r["chosen"] for r in rows], [r["prompt"] + r["rejected"] for r in rows]


def reward_config(output_dir: str, **overrides: Any):
    """A ``trl.RewardConfig`` that trains a tiny reward model on a CPU in seconds.

    Defaults (each can be overridden): ``use_cpu`` when there is no GPU,
    ``bf16=False``, ``activation_checkpointing=False`` (TRL's defaults are slow on
    a CPU), ``learning_rate=1e-3``, batch 32, ``max_length=128``, no
    checkpoints, ``report_to="none"``, ``seed=0``, ``logging_steps=5``.
    """
    from trl import RewardConfig

    from rlhf_helpers.config import get_device

    on_cpu = get_device() == "cpu"
    settings = dict(output_dir=output_dir, use_cpu=on_cpu, bf16=False, activation_checkpointing=False,
                    learning_rate=1e-3, per_device_train_batch_size=32, per_device_eval_batch_size=64,
                    max_length=128, save_strategy="no", report_to="none", seed=0, logging_steps=5,
                    dataloader_pin_memory=not on_cpu)
    settings.update(overrides)
    return RewardConfig(**settings)


@dataclass
class TRLRewardLoss:
    """What ``trl.RewardTrainer.compute_loss`` gives for one batch of pairs.

    Attributes:
        loss: the batch's loss (a Python float).
        rewards_chosen: ``(B,)`` float32 on the CPU, the model's score of each chosen text as TRL collated it.
        rewards_rejected: ``(B,)`` float32, the same for the rejected texts.
        input_ids: ``(2B, L)`` the collated batch (chosen rows first, then rejected, right-padded).
        attention_mask: ``(2B, L)``.
    """

    loss: float
    rewards_chosen: torch.Tensor
    rewards_rejected: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def trl_reward_loss(model: Any, tokenizer: Any, pairs: Any) -> TRLRewardLoss:
    """The loss ``trl.RewardTrainer`` computes for ``pairs``, as one batch, with its own tokenising and collating.

    Builds a throwaway ``RewardTrainer`` on a copy of ``model`` (TRL turns off
    dropout and may patch the model), and calls its ``compute_loss`` once. No
    training step is taken; the random state is left as it was.

    Args:
        model: a one-output sequence classifier.
        tokenizer: its tokenizer (TRL's ``processing_class``).
        pairs: a ``datasets.Dataset`` (or list of dicts) with ``prompt``, ``chosen``, ``rejected``.

    Returns:
        A :class:`TRLRewardLoss`.
    """
    import datasets
    from trl import RewardTrainer

    from rlhf_helpers._hf import kept_rng_state, no_dataset_bars

    rows = [pairs[i] for i in range(len(pairs))]
    if not rows:
        raise ValueError("pairs is empty.")
    dataset = datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in ("prompt", "chosen", "rejected")})
    with kept_rng_state(), tempfile.TemporaryDirectory(prefix="trl-rm-") as out, no_dataset_bars(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = reward_config(out, per_device_train_batch_size=len(rows), max_length=None, logging_strategy="no",
                             disable_tqdm=True)
        trainer = RewardTrainer(model=copy.deepcopy(model).eval(), args=args, train_dataset=dataset,
                                processing_class=tokenizer)
        examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        if len(examples) != len(rows):
            raise RuntimeError(f"TRL kept {len(examples)} of {len(rows)} pairs.")
        inputs = trainer.data_collator(examples)
        device = trainer.accelerator.device
        batch = {k: v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
        scores = outputs.logits.squeeze(-1).detach().float().cpu()
    chosen, rejected = scores.chunk(2)
    return TRLRewardLoss(float(loss), chosen, rejected, inputs["input_ids"].cpu(), inputs["attention_mask"].cpu())


def tiny_reward_model(tokenizer: Any, seed: int = 0, n_embd: int = 32, n_layer: int = 1):
    """A small, randomly initialised GPT-2 sequence classifier with one output, the same for a given
    ``seed`` (for tests: built from a config, nothing is loaded or printed)."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=n_embd, n_layer=n_layer, n_head=2,
                        num_labels=1, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                        bos_token_id=tokenizer.bos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPT2ForSequenceClassification(config).eval()
