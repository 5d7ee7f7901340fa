"""DPO fine-tuning with Hugging Face TRL: the six steps of lab 6, and the kit's helpers around them.

The recipe, one function per step (each is the kit's answer to one of lab 6's
graded exercises, hidden while lab 6 is graded: see :mod:`autograder.grading.answer_key`):

1. **Data.** :func:`to_preference_format` turns a raw record
   ``{"prefix", "completions": [a, b], "scores": [sa, sb]}`` into TRL's standard
   preference format ``{"prompt", "chosen", "rejected"}``; :func:`prepare_datasets`
   applies it with ``datasets.map`` and splits train / test.
2. **Models.** :func:`load_dpo_models` loads the policy, a frozen reference and
   the tokenizer with ``from_pretrained`` (padding on the left);
   :func:`make_lora_config` gives a peft ``LoraConfig`` for the adapter variant.
3. **Trainer.** :func:`make_dpo_config` (settings that train on a CPU) and
   :func:`build_dpo_trainer` (``trl.DPOTrainer``, full fine-tuning or LoRA).
4. **Loss curve.** :func:`rlhf_helpers.plots.plot_log_history` draws series from
   ``trainer.state.log_history``.
5. **Saving.** :func:`save_and_reload`: ``trainer.save_model``, then
   ``from_pretrained`` from the folder.
6. **Inference.** :func:`generate_completions` (``model.generate`` on a
   left-padded batch); :func:`reward_win_rate` compares two models' texts.

Kit helpers for what lab 6 does not teach: :func:`positive_scores` and
:func:`positive_share` (the reward pipeline's P(POSITIVE), selected by label),
:func:`quiet_console` (no log dict printed at every logging step),
:func:`count_parameters` and :class:`FakeSentimentPipeline` (a test double).
``CARRIES`` names the private helpers that do part of an exercise's work,
which the grading sandbox hides together with the answers.

The DPO loss TRL minimises (Rafailov et al. 2023, Eq. 7), for a prompt x, a
chosen completion y_w and a rejected one y_l::

    L = -log σ( β [log π(y_w|x) - log π_ref(y_w|x)] - β [log π(y_l|x) - log π_ref(y_l|x)] )

TRL logs the two bracketed terms times β as ``rewards/chosen`` and
``rewards/rejected``, their difference as ``rewards/margins`` and the share of
pairs with a positive margin as ``rewards/accuracies``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rlhf_helpers import _args
from rlhf_helpers.config import get_device

__all__ = [
    "to_preference_format",
    "prepare_datasets",
    "load_dpo_models",
    "make_lora_config",
    "make_dpo_config",
    "build_dpo_trainer",
    "save_and_reload",
    "generate_completions",
    "reward_win_rate",
    "positive_scores",
    "positive_share",
    "quiet_console",
    "count_parameters",
    "REWARD_METRICS",
    "FakeSentimentPipeline",
]

REWARD_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
"""The implied-reward metrics ``DPOTrainer`` logs (``eval_`` prefixed during evaluation)."""

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")

CARRIES = {"_check_record": ["to_preference_format", "prepare_datasets"],
           "_is_tie": ["to_preference_format", "prepare_datasets"]}
"""Private helpers that do part of a lab-6 exercise's work (hidden with the answers while lab 6 is graded)."""


# ----------------------------------------------------------------------------- 1. data
def _check_record(record: Any) -> None:
    """Raise ``ValueError`` unless ``record`` is a well-formed raw preference record."""
    if not isinstance(record, Mapping):
        raise ValueError(f"A preference record must be a mapping (a dict or a dataset row), got {type(record).__name__}.")
    missing = [k for k in ("prefix", "completions", "scores") if k not in record]
    if missing:
        raise ValueError(f"Preference record is missing the key(s) {missing}; expected 'prefix', "
                         f"'completions' (two strings) and 'scores' (two numbers). Got keys {sorted(record)}.")
    if not isinstance(record["prefix"], str):
        raise ValueError(f"'prefix' must be a string, got {type(record['prefix']).__name__}.")
    for key, types in (("completions", (str,)), ("scores", (int, float))):
        value = record[key]
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            n = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
            raise ValueError(f"'{key}' must hold exactly two entries, got {n}.")
        if not all(isinstance(v, types) and not isinstance(v, bool) for v in value):
            raise ValueError(f"'{key}' must hold {' or '.join(t.__name__ for t in types)} values, got {value!r}.")
    if any(isinstance(s, float) and math.isnan(s) for s in record["scores"]):
        raise ValueError(f"'scores' must not be NaN, got {record['scores']!r}.")


def _is_tie(record: Mapping) -> bool:
    return record["scores"][0] == record["scores"][1]


