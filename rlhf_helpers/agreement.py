"""How far judgements agree, and what a blind comparison says (lab 8).

* :func:`cohens_kappa` measures two raters' agreement beyond chance (a person
  and the classifier), :func:`fleiss_kappa` that of a class's many labellers;
* :func:`bootstrap_interval` gives any statistic of labelled items a percentile
  interval, and :func:`wilson_interval` a win rate its confidence interval;
* :func:`pair_scores`, :func:`preferred_from_scores` and
  :func:`classifier_preferences` make the classifier a rater of the same pairs;
* :func:`judged_wins` tallies a blind comparison (:func:`rlhf_helpers.labelling.blind_pairs`),
  :func:`classifier_tally` does the same with the classifier as the judge, and
  :func:`win_rate` reads a tally as a rate.

``cohens_kappa`` and ``wilson_interval`` are graded in lab 8, so hidden while it is graded.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "cohens_kappa", "fleiss_kappa", "bootstrap_interval", "wilson_interval", "pair_scores", "preferred_from_scores",
    "classifier_preferences", "classifier_tally", "judged_wins", "win_rate",
]


def cohens_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two raters' labels of the same items (the kit's answer to lab 8)."""
    if len(a) != len(b):
        raise ValueError(f"cohens_kappa needs two label lists of one length, got {len(a)} and {len(b)}")
    if not a:
        raise ValueError("cohens_kappa needs at least one label")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if expected == 1.0:
        return float("nan")
    return (observed - expected) / (1.0 - expected)


def bootstrap_interval(statistic: Callable[..., float], *columns: Sequence, n_boot: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of ``statistic(*columns)``, resampling rows (items) with replacement.

    Resamples where the statistic is undefined (NaN, or raises ValueError) are left out.
    """
    import numpy as np

    n = len(columns[0])
    if n == 0 or any(len(c) != n for c in columns):
        raise ValueError("bootstrap_interval needs columns of one non-zero length")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            v = float(statistic(*[[c[i] for i in idx] for c in columns]))
        except ValueError:
            continue
        if not math.isnan(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (the kit's answer to lab 8): ``0 <= low <= p <= high <= 1``.

    At 0 and n successes the formula's end lands on the proportion itself, where rounding can put it a
    hair on the wrong side (21 of 21 gives 0.9999999999999999): the ends are clamped to the proportion.
    """
    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes should be in [0, n], got {successes} of {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(max(0.0, centre - half), p)), float(max(min(1.0, centre + half), p))


def pair_scores(reward_pipeline, labels: Sequence[dict], batch_size: int = 64) -> list[tuple[float, float]]:
    """The classifier's P(POSITIVE) of prompt + each completion of every label's pair (in ``completions`` order).

    The classifier reads prompt + completion, as when the world's pairs were ranked.
    """
    from rlhf_helpers.finetune import positive_scores

    texts = [r["prompt"] + c for r in labels for c in r["completions"]]
    scores = positive_scores(reward_pipeline, texts, batch_size=batch_size) if texts else []
    return [(scores[i], scores[i + 1]) for i in range(0, len(scores), 2)]


def preferred_from_scores(scores: Iterable[tuple[float, float]]) -> list[int | None]:
    """For each pair's ``(s0, s1)`` (as :func:`pair_scores` gives them), the index of the higher (None on a tie):
    the classifier's choice, comparable with a label's ``preferred``."""
    return [None if s0 == s1 else int(s1 > s0) for s0, s1 in scores]


def classifier_preferences(reward_pipeline, labels: Sequence[dict]) -> list[int | None]:
    """For each label's pair, the index of the completion the classifier scores higher (None on a tie).

    When the scores are needed too, call :func:`pair_scores` once and :func:`preferred_from_scores` on them.
    """
    return preferred_from_scores(pair_scores(reward_pipeline, labels))


def classifier_tally(reward_pipeline, labels: Sequence[dict], model: str = "tuned") -> dict[str, int]:
    """:func:`judged_wins` with the classifier as the judge, on the same pairs (the person's skips left out).

    ``labels`` may also be pairs nobody has judged yet (:func:`blind_pairs`): the classifier judges them all.
    """
    judged = [r for r in labels if model in (r.get("sources") or []) and r.get("choice") != "skip"]
    relabelled = []
    for r, pref in zip(judged, classifier_preferences(reward_pipeline, judged)):
        choice = "tie" if pref is None else ("A" if pref == r.get("shown_first", 0) else "B")
        relabelled.append(dict(r, choice=choice, preferred=pref, shown_first=r.get("shown_first", 0)))
    return judged_wins(relabelled, model)


def win_rate(tally: dict[str, int]) -> tuple[float, int]:
    """``(wins + ties / 2) / n`` and ``n = wins + losses + ties`` of a :func:`judged_wins` tally (NaN when n is 0)."""
    n = tally["wins"] + tally["losses"] + tally["ties"]
    return ((tally["wins"] + tally["ties"] / 2) / n if n else float("nan")), n


def judged_wins(labels: Sequence[dict], model: str = "tuned") -> dict[str, int]:
    """Wins, losses and ties of ``model`` in blind labels (``sources`` name the model of each completion)."""
    tally = {"wins": 0, "losses": 0, "ties": 0, "skipped": 0}
    for r in labels:
        sources = r.get("sources") or []
        if model not in sources:
            continue
        if r["choice"] == "skip":
            tally["skipped"] += 1
        elif r["choice"] == "tie":
            tally["ties"] += 1
        elif sources[r["preferred"]] == model:
            tally["wins"] += 1
        else:
            tally["losses"] += 1
    return tally


def fleiss_kappa(items: Sequence[Sequence]) -> float:
    """Fleiss' kappa over items each rated by two or more raters (the counts may differ per item).

    ``items`` holds, per item, the categories its raters chose. Items with fewer
    than two ratings are left out; NaN when no item is left or chance agreement is 1.
    """
    rated = [list(r) for r in items if len(r) >= 2]
    if not rated:
        return float("nan")
    totals: Counter = Counter()
    agreement = []
    for ratings in rated:
        counts = Counter(ratings)
        m = len(ratings)
        totals.update(counts)
        agreement.append((sum(c * c for c in counts.values()) - m) / (m * (m - 1)))
    n_ratings = sum(totals.values())
    p_e = sum((c / n_ratings) ** 2 for c in totals.values())
    p_o = sum(agreement) / len(agreement)
    return float("nan") if p_e == 1.0 else (p_o - p_e) / (1 - p_e)
