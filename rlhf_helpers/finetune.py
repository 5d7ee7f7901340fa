"""DPO fine-tuning with Hugging Face TRL: data, configuration, trainer, metrics, saving, inference.

The working recipe of lab 6, one function per step:

1. **Data.** :func:`to_preference_format` turns a raw record
   ``{"prefix", "completions": [a, b], "scores": [sa, sb]}`` into TRL's standard
   preference format ``{"prompt", "chosen", "rejected"}``; :func:`prepare_datasets`
   applies it with ``datasets.map`` and splits train / test.
2. **Models.** :func:`load_dpo_models` loads the policy, a frozen reference copy
   and the tokenizer (tiny or hub profile, device chosen automatically);
   :func:`make_lora_config` gives a peft ``LoraConfig`` for the adapter variant.
3. **Trainer.** :func:`make_dpo_config` (settings that train on a CPU) and
   :func:`build_dpo_trainer` (``trl.DPOTrainer`` for full fine-tuning or LoRA).
4. **Metrics.** :func:`training_metrics` reads loss and the implied rewards
   (chosen, rejected, accuracies, margins) from ``trainer.state.log_history``.
5. **Saving.** :func:`save_tuned_model` (merging a LoRA adapter into the
   weights) and :func:`load_tuned_model`.
6. **Inference.** :func:`compare_generations` samples the reference and the
   tuned model on the same prompts and scores both with the reward pipeline;
   :func:`positive_share` and :func:`reward_win_rate` summarise.

:func:`to_preference_format`, :func:`prepare_datasets`, :func:`make_dpo_config`
and :func:`reward_win_rate` are the kit's answers to lab 6's exercises. Helpers
that need one of them take it as a parameter (``compare_generations(...,
win_rate_fn=...)``), so the lab can pass the learner's own; ``CARRIES`` names the
private helpers that do part of an exercise's work, which the grading sandbox of
lab 6 hides together with the answers (see :mod:`autograder.answer_key`).

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
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rlhf_helpers import _args
from rlhf_helpers.config import get_device

__all__ = [
    "to_preference_format",
    "prepare_datasets",
    "make_dpo_config",
    "reward_win_rate",
    "positive_scores",
    "positive_share",
    "load_dpo_models",
    "make_lora_config",
    "build_dpo_trainer",
    "count_parameters",
    "training_metrics",
    "TrainingMetrics",
    "save_tuned_model",
    "load_tuned_model",
    "compare_generations",
    "Comparison",
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
        raise ValueError(f"A preference record must be a dict, got {type(record).__name__}.")
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


def _is_tie(record: dict) -> bool:
    return record["scores"][0] == record["scores"][1]


def to_preference_format(record: dict) -> dict:
    """Reformat one raw record into TRL's standard preference format.

    Args:
        record: ``{"prefix": str, "completions": [a, b], "scores": [sa, sb]}``.

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


# ----------------------------------------------------------------------------- 3. configuration
def make_dpo_config(output_dir: str, **overrides):
    """A ``trl.DPOConfig`` that trains the tiny policy on a CPU within seconds.

    Defaults (each can be overridden by keyword): ``use_cpu`` when no GPU is
    present (``rlhf_helpers.config.get_device()``), ``bf16=False``,
    ``activation_checkpointing=False``, ``learning_rate=3e-4``, ``beta=0.1``,
    batch 16, ``max_steps=150``, ``max_length=128``, ``logging_steps=5``,
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
        "max_steps": 150,                  # about 1.3 epochs of the tiny world's 1,800 training pairs
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


# ----------------------------------------------------------------------------- scoring
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


# ----------------------------------------------------------------------------- 2. models
def load_dpo_models(profile: str | None = None, device: str | None = None):
    """The policy to tune, a frozen reference copy, and the tokenizer.

    Both models come from ``from_pretrained`` (see :func:`rlhf_helpers.models.load_policy`),
    on ``device`` (default: the GPU when there is one). The policy is returned in
    train mode; the reference is an independent copy in eval mode without gradients.

    Returns:
        ``(model, ref_model, tokenizer)``.
    """
    from rlhf_helpers.models import frozen_copy, load_policy

    model, tokenizer = load_policy(profile, device=get_device(device))
    return model.train(), frozen_copy(model), tokenizer


def make_lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.0,
                     target_modules: Sequence[str] = ("c_attn", "c_proj", "c_fc")):
    """A peft ``LoraConfig`` for GPT-2's attention and MLP projections.

    GPT-2 implements its projections as ``Conv1D`` (weights stored transposed),
    hence ``fan_in_fan_out=True``. Adapting only ``c_attn`` barely moves the
    tiny policy; attention and MLP together (the default) do.
    """
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      fan_in_fan_out=True, bias="none", task_type="CAUSAL_LM")


def _quiet_console(trainer) -> None:
    """Keep the progress bar but stop the trainer printing every log dict to the console.

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