def to_preference_format(record: Mapping) -> dict:
    """Reformat one raw record into TRL's standard preference format.

    Args:
        record: a mapping ``{"prefix": str, "completions": [a, b], "scores": [sa, sb]}``:
            a ``dict``, or the row ``Dataset.map`` hands over (a ``LazyRow``,
            which is a mapping but not a ``dict``). Extra keys are ignored.

    Returns:
        ``{"prompt": prefix, "chosen": ..., "rejected": ...}``: the completion
        with the higher score is ``chosen``. Completions are kept as they are
        (they continue the prompt directly, usually starting with a space).

    Raises:
        ValueError: on a tie (``sa == sb``: no preference to learn) or a
            malformed record (a missing key, not exactly two completions or scores).
    """
    _check_record(record)
    if _is_tie(record):
        raise ValueError(f"Tied scores {record['scores']!r}: a tie states no preference; drop the record.")
    (a, b), (sa, sb) = record["completions"], record["scores"]
    chosen, rejected = (a, b) if sa > sb else (b, a)
    return {"prompt": record["prefix"], "chosen": chosen, "rejected": rejected}


def prepare_datasets(records: list[dict], test_size: float = 0.1, seed: int = 0):
    """Train and test splits of preference pairs, built with ``datasets``.

    Every record is checked, ties are dropped, the rest are reformatted by
    :func:`to_preference_format` through ``Dataset.map`` (keeping the records'
    order) and split with ``Dataset.train_test_split(test_size=test_size,
    seed=seed)``, so the same seed gives the same split.

    Returns:
        ``datasets.DatasetDict`` with ``train`` and ``test``, each with exactly
        the columns ``prompt``, ``chosen``, ``rejected``.

    Raises:
        ValueError: a malformed record, or no records left after dropping ties.
    """
    import datasets

    if not isinstance(records, (list, tuple)):
        raise ValueError(f"records must be a list of dicts, got {type(records).__name__}.")
    for record in records:
        _check_record(record)
    kept = [r for r in records if not _is_tie(r)]
    if len(kept) < 2:
        raise ValueError(f"Need at least two records without a tie to split, got {len(kept)}.")
    raw = datasets.Dataset.from_dict({
        "prefix": [r["prefix"] for r in kept],
        "completions": [list(r["completions"]) for r in kept],
        "scores": [[float(s) for s in r["scores"]] for r in kept],
    })
    pairs = raw.map(to_preference_format, remove_columns=raw.column_names, desc="preference format")
    return pairs.train_test_split(test_size=test_size, seed=seed)


