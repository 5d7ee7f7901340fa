"""Load the policy (a causal LM) and the reward model (a sentiment pipeline).

The same ``from_pretrained`` / ``pipeline`` calls load the offline tiny world
(default) or the real course models (``RLHF_COURSE_PROFILE=hub``):

=============  ==================================  ===========================
               tiny (default, offline)              hub
=============  ==================================  ===========================
policy         ``rlhf_helpers/world/policy``        ``lvwerra/gpt2-imdb``
reward model   ``rlhf_helpers/world/reward``        ``lvwerra/distilbert-imdb``
math policy    ``rlhf_helpers/world/math/policy``   ``Qwen/Qwen2.5-0.5B-Instruct``
=============  ==================================  ===========================

The math policy is lab 9's: in the tiny world a GPT-2 with one token per
character that has read two-digit additions (:mod:`rlhf_helpers.arithmetic`).

>>> model, tokenizer = load_policy()             # doctest: +SKIP
>>> reward_pipe = load_reward_pipeline()         # doctest: +SKIP
>>> reward_pipe("what a wonderful film", top_k=None)  # doctest: +SKIP
[{'label': 'POSITIVE', 'score': 0.99...}, {'label': 'NEGATIVE', 'score': 0.00...}]
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import torch

from rlhf_helpers._hf import no_load_bars
from rlhf_helpers.config import REBUILD_HINT, Profile, get_device, get_profile, settle_threads


class WorldError(RuntimeError):
    """The tiny world's files are missing or damaged."""


def verify_world_folder(folder: Path) -> None:
    """Check the files of one world folder (``policy``, ``reward``, ``math/policy``) against the
    ``MANIFEST.json`` beside it.

    Raises :class:`WorldError` naming the first missing or changed file.
    """
    root = folder.parent
    manifest_path = root / "MANIFEST.json"
    if not folder.is_dir():
        raise WorldError(f"The tiny world has no {folder.name!r} folder at {folder}. {REBUILD_HINT}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise WorldError(f"The tiny world at {root} has no MANIFEST.json. {REBUILD_HINT}") from None
    except json.JSONDecodeError as exc:
        raise WorldError(f"{manifest_path} is not valid JSON ({exc}). {REBUILD_HINT}") from None
    prefix = folder.name + "/"
    for rel, info in manifest.get("files", {}).items():
        if not rel.startswith(prefix):
            continue
        path = root / rel
        if not path.is_file():
            raise WorldError(f"Model file {path} is missing. {REBUILD_HINT}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != info["sha256"]:
            raise WorldError(
                f"Model file {path} is corrupt or was changed (checksum mismatch). "
                f"Restore it with `git checkout -- {path.parent}` or: {REBUILD_HINT}"
            )


def _source(profile: Profile, part: str) -> str:
    source = getattr(profile, part)
    if profile.offline:
        verify_world_folder(Path(source))
    return source


def _hub_error(what: str, repo: str, exc: Exception) -> RuntimeError:
    return RuntimeError(
        f"Could not load the {what} {repo!r} for the 'hub' profile ({type(exc).__name__}: {exc}). "
        "The hub profile needs access to the Hugging Face Hub or a copy in the local cache. "
        "Offline, use the default profile: unset RLHF_COURSE_PROFILE or set it to 'tiny'."
    )


def _from_pretrained(prof: Profile, part: str, model_class):
    """``(model, tokenizer)`` of the profile's ``policy`` or ``reward``, with an error that says what to do."""
    from transformers import AutoTokenizer

    source = _source(prof, part)
    what = {"policy": "policy", "reward": "reward model", "math_policy": "math policy"}[part]
    try:
        with no_load_bars():
            return model_class.from_pretrained(source), AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        if prof.offline:
            raise WorldError(f"Could not load the tiny {what} from {source}: {exc}. {REBUILD_HINT}") from exc
        raise _hub_error(what, source, exc) from exc


def load_policy(profile: str | Profile | None = None, device: str | None = None):
    """Load the policy model and its tokenizer.

    Args:
        profile: ``"tiny"`` or ``"hub"``; default ``$RLHF_COURSE_PROFILE`` or ``"tiny"``.
        device: ``"cpu"``, ``"cuda"``...; default the GPU when there is one.

    Returns:
        ``(model, tokenizer)``: a ``GPT2LMHeadModel`` in eval mode on ``device``,
        and its tokenizer, set to pad on the left with EOS (what batched
        generation with a decoder-only model needs).
    """
    return _causal_lm(get_profile(profile), "policy", device)


def load_math_policy(profile: str | Profile | None = None, device: str | None = None):
    """Load lab 9's policy, a causal LM that answers problems a program can check, and its tokenizer.

    Args:
        profile: ``"tiny"`` (a GPT-2 with one token per character, trained on two-digit additions)
            or ``"hub"`` (``Qwen/Qwen2.5-0.5B-Instruct``); default ``$RLHF_COURSE_PROFILE`` or ``"tiny"``.
        device: ``"cpu"``, ``"cuda"``...; default the GPU when there is one.

    Returns:
        ``(model, tokenizer)`` as :func:`load_policy` returns them: eval mode, padding on the left.
    """
    return _causal_lm(get_profile(profile), "math_policy", device)


def _causal_lm(prof: Profile, part: str, device: str | None):
    """The profile's causal LM ``part`` in eval mode on ``device``, its tokenizer padding on the left."""
    from transformers import AutoModelForCausalLM

    model, tokenizer = _from_pretrained(prof, part, AutoModelForCausalLM)
    if tokenizer.pad_token is None:  # GPT-2 has no pad token; course code pads with EOS
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model = model.to(get_device(device)).eval()
    settle_threads(model)
    return model, tokenizer


def load_reward_pipeline(profile: str | Profile | None = None, device: str | None = None):
    """Load the sentiment classifier as a ``pipeline("sentiment-analysis")``.

    Its labels are ``NEGATIVE`` and ``POSITIVE``. Call it with ``top_k=None`` to
    get both scores per text (sorted by score, so select by label), and with
    ``function_to_apply="none"`` for raw logits.

    Both loaders settle the kernel's CPU threads for the models they load
    (:func:`rlhf_helpers.config.settle_threads`: one for the tiny world).
    """
    from transformers import AutoModelForSequenceClassification, pipeline

    model, tokenizer = _from_pretrained(get_profile(profile), "reward", AutoModelForSequenceClassification)
    settle_threads(model.to(get_device(device)))
    return pipeline("sentiment-analysis", model=model.eval(), tokenizer=tokenizer, device=get_device(device))


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` in eval mode with gradients off (a reference model)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