def build_dpo_trainer(model, tokenizer, train_dataset, eval_dataset=None, args=None, *,
                      ref_model=None, peft_config=None, output_dir: str | None = None,
                      print_logs: bool = False):
    """A ``trl.DPOTrainer`` for full fine-tuning or, with ``peft_config``, LoRA.

    Args:
        model: the policy (a ``PreTrainedModel``); with ``peft_config`` TRL wraps
            it in a ``PeftModel`` in place.
        tokenizer: passed as ``processing_class`` (TRL's name for it).
        train_dataset / eval_dataset: ``datasets.Dataset`` with ``prompt``,
            ``chosen``, ``rejected`` (the prompt column must have that name:
            otherwise TRL silently takes the common prefix as the prompt).
        args: a ``DPOConfig``; default :func:`make_dpo_config` in a fresh
            temporary folder (or ``output_dir``).
        ref_model: the frozen reference. For full fine-tuning, pass a copy
            (:func:`load_dpo_models` makes one); when ``None`` TRL reloads it from
            ``model.config._name_or_path``, which fails for a model built in
            memory. With LoRA leave it ``None``: the reference is the base model
            with the adapter disabled.
        peft_config: a peft config (see :func:`make_lora_config`) or ``None``.
        print_logs: also print every log dict to the console (off: read them
            from ``trainer.state.log_history`` or plot them instead).
    """
    import datasets
    from trl import DPOTrainer

    for name, ds in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if ds is None:
            continue
        if not isinstance(ds, datasets.Dataset):
            raise TypeError(f"{name} must be a datasets.Dataset, got {type(ds).__name__}.")
        missing = [c for c in PREFERENCE_COLUMNS if c not in ds.column_names]
        if missing:
            raise ValueError(f"{name} lacks the column(s) {missing}; it has {ds.column_names}. "
                             "DPOTrainer needs 'prompt', 'chosen' and 'rejected'.")
    if args is None:
        args = make_dpo_config(output_dir or tempfile.mkdtemp(prefix="dpo-"))
    if peft_config is not None and ref_model is not None:
        raise ValueError("With peft_config, leave ref_model=None: the reference is the base model "
                         "with the adapter disabled.")
    if peft_config is None and ref_model is model:
        raise ValueError("ref_model must be a separate copy of the model (see rlhf_helpers.models.frozen_copy).")
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)
    if not print_logs:
        _quiet_console(trainer)
    return trainer


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# ----------------------------------------------------------------------------- 4. metrics
@dataclass
class TrainingMetrics:
    """Series read from a trainer's log history: ``steps[key]`` and ``values[key]`` align."""

    steps: dict[str, list[int]] = field(default_factory=dict)
    values: dict[str, list[float]] = field(default_factory=dict)

    def last(self, key: str) -> float:
        """The last logged value of ``key``."""
        if not self.values.get(key):
            raise KeyError(f"No values logged for {key!r}; logged keys: {sorted(self.values)}.")
        return self.values[key][-1]

    def __contains__(self, key: str) -> bool:
        return bool(self.values.get(key))