# ----------------------------------------------------------------------------- 2. models
def load_dpo_models(name_or_path: str, device: str = "cpu"):
    """The policy to tune, a frozen reference and the tokenizer, each with ``from_pretrained``.

    Args:
        name_or_path: a model folder (the tiny world's ``policy``) or a Hub id
            (``lvwerra/gpt2-imdb``).
        device: where both models go.

    Returns:
        ``(model, ref_model, tokenizer)``: the policy (``AutoModelForCausalLM``,
        train mode); the reference, loaded the same way as a separate copy, in
        eval mode with ``requires_grad`` off on every parameter; the tokenizer
        (``AutoTokenizer``) with a pad token (the EOS token when it has none)
        that pads on the left, as batched generation with a decoder-only model
        needs.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_helpers._hf import no_load_bars

    with no_load_bars():
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path).to(device)
        ref_model = AutoModelForCausalLM.from_pretrained(name_or_path).to(device)
    if tokenizer.pad_token is None:  # GPT-2 has none: pad with EOS (the attention mask hides it)
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    ref_model.eval().requires_grad_(False)
    return model.train(), ref_model, tokenizer


def make_lora_config(r: int = 16, alpha: int = 32, target_modules: Sequence[str] = ("c_attn", "c_proj", "c_fc")):
    """A peft ``LoraConfig`` for a causal LM (``task_type="CAUSAL_LM"``), no dropout, no bias terms.

    GPT-2 implements its projections as ``Conv1D`` (weights stored transposed),
    hence ``fan_in_fan_out=True``. Adapting only ``c_attn`` barely moves the
    tiny policy; attention and MLP together (the default) do.
    """
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(target_modules),
                      fan_in_fan_out=True, bias="none", task_type="CAUSAL_LM")


# ----------------------------------------------------------------------------- 3. configuration and trainer
def make_dpo_config(output_dir: str, **overrides):
    """A ``trl.DPOConfig`` that trains the tiny policy on a CPU within seconds.

    Defaults (each can be overridden by keyword): ``use_cpu`` when no GPU is
    present (``rlhf_helpers.config.get_device()``), ``bf16=False``,
    ``activation_checkpointing=False``, ``learning_rate=3e-4``, ``beta=0.1``,
    batch 16, ``max_steps=100``, ``max_length=128``, ``logging_steps=5``,
    ``save_strategy="no"`` (no checkpoints), ``report_to="none"``, ``seed=0``.

    Raises:
        TypeError: an override that ``DPOConfig`` does not know (e.g. the
            removed ``no_cuda`` or ``evaluation_strategy``).
    """
    from dataclasses import fields

    from trl import DPOConfig

    known = {f.name for f in fields(DPOConfig) if f.init}
    unknown = sorted(set(overrides) - known)
    if unknown:
        import difflib

        hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        said = ", ".join(f"{k!r}" + (f" (did you mean {m[0]!r}?)" if m else "") for k, m in hints.items())
        raise TypeError(f"DPOConfig has no setting {said}.")
    on_cpu = get_device() == "cpu"
    settings = {
        "output_dir": output_dir,
        "use_cpu": on_cpu,                 # TRL refuses a CPU-only machine otherwise
        "bf16": False,                     # TRL's default True is 7-8x slower on CPU; fp32 is fine for small models
        "activation_checkpointing": False,  # TRL turns it on (under its old name); pure overhead for small models
        "learning_rate": 3e-4,             # TRL's 1e-6 does not visibly move a 0.5M-parameter model
        "beta": 0.1,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "max_steps": 100,                  # about 0.9 epochs of the tiny world's 1,800 training pairs
        "max_length": 128,                 # the tiny policy has 128 positions; reviews are < 64 tokens
        "logging_steps": 5,
        "eval_strategy": "no",
        "save_strategy": "no",             # no checkpoints: the lab saves the final model itself
        "report_to": "none",
        "seed": 0,
        "dataloader_pin_memory": not on_cpu,
    }
    if "gradient_checkpointing" in overrides:  # the deprecated alias would be ignored beside the new name
        settings["activation_checkpointing"] = overrides.pop("gradient_checkpointing")
    settings.update(overrides)
    return DPOConfig(**settings)


def build_dpo_trainer(model, ref_model, tokenizer, args, train_dataset, eval_dataset=None, peft_config=None):
    """A ``trl.DPOTrainer`` for full fine-tuning or, with ``peft_config``, LoRA.

    Args:
        model: the policy; with ``peft_config`` TRL wraps it in a ``PeftModel``.
        ref_model: the frozen reference (a separate copy); ``None`` with LoRA,
            where the reference is the base model with the adapter disabled.
        tokenizer: passed as ``processing_class`` (TRL's name for it).
        args: a ``DPOConfig``.
        train_dataset / eval_dataset: ``datasets.Dataset`` with the columns
            ``prompt``, ``chosen`` and ``rejected``.

    Raises:
        ValueError: a dataset lacks one of those columns (TRL would silently
            take the common prefix of chosen and rejected as the prompt), or
            ``ref_model is model``.
    """
    from trl import DPOTrainer

    for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        missing = [] if ds is None else [c for c in PREFERENCE_COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"{name} lacks the column(s) {missing}; it has {ds.column_names}. "
                             "DPOTrainer needs 'prompt', 'chosen' and 'rejected'.")
    if ref_model is not None and ref_model is model:
        raise ValueError("ref_model must be a separate frozen copy of the model, not the model itself.")
    return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                      eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)


def quiet_console(trainer) -> None:
    """Keep the trainer's progress bar but stop it printing every log dict to the console.

    The metrics stay in ``trainer.state.log_history``; Jupyter's table view
    (``NotebookProgressCallback``) is left alone.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnlyProgressCallback(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            pass

    handler = trainer.callback_handler
    if any(type(cb) is ProgressCallback for cb in handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(BarOnlyProgressCallback)
    trainer.remove_callback(PrinterCallback)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# ----------------------------------------------------------------------------- 5. saving
def save_and_reload(trainer, output_dir: str):
    """Save the trained model and its tokenizer with ``trainer.save_model``, then load both back.

    Returns:
        ``(model, tokenizer)`` loaded from ``output_dir`` with ``from_pretrained``:
        the model in eval mode on the device of ``trainer.model``, the tokenizer
        padding on the left with a pad token. A LoRA trainer saves only its
        adapter; ``AutoModelForCausalLM.from_pretrained`` then loads the base
        model named in the adapter's config and applies the adapter.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_helpers._hf import no_load_bars

    trainer.save_model(output_dir)
    with no_load_bars():
        model = AutoModelForCausalLM.from_pretrained(output_dir)
        tokenizer = AutoTokenizer.from_pretrained(output_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(trainer.model.device).eval(), tokenizer


# ----------------------------------------------------------------------------- 6. inference
def generate_completions(model, tokenizer, prompts: list[str], max_new_tokens: int = 32, do_sample: bool = False,
                         seed: int = 0) -> list[str]:
    """One completion per prompt with ``model.generate``, all prompts in one left-padded batch.

    Greedy by default; with ``do_sample`` plain sampling (temperature 1, no
    top-k or top-p) after ``torch.manual_seed(seed)``. Each completion is the
    text of the new tokens only (``skip_special_tokens=True``), without the prompt.
    """
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left").to(model.device)
    if do_sample:
        torch.manual_seed(seed)
    sampling = {"top_k": 0, "top_p": 1.0, "temperature": 1.0} if do_sample else {}
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=do_sample,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


# ----------------------------------------------------------------------------- scoring (kit helpers)
def _all_labels(reward_pipeline, texts: list[str], batch_size: int = 64) -> list[list[dict]]:
    """The pipeline's output with every label (``top_k=None``), one list of ``{label, score}`` per text."""
    return list(reward_pipeline(texts, top_k=None, batch_size=batch_size, truncation=True)) if texts else []


def _positive(outputs: list[list[dict]]) -> list[float]:
    """P(POSITIVE) from each text's labels, read by label (``rewards.scores_from_pipe_outputs``:
    the one place the kit reads a sentiment pipeline's output)."""
    from rlhf_helpers import rewards

    return [float(x) for x in rewards.scores_from_pipe_outputs(outputs, "POSITIVE").tolist()] if outputs else []


def positive_scores(reward_pipeline, texts: Sequence[str], batch_size: int = 64) -> list[float]:
    """P(POSITIVE) of each text under the sentiment pipeline, selected by label.

    The pipeline returns each text's labels sorted by score, so the POSITIVE
    entry is looked up by its label, never by position.
    """
    texts = _args.texts(texts, "texts")
    return _positive(_all_labels(reward_pipeline, texts, batch_size))


def positive_share(reward_pipeline, texts: Sequence[str]) -> float:
    """The share of ``texts`` the reward model calls positive (P(POSITIVE) > 0.5)."""
    scores = positive_scores(reward_pipeline, texts)
    if not scores:
        raise ValueError("positive_share needs at least one text.")
    return sum(s > 0.5 for s in scores) / len(scores)


def reward_win_rate(reward_pipeline, texts_a: list[str], texts_b: list[str]) -> float:
    """The share of pairs in which ``texts_b[i]`` gets a higher P(POSITIVE) than ``texts_a[i]``.

    Scores are the pipeline's POSITIVE probability (``top_k=None``, selected by
    label). A tie (equal scores) counts as half a win.

    Returns:
        A Python float in [0, 1]; 0.5 means B is no better than A.

    Raises:
        ValueError: lists of different lengths, or empty lists.
    """
    texts_a, texts_b = _args.texts(texts_a, "texts_a"), _args.texts(texts_b, "texts_b")
    if len(texts_a) != len(texts_b):
        raise ValueError(f"texts_a and texts_b must pair up, got {len(texts_a)} and {len(texts_b)} texts.")
    if not texts_a:
        raise ValueError("reward_win_rate needs at least one pair of texts.")
    scores = positive_scores(reward_pipeline, texts_a + texts_b)
    a, b = scores[: len(texts_a)], scores[len(texts_a):]
    wins = sum(1.0 if sb > sa else 0.5 if sb == sa else 0.0 for sa, sb in zip(a, b))
    return wins / len(a)


# ----------------------------------------------------------------------------- a test double
class FakeSentimentPipeline:
    """A stand-in for ``pipeline("sentiment-analysis")`` with scores you choose.

    ``FakeSentimentPipeline({"great film": 0.9})`` gives that text P(POSITIVE)
    0.9 (unknown texts get 0.5). Like the real pipeline it returns, per text,
    only the top label by default and every label with ``top_k=None``; unlike
    it, the labels then come in a random order (seeded), so code that picks
    the positive score by position instead of by label fails. Other keyword
    arguments (``batch_size``, ``truncation``...) are accepted and ignored.
    """

    _TOP1 = object()

    def __init__(self, scores: dict[str, float], seed: int = 0):
        self.scores = {str(k): float(v) for k, v in scores.items()}
        self._rng = random.Random(seed)
        self.calls = 0

    def _labels(self, text: str) -> list[dict]:
        p = self.scores.get(text, 0.5)
        out = [{"label": "POSITIVE", "score": p}, {"label": "NEGATIVE", "score": 1.0 - p}]
        self._rng.shuffle(out)
        return out

    def __call__(self, texts, top_k: Any = _TOP1, **kwargs: Any):
        self.calls += 1
        single = isinstance(texts, str)
        outs = []
        for t in [texts] if single else list(texts):
            labels = self._labels(t)
            outs.append(labels if top_k is None else [max(labels, key=lambda d: d["score"])])
        if top_k is None:
            return outs[0] if single else outs
        return outs[0] if single else [o[0] for o in outs]
