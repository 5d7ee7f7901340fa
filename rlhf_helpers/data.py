"""The datasets: movie reviews and preference pairs.

==========================================  ================================  =======================
function                                     tiny (default, offline)            hub
==========================================  ================================  =======================
``load_reviews(split)``                      the grammar's reviews              ``stanfordnlp/imdb``
``load_raw_preference_records(split)``       shipped with the world             built from the hub models
``load_preference_pairs(split)``             ``prompt`` / ``chosen`` / ``rejected`` from the raw records
``load_math_problems(split)``                two-digit additions                ``openai/gsm8k``
==========================================  ================================  =======================

Splits are ``"train"`` and ``"test"`` (lab 9's problems also ``"sft"``). Labels are ``1`` positive, ``0`` negative.
A raw preference record is ``{"prefix": str, "completions": [str, str],
"scores": [float, float]}``: two continuations sampled from the policy, scored
by the reward model's POSITIVE logit on prefix + continuation.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

from rlhf_helpers.config import REBUILD_HINT, Profile, get_profile

SPLITS = ("train", "test")
MATH_SPLITS = ("sft", "train", "test")
"""Lab 9's problems: ``sft`` to learn the answer format on, ``train`` for reinforcement learning, ``test`` held out."""
MATH_INSTRUCTION = "\nGive the final number as <answer>N</answer>.\n"
"""Appended to a GSM8K question (hub profile) to make lab 9's prompt."""
CARRIES = {"record_to_pair": ["to_preference_format"]}
"""Helpers that do a graded function's work under another name: hidden with it while its lab is
graded (``record_to_pair`` is lab 6's ``to_preference_format``; lab 6 does not use it)."""


# ----------------------------------------------------------------------------- files
def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    # mtime=0 keeps the gzip bytes identical across builds (deterministic files)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        for row in rows:
            f.write((json.dumps(row, sort_keys=True) + "\n").encode())


def read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]



# ----------------------------------------------------------------------------- datasets
def _check_split(split: str, splits: tuple[str, ...] = SPLITS) -> str:
    if split not in splits:
        raise ValueError(f"Unknown split {split!r}: expected one of {list(splits)}.")
    return split


def _world_file(folder: str, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        from rlhf_helpers.models import WorldError

        raise WorldError(f"The tiny world has no data file {path}. {REBUILD_HINT}")
    return path


def _read(path: Path) -> list[dict]:
    from rlhf_helpers.models import WorldError

    try:
        return read_jsonl_gz(path)
    except (OSError, EOFError, ValueError) as exc:
        raise WorldError(f"Data file {path} is corrupt ({exc}). {REBUILD_HINT}") from exc


def load_reviews(split: str = "train", profile: str | Profile | None = None):
    """Movie reviews as a ``datasets.Dataset`` with columns ``text`` and ``label``."""
    import datasets

    _check_split(split)
    prof = get_profile(profile)
    if prof.offline:
        rows = _read(_world_file(prof.reviews, f"reviews_{split}.jsonl.gz"))
        return datasets.Dataset.from_dict({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]})
    return datasets.load_dataset(prof.reviews, split=split)


def load_math_problems(split: str = "train", profile: str | Profile | None = None):
    """Lab 9's problems as a ``datasets.Dataset`` with columns ``prompt`` and ``answer`` (an integer, as text).

    Tiny profile: two-digit additions (``"47+38="``, ``"85"``): ``sft`` holds problems without a
    carry, ``train`` and ``test`` problems with one, and no ``sft`` or ``test`` problem is in the math
    policy's corpus (:mod:`rlhf_helpers.arithmetic`). Hub profile: GSM8K's grade-school word problems,
    the question followed by :data:`MATH_INSTRUCTION`, the answer the number after ``####``; ``sft`` is
    the first 1,000 training problems, ``train`` the rest, ``test`` GSM8K's test split.
    """
    import datasets

    _check_split(split, MATH_SPLITS)
    prof = get_profile(profile)
    if prof.offline:
        rows = _read(_world_file(prof.math_problems, f"math_{split}.jsonl.gz"))
        return datasets.Dataset.from_dict({"prompt": [r["prompt"] for r in rows], "answer": [r["answer"] for r in rows]})
    raw = datasets.load_dataset(prof.math_problems, "main", split="test" if split == "test" else "train")
    if split != "test":
        raw = raw.select(range(1000) if split == "sft" else range(1000, len(raw)))
    return raw.map(lambda r: {"prompt": r["question"] + MATH_INSTRUCTION,
                              "answer": r["answer"].split("####")[-1].strip().replace(",", "")},
                   remove_columns=raw.column_names)


