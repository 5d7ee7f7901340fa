"""Families of ready-made equivalents: library callables that compute the same graded value.

A lab names, per solution cell, the library's ready-made versions of what the learner writes
(metadata ``rlhf_course.equivalents``, e.g. ``transformers.TopKLogitsWarper`` for
``top_k_filter``). A library often has siblings that compute the same value under another
name (``EncoderRepetitionPenaltyLogitsProcessor`` with its penalty inverted, a private KL helper
of ``torch.distributions``, another TRL trainer's log-prob helper). :func:`expand` turns every
listed name into its whole family, so naming one names them all.

``tests/grader/test_equivalents.py`` checks the families against the installed versions: every name
resolves, and every logits processor of transformers, every categorical KL helper of torch and
every log-prob helper of TRL is either in a family or listed in :data:`UNRELATED` with a reason,
so a sibling added by a new version cannot pass unnoticed.

What a family cannot hold: the building blocks a learner is meant to use (``torch.softmax``,
``torch.topk``, ``F.log_softmax``, ``F.cross_entropy(reduction="none")``, ``Categorical``).
"""

from __future__ import annotations

FAMILIES: dict[str, tuple[str, ...]] = {
    "temperature": ("transformers.TemperatureLogitsWarper",),
    "top_k": ("transformers.TopKLogitsWarper",),
    "top_p": ("transformers.TopPLogitsWarper",),
    "repetition_penalty": ("transformers.RepetitionPenaltyLogitsProcessor",
                           "transformers.EncoderRepetitionPenaltyLogitsProcessor"),
    "token_bias": ("transformers.SequenceBiasLogitsProcessor", "transformers.NoBadWordsLogitsProcessor",
                   "transformers.SuppressTokensLogitsProcessor", "transformers.SuppressTokensAtBeginLogitsProcessor"),
    "generate": ("transformers.GenerationMixin.generate", "transformers.GenerationMixin._sample",
                 "transformers.GenerationMixin._beam_search", "transformers.GenerationMixin._assisted_decoding",
                 "transformers.TextGenerationPipeline"),
    "kl": ("torch.distributions.kl_divergence", "torch.distributions.kl._kl_categorical_categorical",
           "torch.distributions.kl._kl_onehotcategorical_onehotcategorical", "torch.distributions.kl._dispatch_kl",
           "torch.distributions.kl._KL_REGISTRY", "torch.nn.functional.kl_div",
           "torch.nn.KLDivLoss", "scipy.special.kl_div", "scipy.special.rel_entr"),
    "token_logprobs": ("transformers.loss.loss_utils.ForCausalLMLoss", "trl.trainer.utils.selective_log_softmax",
                       "trl.trainer.utils.selective_log_softmax_and_entropy",
                       "trl.trainer.utils._ChunkedLogProbFunction",
                       "trl.GRPOTrainer._get_per_token_logps_and_entropies",
                       "trl.RLOOTrainer._get_per_token_logps_and_entropies",
                       "trl.DPOTrainer.compute_ref_log_probs", "trl.KTOTrainer._compute_kl_logps"),
    "dpo_loss": ("trl.DPOTrainer.compute_loss", "trl.trainer.dpo_trainer.DPOTrainer._compute_loss"),
    "reward_loss": ("trl.RewardTrainer.compute_loss",),
    "answer_reward": ("trl.rewards.accuracy_reward", "trl.rewards.reasoning_accuracy_reward"),
    "format_reward": ("trl.rewards.think_format_reward",),
    "sem": ("scipy.stats.sem", "pandas.Series.sem", "pandas.DataFrame.sem"),
    "kappa": ("sklearn.metrics.cohen_kappa_score", "statsmodels.stats.inter_rater.cohens_kappa"),
    "wilson": ("statsmodels.stats.proportion.proportion_confint",
               "scipy.stats._result_classes.BinomTestResult.proportion_ci"),
}
"""Family -> the dotted names of its members (names a learner's code would use)."""

