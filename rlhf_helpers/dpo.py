"""Direct Preference Optimization (DPO): from the KL-regularised optimum to a loss on pairs.

The derivation of lab 5, in four equations (Rafailov et al. 2023, "Direct
Preference Optimization: Your Language Model is Secretly a Reward Model").
The KL-regularised objective of lab 4 has the closed-form maximiser

.. math::
    \\pi^*(y|x) = \\frac{1}{Z(x)}\\, \\pi_{\\mathrm{ref}}(y|x)\\, e^{r(x,y)/\\beta}   \\tag{1}

Taking logs and solving for the reward gives the **implied reward**

.. math::
    r(x,y) = \\beta \\log\\frac{\\pi^*(y|x)}{\\pi_{\\mathrm{ref}}(y|x)} + \\beta \\log Z(x)   \\tag{2}

The Bradley-Terry model of a preference of y_w over y_l is

.. math::
    p(y_w \\succ y_l \\mid x) = \\sigma\\big(r(x,y_w) - r(x,y_l)\\big)   \\tag{3}

and in that difference of two rewards for the same prompt, ``beta log Z(x)``
cancels. Maximum likelihood over preference pairs, with the policy pi in the
place of pi*, gives the DPO loss (Eq. 7 of the paper)

.. math::
    L = -\\log\\sigma\\Big(\\beta\\big[\\log\\tfrac{\\pi(y_w|x)}{\\pi_{\\mathrm{ref}}(y_w|x)}
        - \\log\\tfrac{\\pi(y_l|x)}{\\pi_{\\mathrm{ref}}(y_l|x)}\\big]\\Big)   \\tag{4}

whose gradient with respect to the policy parameters is

.. math::
    \\nabla L = -\\beta\\, \\sigma(\\hat r_l - \\hat r_w)\\,
        \\big[\\nabla\\log\\pi(y_w|x) - \\nabla\\log\\pi(y_l|x)\\big],
    \\qquad \\hat r = \\beta\\log\\tfrac{\\pi}{\\pi_{\\mathrm{ref}}}   \\tag{5}

=================================  ==============================================================
``bradley_terry_probability``      Eq. (3), elementwise
``implied_reward``                 beta (log pi - log pi_ref), Eq. (2) without its constant
``sequence_logprobs``              summed next-token log-probs of the masked (completion) tokens
``dpo_loss``                       Eq. (4) per pair, computed with log-sigmoid, and the rewards
``dpo_gradient_weight``            sigma(r_l - r_w), the per-pair weight of Eq. (5)
``tokenize_preference_pairs``      prompt + chosen / rejected as TRL's ``DPOTrainer`` builds them
``completion_logps``               a model's summed completion log-probs on such a batch
``batch_logps``                    the same from prompts and completions (one list)
``preference_logps``               log pi(y_w|x) and log pi(y_l|x) of pairs, as TRL computes them
``trl_dpo_loss_on_batch``          the loss ``trl.DPOTrainer`` computes for the same pairs
``sample_bt_preferences``          pairs labelled by Bradley-Terry from a known reward (the toy)
=================================  ==============================================================

The first four are the graded functions of lab 5; these are the kit's
reference versions. While lab 5 is graded they are stubs in the sandbox (and
so is ``dpo_gradient_weight``, see ``CARRIES``): the helpers that need a
log-prob function take it as ``logprob_fn`` (the default, :func:`sequence_logprobs`,
is looked up when called), and the lab passes the learner's. Nothing here
seeds or changes global state (the TRL comparison saves and restores the
random number generators that ``DPOTrainer`` reseeds).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rlhf_helpers import _args
from rlhf_helpers._hf import kept_rng_state, no_dataset_bars
from rlhf_helpers.sequences import pad_token_id, position_ids_from_attention_mask

__all__ = [
    "bradley_terry_probability",
    "implied_reward",
    "sequence_logprobs",
    "dpo_loss",
    "dpo_gradient_weight",
    "PreferenceBatch",
    "tokenize_preference_pairs",
    "completion_logps",
    "batch_logps",
    "preference_logps",
    "TRLLoss",
    "trl_dpo_loss_on_batch",
    "sample_bt_preferences",
]

CARRIES = {"dpo_gradient_weight": ["bradley_terry_probability"]}
"""Helpers that do a graded function's work under another name: the grader hides them with it
(``dpo_gradient_weight(w, l)`` is ``bradley_terry_probability(l, w)``)."""

LogprobFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""The signature of :func:`sequence_logprobs`: ``(logits, labels, loss_mask) -> (B,)``."""