def _hub_preference_cache(split: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlhf-course"
    return root / f"hub_preferences_{split}.jsonl.gz"


def load_raw_preference_records(split: str = "train", profile: str | Profile | None = None) -> list[dict]:
    """Raw records ``{"prefix", "completions": [a, b], "scores": [sa, sb]}`` (see module doc).

    In the hub profile the records are sampled from ``lvwerra/gpt2-imdb`` and
    scored by ``lvwerra/distilbert-imdb`` on the first words of IMDb reviews the
    first time they are asked for (a few minutes on a GPU), then cached.
    """
    _check_split(split)
    prof = get_profile(profile)
    if prof.offline:
        return _read(_world_file(prof.reviews, f"preferences_{split}.jsonl.gz"))
    cache = _hub_preference_cache(split)
    if cache.is_file():
        return _read(cache)
    from rlhf_helpers.models import load_policy, load_reward_pipeline

    model, tokenizer = load_policy(prof)
    pipe = load_reward_pipeline(prof)
    n = 2000 if split == "train" else 200
    texts = load_reviews(split, prof).shuffle(seed=0)["text"][:n]
    prefixes = review_prefixes(texts, random.Random(0), min_words=3, max_words=8)
    records = make_preference_records(model, tokenizer, pipe, prefixes, max_new_tokens=32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(cache, records)
    return records


def record_to_pair(record: dict) -> dict | None:
    """``{"prompt", "chosen", "rejected"}`` from a raw record; ``None`` for a tie."""
    (a, b), (sa, sb) = record["completions"], record["scores"]
    if sa == sb:
        return None
    chosen, rejected = (a, b) if sa > sb else (b, a)
    return {"prompt": record["prefix"], "chosen": chosen, "rejected": rejected}


def load_preference_pairs(split: str = "train", profile: str | Profile | None = None):
    """Preference pairs as a ``datasets.Dataset`` with ``prompt``, ``chosen``, ``rejected``.

    The chosen continuation is the one the reward model scores higher; ties are
    dropped. This is TRL's "standard" preference format: ``chosen`` and
    ``rejected`` hold only the continuation, which follows ``prompt`` directly.
    """
    import datasets

    pairs = [p for p in map(record_to_pair, load_raw_preference_records(split, profile)) if p is not None]
    return datasets.Dataset.from_dict({k: [p[k] for p in pairs] for k in ("prompt", "chosen", "rejected")})


# ----------------------------------------------------------------------------- preference records
def review_prefixes(texts: list[str], rng: random.Random, min_words: int = 2, max_words: int = 5) -> list[str]:
    """The first 2-5 words of each text (a prompt for the policy)."""
    return [" ".join(t.split()[: rng.randint(min_words, max_words)]) for t in texts]


def make_preference_records(model, tokenizer, reward_pipeline, prefixes: list[str], max_new_tokens: int,
                            desc: str = "preference pairs") -> list[dict]:
    """Raw records ``{"prefix", "completions": [a, b], "scores": [sa, sb]}``.

    Two continuations of each prefix are sampled from the policy and scored
    (prefix + continuation) by the reward model's POSITIVE logit. Shared by the
    tiny world and the hub profile.
    """
    from rlhf_helpers.rewards import pipeline_rewards
    from rlhf_helpers.sampling import sample_completions

    completions = sample_completions(model, tokenizer, prefixes, 2, max_new_tokens, desc=desc)
    texts = [p + c for p, cs in zip(prefixes, completions) for c in cs]
    scores = pipeline_rewards(reward_pipeline, texts, kind="logit", batch_size=256).tolist()
    return [
        {"prefix": p, "completions": cs, "scores": [round(scores[2 * i], 5), round(scores[2 * i + 1], 5)]}
        for i, (p, cs) in enumerate(zip(prefixes, completions))
    ]