UNRELATED: dict[str, str] = {
    # transformers' logits processors that no lab's exercise computes
    "LogitsProcessor": "the base class a learner subclasses",
    "MinLengthLogitsProcessor": "bans EOS by total length; no exercise",
    "MinNewTokensLengthLogitsProcessor": "bans EOS for the first new tokens; the kit's decoding uses it",
    "TopHLogitsWarper": "a different cut (entropy-based)",
    "MinPLogitsWarper": "a different cut (relative to the top probability)",
    "TypicalLogitsWarper": "a different cut (typical sampling)",
    "EpsilonLogitsWarper": "a different cut (absolute probability)",
    "EtaLogitsWarper": "a different cut (entropy-dependent)",
    "NoRepeatNGramLogitsProcessor": "bans repeated n-grams, not a penalty",
    "EncoderNoRepeatNGramLogitsProcessor": "bans n-grams of the encoder input",
    "PrefixConstrainedLogitsProcessor": "constrained decoding",
    "ForcedBOSTokenLogitsProcessor": "forces one token at step 0",
    "ForcedEOSTokenLogitsProcessor": "forces EOS at the length limit",
    "InfNanRemoveLogitsProcessor": "cleans nan/inf",
    "ExponentialDecayLengthPenalty": "a length-dependent EOS boost",
    "LogitNormalization": "log-softmax of the scores",
    "WhisperTimeStampLogitsProcessor": "speech", "WhisperNoSpeechDetection": "speech",
    "ClassifierFreeGuidanceLogitsProcessor": "guidance", "UnbatchedClassifierFreeGuidanceLogitsProcessor": "guidance",
    "AlternatingCodebooksLogitsProcessor": "audio codebooks", "BarkEosPrioritizerLogitsProcessor": "audio",
    "WatermarkLogitsProcessor": "watermarking", "SynthIDTextWatermarkLogitsProcessor": "watermarking",
    "DiaClassifierFreeGuidanceLogitsProcessor": "audio", "DiaEOSChannelFilterLogitsProcessor": "audio",
    "DiaEOSDelayPatternLogitsProcessor": "audio",
    # TRL helpers named like log-probabilities that compute something else
    "DPOTrainer._precompute_ref_logps": "fills a dataset column with compute_ref_log_probs",
    "KTOTrainer._precompute_ref_logps": "fills a dataset column",
    "KTOTrainer.compute_ref_log_probs": "KTO's reference log-probs of a batch (unpaired)",
}
"""Library names a family check meets that compute no graded value, with why (for the test)."""


def family_of(path: str) -> str | None:
    """The family that holds ``path`` (as the family spells it), or None."""
    return next((name for name, members in FAMILIES.items() if path in members), None)


def expand(paths: list[str]) -> list[str]:
    """``paths`` with every member of the family of each (in order, without repeats)."""
    out: list[str] = []
    for path in paths:
        family = family_of(path)
        for p in (path, *(FAMILIES[family] if family else ())):
            if p not in out:
                out.append(p)
    return out


def canonical(path: str) -> str | None:
    """``module:Qual.name`` of where the callable ``path`` names is defined (``transformers.
    TopKLogitsWarper`` is ``transformers.generation.logits_process:TopKLogitsWarper``), so the
    grading kernel can wire it the moment that module is loaded; None when it does not resolve
    here (imports the library: call it in the grader, not in a kernel)."""
    from rlhf_helpers.observations import _resolve

    try:
        found = _resolve(path)
    except Exception:  # noqa: BLE001 - a library that fails to import has nothing to wire
        return None
    if found is None:
        return None
    owner, attr = found
    obj = getattr(owner, attr)
    module = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if isinstance(owner, type) and not isinstance(obj, type):  # a method: its class's module
        module, qual = getattr(owner, "__module__", None), f"{getattr(owner, '__qualname__', '')}.{attr}"
    if not module or not qual or "<" in qual:
        return None
    return f"{module}:{qual}"
