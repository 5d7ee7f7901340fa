"""Honest answers to lab8_human_feedback in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: a generator with an XOR for the winner, Counter marginals with exact Fractions, helpers of
    # helpers for the Wilson centre and half-width; locals named like the notebook's globals (labels,
    # rows, label, counts, kappa, agreement, low, high, rate, n).
    "a": {
        "labels_to_preferences": r'''_SIDE = {"A": 0, "B": 1}                         # the side of the screen each choice names


def _rows(labels):
    """One preference row per label that chose a side, in order."""
    for label in labels:
        side = _SIDE.get(label["choice"])
        if side is None:                          # a tie or a skip states no preference
            continue
        winner = label["shown_first"] ^ side      # A is completions[shown_first], B the other one
        yield {"prompt": label["prompt"], "chosen": label["completions"][winner],
               "rejected": label["completions"][1 - winner]}


def labels_to_preferences(labels: list[dict]) -> list[dict]:
    """DPO's rows from preference labels, in order, ties and skips left out.

    Args:
        labels: dicts with "prompt", "completions" (two strings, in sampled order),
            "shown_first" (0 or 1: the index of the completion shown as A) and
            "choice" ("A", "B", "tie" or "skip"); other keys are ignored.

    Returns:
        A list of {"prompt": str, "chosen": str, "rejected": str}, one per label choosing A or B.
    """
    rows = list(_rows(labels))
    return rows
''',
        "cohens_kappa": r'''from collections import Counter
from fractions import Fraction


def cohens_kappa(a: list, b: list) -> float:
    """Cohen's kappa of two raters' labels of the same items.

    Args:
        a, b: lists of one length >= 1; a[i] and b[i] are the two raters' labels of item i.

    Returns:
        (p_o - p_e) / (1 - p_e) as a Python float; nan when p_e == 1.

    Raises:
        ValueError: lists of different lengths, or empty lists.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"two non-empty label lists of one length are needed, got {len(a)} and {len(b)}")
    n = len(a)
    counts_a, counts_b = Counter(a), Counter(b)
    agreement = sum(x == y for x, y in zip(a, b))                    # n * p_o
    chance = sum(counts_a[k] * counts_b[k] for k in counts_a.keys() | counts_b.keys())   # n^2 * p_e
    if chance == n * n:
        return float("nan")
    kappa = Fraction(n * agreement - chance, n * n - chance)       # (p_o - p_e) / (1 - p_e), exactly
    return float(kappa)
''',
        "wilson_interval": r'''def _spread(rate, n, z):
    return z * z / n


def _centre(rate, n, z):
    return (rate + _spread(rate, n, z) / 2) / (1 + _spread(rate, n, z))


def _half_width(rate, n, z):
    return z / (1 + _spread(rate, n, z)) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes / n.

    Args:
        successes: number of successes, 0 <= successes <= n (a float: ties count half).
        n: number of trials, > 0.
        z: the normal quantile (1.96 for 95%).

    Returns:
        (low, high), Python floats with 0 <= low <= successes / n <= high <= 1 (exactly, rounding included).

    Raises:
        ValueError: n <= 0, or successes outside [0, n].
    """
    if not n > 0:
        raise ValueError(f"n must be > 0, got {n}")
    if successes < 0 or successes > n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    rate = successes / n
    low = max(0.0, _centre(rate, n, z) - _half_width(rate, n, z))
    high = min(1.0, _centre(rate, n, z) + _half_width(rate, n, z))
    return float(min(low, rate)), float(max(high, rate))  # rounding may put an end a hair past the rate
''',
    },
    # b: recursion over the labels, a confusion matrix with index_put_, the Wilson bounds as the roots of
    # their quadratic in a small class.
    "b": {
        "labels_to_preferences": r'''def labels_to_preferences(labels: list[dict]) -> list[dict]:
    """DPO's rows from preference labels, in order, ties and skips left out."""
    if not labels:
        return []
    head, rest = labels[0], labels[1:]
    later = labels_to_preferences(rest)
    if head["choice"] not in ("A", "B"):
        return later
    shown_a = head["completions"][head["shown_first"]]
    shown_b = head["completions"][1 - head["shown_first"]]
    chosen, rejected = (shown_a, shown_b) if head["choice"] == "A" else (shown_b, shown_a)
    return [{"prompt": head["prompt"], "chosen": chosen, "rejected": rejected}] + later
''',
        "cohens_kappa": r'''def cohens_kappa(a: list, b: list) -> float:
    """Cohen's kappa of two raters' labels of the same items."""
    if len(a) != len(b):
        raise ValueError("the two raters must label the same items")
    if len(a) == 0:
        raise ValueError("no items")
    index = {c: i for i, c in enumerate(dict.fromkeys(list(a) + list(b)))}
    m = len(index)
    confusion = torch.zeros(m, m, dtype=torch.float64)
    rows = torch.tensor([index[x] for x in a])
    cols = torch.tensor([index[y] for y in b])
    confusion.index_put_((rows, cols), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    confusion /= len(a)                                         # joint distribution of (a, b)
    p_o = confusion.trace()
    p_e = confusion.sum(1) @ confusion.sum(0)                   # product of the marginals
    if p_e.item() == 1.0:
        return float("nan")
    return ((p_o - p_e) / (1 - p_e)).item()
''',
        "wilson_interval": r'''class _Wilson:
    """The Wilson bounds are the roots p of (p_hat - p)^2 = z^2 p (1 - p) / n."""

    def __init__(self, p_hat, n, z):
        self.a = 1 + z * z / n                      # a p^2 - b p + c = 0
        self.b = 2 * p_hat + z * z / n
        self.c = p_hat * p_hat

    def roots(self):
        root = math.sqrt(max(self.b * self.b - 4 * self.a * self.c, 0.0))
        return (self.b - root) / (2 * self.a), (self.b + root) / (2 * self.a)


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion successes / n."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need n > 0 and 0 <= successes <= n, got {successes} of {n}")
    low, high = _Wilson(successes / n, n, z).roots()
    return min(max(0.0, low), successes / n), max(min(1.0, high), successes / n)
''',
    },
}
