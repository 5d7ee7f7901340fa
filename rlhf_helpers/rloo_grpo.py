"""Policy gradient without a value head: RLOO and GRPO, as TRL 1.16 computes them.

PPO (``rlhf_helpers.ppo``) learns a value function to get a baseline for each
token. RLOO (Ahmadian et al. 2024, "Back to Basics") and GRPO (Shao et al.
2024, DeepSeekMath) drop the value head: they sample ``k`` completions of each
prompt and use the *other* completions of the same prompt as the baseline.
With rewards ``r_1 .. r_k`` of one prompt's group:

* RLOO, leave-one-out:  ``A_i = r_i - (sum_j r_j - r_i) / (k - 1)``
  (TRL first subtracts ``beta * KL`` of the whole completion from ``r_i``);
* GRPO, group-normalised:  ``A_i = (r_i - mean(r)) / (std(r) + 1e-4)``
  (``std`` unbiased; ``scale_rewards="batch"`` divides by the standard
  deviation of the whole batch, ``"none"`` does not divide: Dr. GRPO).

Both are read off TRL 1.16 (``RLOOTrainer._generate_and_score_completions``
and ``GRPOTrainer``'s), where the ``k`` completions of a prompt are
consecutive in the batch (``rewards.view(-1, num_generations)``);
``tests/helpers/test_rloo_grpo.py`` runs the trainers and checks these functions
against the advantages they log.

=====================================================  =============================================================
``rloo_advantages(rewards, num_generations)``           ``(N,)`` leave-one-out advantages (graded in lab 7)
``grpo_advantages(rewards, num_generations, scale)``    ``(N,)`` group-normalised advantages (graded in lab 7)
``trl_reward_func(reward_fn)``                          a texts -> rewards function in the form TRL's ``reward_funcs`` take
``rl_config(config_class, output_dir, **overrides)``    an ``RLOOConfig`` / ``GRPOConfig`` that trains on a CPU
``prompt_dataset(queries, tokenizer)``                  a ``datasets.Dataset`` with a ``prompt`` column
``HeldOutCurve(evaluate)``                              held-out evaluations against training wall time
``trl_logprobs(trainer, model, queries, responses)``    per-token log-probs as TRL's trainers compute them
``position_ids_from_mask(model)``                       a context in which the model's forward passes derive position ids
=====================================================  =============================================================

A pitfall, measured on the pinned versions (transformers 5.24, TRL 1.16):
TRL's RLOO and GRPO trainers pass no ``position_ids`` in their forward
passes. On left-padded prompts a GPT-2 then reads the shorter rows at shifted
positions, so the log-probs it trains on are not those of the distribution
``generate()`` sampled from (:func:`trl_logprobs` shows the difference).
Inside :func:`position_ids_from_mask` the backbone derives them from the
attention mask, as ``generate()`` does; lab 7 trains RLOO once that way to see
what the missing position ids cost (its KL to the reference, above all).

Nothing here seeds or changes global state at import.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from rlhf_helpers import _args

__all__ = ["rloo_advantages", "grpo_advantages", "trl_reward_func", "rl_config", "prompt_dataset", "HeldOutCurve",
           "trl_logprobs", "position_ids_from_mask", "SCALES"]

SCALES = ("group", "batch", "none")


def _groups(rewards: Any, num_generations: Any) -> tuple[torch.Tensor, int]:
    r = _args.tensor(rewards, "rewards", dim=1, floating=True)
    _args.integer(num_generations, "num_generations", minimum=2)
    if r.numel() == 0 or r.numel() % num_generations:
        raise ValueError(f"rewards has {r.numel()} entries, not a positive multiple of num_generations={num_generations}.")
    return r.view(-1, num_generations), num_generations


def rloo_advantages(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """RLOO's advantages: each reward minus the mean reward of the other completions of its prompt.

    Args:
        rewards: ``(N,)`` float, ``N = P * num_generations``; the completions of one prompt are consecutive.
        num_generations: ``k >= 2``, completions per prompt.

    Returns:
        ``(N,)`` of the rewards' dtype: ``r_i - (sum of the group - r_i) / (k - 1)``.
    """
    grouped, k = _groups(rewards, num_generations)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


def grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group") -> torch.Tensor:
    """GRPO's advantages: each reward minus its group's mean, divided by a standard deviation plus 1e-4.

    Args:
        rewards: ``(N,)`` float, ``N = P * num_generations``; the completions of one prompt are consecutive.
        num_generations: ``k >= 2``, completions per prompt.
        scale_rewards: ``"group"`` (divide by the group's unbiased standard deviation + 1e-4),
            ``"batch"`` (by the whole batch's, + 1e-4) or ``"none"`` (no division: Dr. GRPO).

    Returns:
        ``(N,)`` of the rewards' dtype.
    """
    grouped, k = _groups(rewards, num_generations)
    if scale_rewards not in SCALES:
        raise ValueError(f"scale_rewards should be one of {SCALES}, got {scale_rewards!r}.")
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        centred = centred / (grouped.std(dim=1, keepdim=True) + 1e-4)
    elif scale_rewards == "batch":
        centred = centred / (grouped.reshape(-1).std() + 1e-4)
    return centred.reshape(-1)


# ----------------------------------------------------------------------------- TRL plumbing
def trl_reward_func(reward_fn: Callable[[list[str]], Any], name: str = "reward") -> Callable[..., list[float]]:
    """``reward_fn`` (texts -> ``(N,)`` rewards) as TRL's ``reward_funcs`` want it:
    ``f(prompts, completions, **kwargs) -> list[float]``, scoring prompt + completion."""
    def reward_func(prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
        scores = reward_fn([p + c for p, c in zip(prompts, completions)])
        return [float(s) for s in scores]

    reward_func.__name__ = name
    return reward_func


def rl_config(config_class: type, output_dir: str, **overrides: Any):
    """An ``RLOOConfig`` or ``GRPOConfig`` for a small model on a CPU.

    Defaults (each can be overridden): ``use_cpu`` when there is no GPU,
    ``bf16=False``, ``activation_checkpointing=False``, pure sampling
    (``temperature=1``, ``top_k=0``, ``top_p=1``), no checkpoints,
    ``report_to="none"``, ``seed=0``, ``logging_steps=1``, no progress bar.
    """
    from rlhf_helpers.config import get_device

    on_cpu = get_device() == "cpu"
    settings = dict(output_dir=output_dir, use_cpu=on_cpu, bf16=False, activation_checkpointing=False,
                    temperature=1.0, top_k=0, top_p=1.0, save_strategy="no", report_to="none", seed=0,
                    logging_steps=1, disable_tqdm=True, dataloader_pin_memory=not on_cpu)
    settings.update(overrides)
    return config_class(**settings)


def prompt_dataset(queries: Sequence[torch.Tensor], tokenizer: Any):
    """A ``datasets.Dataset`` whose ``prompt`` column holds the decoded queries."""
    import datasets

    return datasets.Dataset.from_dict({"prompt": [tokenizer.decode(q, skip_special_tokens=True) for q in queries]})


class HeldOutCurve:
    """Held-out evaluations against the wall time spent *training* (the evaluations' own time is left out).

    ``evaluate(model) -> dict`` is called at the start and after every ``every``-th
    step; each point is ``{"step", "seconds", **evaluate(model)}``.

    Use with the kit's PPO: ``curve.start(model)``, then ``curve.step(i + 1, model)``
    from ``PPOTrainer.train(..., callback=...)``; with a TRL trainer, pass
    ``callbacks=[curve.callback()]``.
    """

    def __init__(self, evaluate: Callable[[Any], dict], every: int = 1):
        self.evaluate, self.every = evaluate, int(every)
        self.points: list[dict] = []
        self.seconds = 0.0
        self._since: float | None = None

    def __getstate__(self) -> dict:
        """A pickled curve (a run sent back by :func:`rlhf_helpers.parallel.run_side_by_side`) keeps its
        points and seconds; its ``evaluate``, often a lambda, stays behind (None)."""
        return {**self.__dict__, "evaluate": None, "_since": None}

    def _record(self, step: int, model: Any) -> None:
        self.points.append({"step": step, "seconds": self.seconds, **self.evaluate(model)})

    def start(self, model: Any) -> None:
        self.points, self.seconds = [], 0.0
        self._record(0, model)
        self._since = time.perf_counter()

    def step(self, step: int, model: Any, force: bool = False) -> None:
        if self._since is None:
            raise RuntimeError("call start(model) before step(...).")
        self.seconds += time.perf_counter() - self._since
        if force or step % self.every == 0:
            self._record(step, model)
        self._since = time.perf_counter()

    def callback(self):
        """A ``transformers.TrainerCallback`` that calls :meth:`start` and :meth:`step`."""
        from transformers import TrainerCallback

        curve = self

        class _Curve(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                curve.start(model)

            def on_step_end(self, args, state, control, model=None, **kwargs):
                curve.step(state.global_step, model, force=state.global_step >= state.max_steps)

        return _Curve()

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """``(seconds, values of key)`` of the points."""
        return [p["seconds"] for p in self.points], [p[key] for p in self.points]


@torch.no_grad()
def trl_logprobs(trainer: Any, model: Any, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor],
                 pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of left-padded query + response sequences as TRL's RLOO/GRPO trainer computes
    them (its ``_get_per_token_logps_and_entropies``), and as the kit does (with position ids).

    Returns:
        ``(trl, kit)``, each ``(N, R)`` float32 on the CPU, ``R`` the longest response; the responses
        are right-padded there (as TRL lays out completions), and entries past a response's end are 0.
    """
    from rlhf_helpers.sequences import causal_lm_logprobs, pad_left, pad_right

    qs, qmask = pad_left(list(queries), pad_token_id)
    rs, rmask = pad_right(responses, pad_token_id)
    ids = torch.cat([qs, rs], dim=1)
    attn = torch.cat([qmask, rmask], dim=1)
    device = next(model.parameters()).device
    R = rs.shape[1]
    was_training = model.training
    model.eval()
    try:
        out = trainer._get_per_token_logps_and_entropies(model, ids.to(device), attn.to(device), R)
        trl = out[0].float().cpu()
        kit = causal_lm_logprobs(model, ids.to(device), attn.to(device), R).float().cpu()
    finally:
        model.train(was_training)
    return trl * rmask, kit * rmask


@contextlib.contextmanager
def position_ids_from_mask(model: Any) -> Iterator[None]:
    """While the context lasts, forward passes of ``model``'s backbone class that get an attention mask and no
    position ids (nor a cache) derive them from the mask: ``attention_mask.cumsum(-1) - 1``, clamped at 0.

    That is what ``generate()`` passes and what TRL 1.16's RLOO and GRPO trainers leave out, so a trainer run
    inside this context trains on the log-probs of the distribution it sampled from. The patch is on the
    backbone's class (TRL's fused LM head calls the backbone directly), for this process only; it is undone
    on exit. Calls that pass position ids, or a cache (generation), are unchanged.
    """
    backbone = type(model.base_model)
    original = backbone.forward

    @functools.wraps(original)
    def forward(self, *args, **kwargs):
        mask = kwargs.get("attention_mask")
        if kwargs.get("position_ids") is None and mask is not None and kwargs.get("past_key_values") is None:
            kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return original(self, *args, **kwargs)

    backbone.forward = forward
    try:
        yield
    finally:
        backbone.forward = original