# ----------------------------------------------------------------------------- input checks
# ----------------------------------------------------------------------------- graded functions (reference)
def bradley_terry_probability(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """p(chosen preferred to rejected) = sigma(r_chosen - r_rejected), elementwise (Eq. 3).

    ``torch.sigmoid`` of the difference is stable for any finite rewards (the
    textbook form ``e^{r_w} / (e^{r_w} + e^{r_l})`` overflows for rewards
    above ~88 in float32). Adding the same constant to both rewards leaves the
    result unchanged.

    Args:
        reward_chosen: r(x, y_w), any shape ``S``, floating point.
        reward_rejected: r(x, y_l), broadcastable with ``reward_chosen``.

    Returns:
        Probabilities of the broadcast shape of the inputs, in [0, 1].
    """
    _args.tensor(reward_chosen, "reward_chosen", floating=True)
    _args.tensor(reward_rejected, "reward_rejected", floating=True)
    return torch.sigmoid(reward_chosen - reward_rejected)


def implied_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """The reward a policy implies: beta * (log pi(y|x) - log pi_ref(y|x)) (Eq. 2 without beta log Z).

    Gradients flow through ``policy_logps`` (the loss needs them);
    :func:`dpo_loss` detaches the rewards it reports.

    Args:
        policy_logps: log pi(y|x), shape ``S`` (e.g. ``(B,)``).
        ref_logps: log pi_ref(y|x), same shape.
        beta: the KL coefficient, > 0.

    Returns:
        Shape ``S``, dtype of ``policy_logps``.
    """
    beta = _args.positive_number(beta, "beta")
    _args.tensor(policy_logps, "policy_logps", floating=True)
    _args.tensor(ref_logps, "ref_logps", floating=True)
    _args.same_shape(policy_logps=policy_logps, ref_logps=ref_logps)
    return beta * (policy_logps - ref_logps)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probabilities of the masked tokens of each sequence.

    .. math:: \\log \\pi(y|x) = \\sum_{t \\ge 1,\\ m_t = 1} \\log\\mathrm{softmax}(z_{t-1})[\\,l_t\\,]

    The logits at position ``t - 1`` predict the token at position ``t`` (the
    shift by one of a causal LM), so position 0 is never counted. Labels at
    masked positions are ignored, and may be anything (TRL writes ``-100``).

    Args:
        logits: ``(B, T, V)`` next-token logits of a causal LM.
        labels: ``(B, T)`` token ids (int64).
        loss_mask: ``(B, T)`` 1 (or True) where the token counts, e.g. the
            completion tokens; 0 at prompt and padding positions, wherever they are.

    Returns:
        ``(B,)``, dtype of ``logits`` (float32 for half-precision logits).

    Raises:
        TypeError / ValueError: wrong types or shapes, a mask that is not 0/1.
    """
    _args.tensor(logits, "logits", floating=True)
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels should be an integer torch.Tensor of token ids, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}.")
    if not isinstance(loss_mask, torch.Tensor):
        raise TypeError(f"loss_mask should be a torch.Tensor, got {type(loss_mask).__name__}.")
    if logits.dim() != 3:
        raise ValueError(f"logits should have shape (B, T, V), got {tuple(logits.shape)}.")
    if tuple(labels.shape) != tuple(logits.shape[:2]) or tuple(loss_mask.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"labels and loss_mask should have shape (B, T) = {tuple(logits.shape[:2])}, got "
                         f"{tuple(labels.shape)} and {tuple(loss_mask.shape)}.")
    if not ((loss_mask == 0) | (loss_mask == 1)).all():
        raise ValueError("loss_mask should hold only 0 and 1.")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    mask = loss_mask[:, 1:].to(torch.bool)                             # (B, T-1): token t counted?
    targets = labels[:, 1:].masked_fill(~mask, 0)                      # (B, T-1): any id where masked
    logp = torch.log_softmax(logits[:, :-1], dim=-1)                   # (B, T-1, V): predicts t from t-1
    token_logps = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)   # (B, T-1)
    return torch.where(mask, token_logps, torch.zeros_like(token_logps)).sum(-1)  # (B,)


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of each pair and the implied rewards (Eq. 4).

    ``-F.logsigmoid(h)`` is used, not ``-log(sigmoid(h))``: for a margin ``h``
    below about -104 (float32) ``sigmoid(h)`` rounds to 0 and its log to
    ``-inf``, while the loss is really ``-h``. TRL's ``loss_type="sigmoid"``
    computes the same. Note the log: ``-sigmoid(h)`` is not the DPO loss.

    Args:
        policy_chosen_logps: log pi(y_w|x), ``(B,)``.
        policy_rejected_logps: log pi(y_l|x), ``(B,)``.
        ref_chosen_logps: log pi_ref(y_w|x), ``(B,)``.
        ref_rejected_logps: log pi_ref(y_l|x), ``(B,)``.
        beta: the KL coefficient, > 0.

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, each ``(B,)``; the
        losses carry gradients, the rewards beta (log pi - log pi_ref) are detached.
    """
    beta = _args.positive_number(beta, "beta")
    named = {"policy_chosen_logps": policy_chosen_logps, "policy_rejected_logps": policy_rejected_logps,
             "ref_chosen_logps": ref_chosen_logps, "ref_rejected_logps": ref_rejected_logps}
    for name, t in named.items():
        _args.tensor(t, name, floating=True)
    _args.same_shape(**named)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def dpo_gradient_weight(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """sigma(r_l - r_w): how strongly Eq. (5) pushes each pair (1 when the implied
    rewards order it badly, 0 when they order it well by a wide margin)."""
    _args.tensor(chosen_rewards, "chosen_rewards", floating=True)
    _args.tensor(rejected_rewards, "rejected_rewards", floating=True)
    return torch.sigmoid(rejected_rewards - chosen_rewards)


# ----------------------------------------------------------------------------- tokenising pairs like TRL
@dataclass
class PreferenceBatch:
    """Prompt + completion sequences, right-padded, as ``trl.DPOTrainer``'s collator makes them.

    With ``N`` sequences of at most ``T`` tokens (for pairs ``N = 2B``: the B
    chosen sequences first, then the B rejected ones, pair ``i`` in rows ``i``
    and ``B + i``):

    Attributes:
        input_ids: ``(N, T)`` int64, prompt then completion (ending with EOS), then padding.
        attention_mask: ``(N, T)`` int64, 1 on real tokens.
        completion_mask: ``(N, T)`` int64, 1 on completion tokens (EOS included).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor

    def to(self, device: str | torch.device) -> PreferenceBatch:
        """The batch on ``device``."""
        return PreferenceBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.completion_mask)))


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _encode(tokenizer, prompt: str, completions: Sequence[str], add_eos: bool) -> tuple[list[int], list[list[int]]]:
    """TRL's ``tokenize_fn``: the prompt is what prompt and every prompt + completion share."""
    eos = tokenizer.eos_token or ""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = []
    for c in completions:
        if add_eos and eos and not c.endswith(eos):
            c = c + eos
        full.append(tokenizer(prompt + c)["input_ids"])
    prompt_len = min(_common_prefix_length(prompt_ids, ids) for ids in full)
    return prompt_ids[:prompt_len], [ids[prompt_len:] for ids in full]


def _collate(prompts_ids: list[list[int]], completions_ids: list[list[int]], pad_token_id: int,
             max_length: int | None) -> PreferenceBatch:
    seqs = [p + c for p, c in zip(prompts_ids, completions_ids)]
    masks = [[0] * len(p) + [1] * len(c) for p, c in zip(prompts_ids, completions_ids)]
    if max_length is not None:  # TRL's truncation_mode="keep_start"
        seqs, masks = [s[:max_length] for s in seqs], [m[:max_length] for m in masks]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    comp = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        comp[i, : len(m)] = torch.tensor(m, dtype=torch.long)
    return PreferenceBatch(ids, attn, comp)


def tokenize_preference_pairs(tokenizer, prompts: Sequence[str], chosen: Sequence[str], rejected: Sequence[str],
                              *, add_eos: bool = True, max_length: int | None = None) -> PreferenceBatch:
    """Tokenise pairs exactly as ``trl.DPOTrainer`` (TRL 1.16, non-conversational data) does.

    Per pair: EOS is appended to ``chosen`` and ``rejected`` (unless already
    there); ``prompt``, ``prompt + chosen`` and ``prompt + rejected`` are
    tokenised separately; the prompt is the longest common prefix of the three
    (usually the prompt's own tokens; shorter when a token merges across the
    boundary); the rest is the completion. Sequences are then truncated to
    ``max_length`` (keeping the start) and right-padded with the pad token.

    Returns:
        A :class:`PreferenceBatch` of ``2B`` rows: chosen rows, then rejected rows.
    """
    prompts, chosen, rejected = (_args.texts(t, n) for t, n in
                                 ((prompts, "prompts"), (chosen, "chosen"), (rejected, "rejected")))
    if not (len(prompts) == len(chosen) == len(rejected)) or not prompts:
        raise ValueError(f"prompts, chosen and rejected should be non-empty lists of one length, got "
                         f"{len(prompts)}, {len(chosen)} and {len(rejected)}.")
    p_ids, c_ids, r_ids = [], [], []
    for p, c, r in zip(prompts, chosen, rejected):
        prompt_ids, (ci, ri) = _encode(tokenizer, p, [c, r], add_eos)
        p_ids.append(prompt_ids)
        c_ids.append(ci)
        r_ids.append(ri)
    return _collate(p_ids + p_ids, c_ids + r_ids, pad_token_id(tokenizer), max_length)


def completion_logps(model, batch: PreferenceBatch, logprob_fn: LogprobFn | None = None) -> torch.Tensor:
    """log pi(completion | prompt) of each row of ``batch``: one forward pass, then ``logprob_fn``.

    Explicit ``position_ids`` (``attention_mask.cumsum(-1) - 1``, clamped at 0)
    make this right for left-padded batches too; for right padding they equal
    the model's defaults, which is what TRL uses. Gradients flow unless the
    caller wraps the call in ``torch.no_grad()``.

    Args:
        model: a causal LM (``(N, T)`` ids -> ``(N, T, V)`` logits).
        batch: a :class:`PreferenceBatch` (moved to the model's device here).
        logprob_fn: ``(logits, labels, loss_mask) -> (N,)``; default :func:`sequence_logprobs`.

    Returns:
        ``(N,)`` float32 on the model's device.
    """
    if not isinstance(batch, PreferenceBatch):
        raise TypeError(f"batch should be a PreferenceBatch (see tokenize_preference_pairs), got "
                        f"{type(batch).__name__}.")
    logprob_fn = sequence_logprobs if logprob_fn is None else logprob_fn
    device = next(model.parameters()).device
    batch = batch.to(device)
    position_ids = position_ids_from_attention_mask(batch.attention_mask)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=position_ids, use_cache=False).logits    # (N, T, V)
    return logprob_fn(logits, batch.input_ids, batch.completion_mask)


def batch_logps(model, tokenizer, prompts: Sequence[str], completions: Sequence[str], *,
                logprob_fn: LogprobFn | None = None, add_eos: bool = True,
                max_length: int | None = None) -> torch.Tensor:
    """log pi(completion_i | prompt_i): summed log-probs of the completion tokens, as TRL counts them.

    Prompt tokens and padding are masked out; the EOS appended to each
    completion counts (``add_eos=False`` to leave it off). See
    :func:`tokenize_preference_pairs` for the tokenisation.

    Returns:
        ``(B,)`` float32 on the model's device.
    """
    prompts, completions = _args.texts(prompts, "prompts"), _args.texts(completions, "completions")
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(f"prompts and completions should be non-empty lists of one length, got "
                         f"{len(prompts)} and {len(completions)}.")
    p_ids, c_ids = [], []
    for p, c in zip(prompts, completions):
        prompt_ids, (ci,) = _encode(tokenizer, p, [c], add_eos)
        p_ids.append(prompt_ids)
        c_ids.append(ci)
    batch = _collate(p_ids, c_ids, pad_token_id(tokenizer), max_length)
    return completion_logps(model, batch, logprob_fn)


def _as_pairs(pairs: Any) -> tuple[list[str], list[str], list[str]]:
    """``(prompts, chosen, rejected)`` from a ``datasets.Dataset``, a dict of lists or a list of dicts."""
    keys = ("prompt", "chosen", "rejected")
    if isinstance(pairs, Sequence) and not isinstance(pairs, str):
        if not all(isinstance(p, Mapping) and all(k in p for k in keys) for p in pairs):
            raise TypeError("pairs given as a list should hold dicts with 'prompt', 'chosen' and 'rejected'.")
        return tuple([p[k] for p in pairs] for k in keys)  # type: ignore[return-value]
    try:
        columns = pairs.column_names if hasattr(pairs, "column_names") else list(pairs)
        missing = [k for k in keys if k not in columns]
    except TypeError:
        raise TypeError(f"pairs should be a datasets.Dataset or a list of dicts, got {type(pairs).__name__}.") from None
    if missing:
        raise ValueError(f"pairs lack the column(s) {missing}: DPO needs 'prompt', 'chosen' and 'rejected'.")
    return tuple(list(pairs[k]) for k in keys)  # type: ignore[return-value]


def preference_logps(model, tokenizer, pairs: Any, *, logprob_fn: LogprobFn | None = None,
                     max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log pi(y_w|x), log pi(y_l|x))`` of each pair, each ``(B,)``, from one forward pass.

    ``pairs``: a ``datasets.Dataset`` with ``prompt``, ``chosen``, ``rejected``
    (e.g. :func:`rlhf_helpers.data.load_preference_pairs`), a dict of such
    lists, or a list of such dicts. Tokenised as TRL does
    (:func:`tokenize_preference_pairs`); ``logprob_fn`` as in :func:`completion_logps`.
    """
    prompts, chosen, rejected = _as_pairs(pairs)
    batch = tokenize_preference_pairs(tokenizer, prompts, chosen, rejected, max_length=max_length)
    logps = completion_logps(model, batch, logprob_fn)
    return logps[: len(prompts)], logps[len(prompts):]


# ----------------------------------------------------------------------------- TRL's own loss
@dataclass
class TRLLoss:
    """What ``trl.DPOTrainer.compute_loss`` gives for a batch of pairs.

    Attributes:
        loss: the batch's mean loss (a Python float), as the trainer computes it.
        per_pair: ``(B,)`` float32 on the CPU, TRL's loss for each pair alone.
        chosen_reward: TRL's logged ``rewards/chosen`` (the batch mean).
        rejected_reward: TRL's logged ``rewards/rejected`` (the batch mean).
    """

    loss: float
    per_pair: torch.Tensor
    chosen_reward: float
    rejected_reward: float


def trl_dpo_loss_on_batch(model, ref_model, tokenizer, pairs: Any, beta: float = 0.1) -> TRLLoss:
    """The DPO loss ``trl.DPOTrainer`` computes for ``pairs`` (``loss_type="sigmoid"``, the paper's).

    Builds a ``DPOTrainer`` on *copies* of ``model`` and ``ref_model`` (TRL
    patches a model's ``forward`` and turns off its dropout), lets TRL
    tokenise and collate the pairs with its own code, and calls its
    ``compute_loss`` on the whole batch and on each pair alone. No training
    step is taken, nothing is written outside a temporary folder, the random
    state is left as it was, and Python warnings raised while the throwaway
    trainer is built are dropped. A few seconds for the tiny model.

    Args:
        model: the policy (a ``PreTrainedModel``).
        ref_model: the frozen reference (a separate ``PreTrainedModel``).
        tokenizer: their tokenizer (TRL's ``processing_class``).
        pairs: as for :func:`preference_logps`.
        beta: the KL coefficient, > 0.

    Returns:
        A :class:`TRLLoss`.
    """
    with kept_rng_state():  # the first import of TRL, and DPOTrainer itself, draw from or reseed the RNGs
        return _trl_dpo_loss(model, ref_model, tokenizer, pairs, beta)


def _trl_dpo_loss(model, ref_model, tokenizer, pairs: Any, beta: float) -> TRLLoss:
    import datasets
    from trl import DPOConfig, DPOTrainer

    from rlhf_helpers.config import get_device

    beta = _args.positive_number(beta, "beta")
    prompts, chosen, rejected = _as_pairs(pairs)
    if not prompts:
        raise ValueError("pairs is empty.")
    if ref_model is model:
        raise ValueError("ref_model must be a separate copy of the model (see rlhf_helpers.models.frozen_copy).")
    dataset = datasets.Dataset.from_dict({"prompt": prompts, "chosen": chosen, "rejected": rejected})
    policy, reference = copy.deepcopy(model).eval(), copy.deepcopy(ref_model).eval()
    on_cpu = next(policy.parameters()).device.type == "cpu" or get_device() == "cpu"
    with tempfile.TemporaryDirectory(prefix="trl-dpo-") as out, no_dataset_bars(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices from building a throwaway trainer
        args = DPOConfig(output_dir=out, beta=beta, loss_type=["sigmoid"], use_cpu=on_cpu, bf16=False,
                         activation_checkpointing=False, report_to="none", max_length=None,
                         per_device_train_batch_size=len(prompts), save_strategy="no", logging_strategy="no",
                         dataloader_pin_memory=False, disable_tqdm=True)
        trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=dataset,
                             processing_class=tokenizer)
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        if len(rows) != len(prompts):
            raise RuntimeError(f"TRL kept {len(rows)} of {len(prompts)} pairs.")
        device = trainer.accelerator.device

        def loss_of(examples: list[dict]) -> torch.Tensor:
            inputs = trainer.data_collator(examples)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            with torch.no_grad():
                return trainer.compute_loss(trainer.model, inputs).detach().float().cpu()

        loss = loss_of(rows)
        metrics = trainer._metrics["train" if trainer.model.training else "eval"]  # TRL files them by mode
        chosen_reward, rejected_reward = metrics["rewards/chosen"][-1], metrics["rewards/rejected"][-1]
        per_pair = torch.stack([loss_of([row]) for row in rows])
    return TRLLoss(float(loss), per_pair, float(chosen_reward), float(rejected_reward))


# ----------------------------------------------------------------------------- the tabular toy
def sample_bt_preferences(ref_probs: torch.Tensor, rewards: torch.Tensor, num_pairs: int,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Preference pairs over a handful of responses, labelled by Bradley-Terry from a known reward.

    As in the DPO paper's set-up: two responses are drawn independently from
    ``ref_probs`` (the SFT model), and the first is preferred with probability
    ``sigma(r_1 - r_2)`` (Eq. 3); the pair is returned as (winner, loser).

    Args:
        ref_probs: pi_ref over ``K`` responses, shape ``(K,)``.
        rewards: the true reward of each response, ``(K,)``.
        num_pairs: how many pairs to draw, ``N`` >= 1.
        generator: a seeded ``torch.Generator`` for reproducible draws.

    Returns:
        ``(winners, losers)``: int64 indices, each ``(N,)``. A response drawn
        twice gives a tie pair (winner = loser), which carries no gradient.
    """
    _args.tensor(ref_probs, "ref_probs", floating=True)
    _args.tensor(rewards, "rewards", floating=True)
    if ref_probs.dim() != 1 or rewards.shape != ref_probs.shape:
        raise ValueError(f"ref_probs and rewards should both have shape (K,), got {tuple(ref_probs.shape)} "
                         f"and {tuple(rewards.shape)}.")
    _args.integer(num_pairs, "num_pairs", minimum=1)
    draws = torch.multinomial(ref_probs.double(), 2 * num_pairs, replacement=True, generator=generator)
    first, second = draws[:num_pairs], draws[num_pairs:]
    p_first = torch.sigmoid(rewards.double()[first] - rewards.double()[second])
    first_wins = torch.rand(num_pairs, generator=generator, dtype=torch.float64) < p_first
    return torch.where(first_wins, first, second), torch.where(first_wins, second, first)