def training_metrics(log_history: list[dict]) -> TrainingMetrics:
    """Collect every numeric series from ``trainer.state.log_history``.

    The history is a list of dicts, one per logging event, each with ``step``
    and the metrics logged then: ``loss``, ``rewards/chosen``... during training,
    ``eval_loss``, ``eval_rewards/chosen``... after an evaluation, and a final
    summary (``train_runtime``...). Entries without a value for a key are skipped.
    """
    if not isinstance(log_history, list) or not all(isinstance(e, dict) for e in log_history):
        raise TypeError("log_history must be a list of dicts (trainer.state.log_history).")
    metrics = TrainingMetrics()
    for entry in log_history:
        step = int(entry.get("step", 0))
        for key, value in entry.items():
            if key in ("step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metrics.steps.setdefault(key, []).append(step)
            metrics.values.setdefault(key, []).append(float(value))
    return metrics


# ----------------------------------------------------------------------------- 5. saving
def save_tuned_model(model, tokenizer, path: str | Path) -> Path:
    """Save a tuned policy with ``save_pretrained``, merging a LoRA adapter first.

    A ``PeftModel`` is merged into a copy of its base weights
    (``merge_and_unload``), so the folder holds a plain model any
    ``from_pretrained`` can load; ``model`` itself is left unchanged.
    """
    import copy

    from peft import PeftModel

    path = Path(path)
    if isinstance(model, PeftModel):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_tuned_model(path: str | Path, device: str | None = None):
    """Load a policy saved by :func:`save_tuned_model`: ``(model, tokenizer)`` in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_helpers.models import _no_load_bars

    with _no_load_bars():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(get_device(device)).eval(), tokenizer


# ----------------------------------------------------------------------------- 6. inference
@dataclass
class Comparison:
    """Reference and tuned samples on the same prompts, with their P(POSITIVE) and the win rate.

    ``win_rate`` is what the ``win_rate_fn`` given to :func:`compare_generations`
    returned for (reference texts, tuned texts): the share of prompts where the
    tuned sample wins.
    """

    prompts: list[str]
    reference: list[str]
    tuned: list[str]
    reference_scores: list[float]
    tuned_scores: list[float]
    win_rate: float | None = None

    @property
    def reference_share(self) -> float:
        return sum(s > 0.5 for s in self.reference_scores) / len(self.prompts)

    @property
    def tuned_share(self) -> float:
        return sum(s > 0.5 for s in self.tuned_scores) / len(self.prompts)

    def mean_words(self, which: str) -> float:
        """Mean length in words of the ``"reference"`` or ``"tuned"`` completions."""
        texts = getattr(self, which)
        return sum(len(t.split()) for t in texts) / len(texts)

    def table(self, n: int = 5) -> str:
        """The first ``n`` prompts side by side, as text."""
        rows = []
        for p, r, t, sr, st in list(zip(self.prompts, self.reference, self.tuned,
                                        self.reference_scores, self.tuned_scores))[:n]:
            rows.append(f"prompt: {p!r}\n  reference [{sr:.2f}] {p}{r}\n  tuned     [{st:.2f}] {p}{t}")
        return "\n".join(rows)


def _sample(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int, batch_size: int) -> list[str]:
    from rlhf_helpers.sampling import sample_completions

    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        out = sample_completions(model, tokenizer, prompts, 1, max_new_tokens, batch_size=batch_size,
                                 desc="sampling")
    finally:
        model.train(was_training)
    return [c[0] for c in out]


class _ScoredPipeline:
    """The reward pipeline, answering ``top_k=None`` calls on texts it has already scored from memory.

    :func:`compare_generations` scores every text once; the win-rate function it
    is given then reads the same outputs (in the pipeline's own format) instead of
    running the classifier again. Any other call goes to the pipeline itself.
    """

    _PASSED = frozenset({"top_k", "batch_size", "truncation", "padding"})

    def __init__(self, reward_pipeline, texts: list[str], outputs: list[list[dict]]):
        self.pipeline = reward_pipeline
        self._known = dict(zip(texts, outputs))

    def __call__(self, texts, *args: Any, **kwargs: Any):
        single = isinstance(texts, str)
        batch = [texts] if single else texts
        if (args or "top_k" not in kwargs or kwargs["top_k"] is not None or set(kwargs) - self._PASSED
                or not isinstance(batch, (list, tuple)) or not all(isinstance(t, str) and t in self._known for t in batch)):
            return self.pipeline(texts, *args, **kwargs)
        outs = [[dict(d) for d in self._known[t]] for t in batch]
        return outs[0] if single else outs

    def __getattr__(self, name: str) -> Any:  # model, tokenizer, ...: the pipeline's own
        if name in ("pipeline", "_known"):
            raise AttributeError(name)
        return getattr(self.pipeline, name)


def compare_generations(ref_model, tuned_model, tokenizer, reward_pipeline, prompts: Sequence[str],
                        max_new_tokens: int = 32, seed: int = 0, batch_size: int = 256,
                        win_rate_fn: Callable[[Any, list[str], list[str]], float] | None = None) -> Comparison:
    """Sample one completion per prompt from each model (same prompts, same seed) and score them.

    Sampling is plain (temperature 1, no top-k/top-p), as when the preference
    data was made. Each text is scored as prompt + completion by the reward
    pipeline's P(POSITIVE).

    Args:
        win_rate_fn: ``win_rate_fn(reward_pipeline, reference_texts, tuned_texts)``
            gives ``Comparison.win_rate`` (lab 6 passes the learner's
            ``reward_win_rate``; default: the kit's :func:`reward_win_rate`). It
            gets a pipeline that answers ``top_k=None`` calls on these texts from
            the scores already computed, so no text is scored twice.
    """
    prompts = _args.texts(prompts, "prompts")
    if not prompts:
        raise ValueError("compare_generations needs at least one prompt.")
    if tokenizer.padding_side != "left":
        raise ValueError("Batched generation with a decoder-only model needs tokenizer.padding_side == 'left'.")
    if win_rate_fn is None:
        win_rate_fn = reward_win_rate
    ref = _sample(ref_model, tokenizer, prompts, max_new_tokens, seed, batch_size)
    tuned = _sample(tuned_model, tokenizer, prompts, max_new_tokens, seed, batch_size)
    ref_texts, tuned_texts = [p + c for p, c in zip(prompts, ref)], [p + c for p, c in zip(prompts, tuned)]
    outputs = _all_labels(reward_pipeline, ref_texts + tuned_texts)
    scores = _positive(outputs)
    win_rate = win_rate_fn(_ScoredPipeline(reward_pipeline, ref_texts + tuned_texts, outputs), ref_texts, tuned_texts)
    return Comparison(prompts, ref, tuned, scores[: len(prompts)], scores[len(prompts):], win_rate)


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
