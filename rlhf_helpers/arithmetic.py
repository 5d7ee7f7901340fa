"""A seeded corpus of two-digit additions written loosely, some by careless writers (the tiny world's maths).

Lab 9's task is a sum a program can check: ``"47+38="`` should be answered ``85``.
The tiny math policy learns its arithmetic from lines such as these::

    47+38=85        47 + 38 = 85        47+38= 85        47 plus 38 is 85
    what is 47+38? 85        47+38=? answer: 85        47+38=85.

Both operands have two digits (10 to 99), so every prompt ``"a+b="`` has six
characters. The writers are of two kinds. Careful writers always give the sum.
*Careless* writers forget to carry: they write each column's sum as it comes,
so on a problem whose units carry (``7 + 8 = 15``) they write ``75`` for
``47+38`` and ``102`` for ``95+17``. On problems without a carry both kinds
agree. A model trained on the corpus has seen both on every carry problem and
samples either, which is what a checked reward can change.

The task split (:func:`make_problems`): ``train`` and ``test`` hold problems with
a carry; ``sft`` holds demonstrations, half with a carry, answered by the same
writers as the corpus (so some are wrong). The world's builder keeps the ``sft``
and ``test`` problems out of the corpus.

>>> careless_sum(47, 38), careless_sum(95, 17), careless_sum(12, 35)
(75, 102, 47)

Nothing here seeds or changes global state at import.
"""

from __future__ import annotations

import random
from collections.abc import Collection

from rlhf_helpers import _args

__all__ = ["LOW", "HIGH", "FORMATS", "carries", "careless_sum", "written_sum", "prompt", "operands", "all_pairs",
           "generate_corpus", "make_problems"]

LOW, HIGH = 10, 99
"""The operands' range: two digits each."""

FORMATS = (
    (0.35, "{a}+{b}={c}"),
    (0.15, "{a} + {b} = {c}"),
    (0.10, "{a}+{b}= {c}"),
    (0.10, "{a} plus {b} is {c}"),
    (0.10, "what is {a}+{b}? {c}"),
    (0.10, "{a}+{b}=? answer: {c}"),
    (0.10, "{a}+{b}={c}."),
)
"""Loose formats of a corpus line and their shares (they sum to 1)."""


def carries(a: int, b: int) -> bool:
    """Whether adding ``a`` and ``b`` carries from the units into the tens."""
    return a % 10 + b % 10 >= 10


def careless_sum(a: int, b: int) -> int:
    """The sum written without carrying: the tens column's sum, then the units column's last digit."""
    return int(f"{a // 10 + b // 10}{(a + b) % 10}")


def written_sum(a: int, b: int, careless: float, rng: random.Random) -> int:
    """The sum a writer gives for ``a + b``: careless (:func:`careless_sum`) with probability ``careless``
    on a problem that carries, else right. ``rng`` is drawn from only on a carry problem."""
    return careless_sum(a, b) if carries(a, b) and rng.random() < careless else a + b


def _check_share(careless: float) -> None:
    if _args.positive_number(careless, "careless", allow_zero=True) > 1:
        raise ValueError(f"careless should be a share in [0, 1], got {careless!r}.")


def prompt(a: int, b: int) -> str:
    """The task's prompt for ``a + b``: ``"47+38="``."""
    return f"{a}+{b}="


def operands(prompt_text: str) -> tuple[int, int]:
    """``(a, b)`` of a task prompt ``"a+b="`` (the inverse of :func:`prompt`)."""
    left, right = prompt_text.removesuffix("=").split("+")
    return int(left), int(right)


def all_pairs() -> list[tuple[int, int]]:
    """Every ``(a, b)`` with two-digit operands, in order (8,100 pairs; 3,645 of them carry)."""
    return [(a, b) for a in range(LOW, HIGH + 1) for b in range(LOW, HIGH + 1)]


def _line(a: int, b: int, c: int, rng: random.Random) -> str:
    """One corpus line for ``a + b`` answered ``c``, in a format drawn with :data:`FORMATS`' shares."""
    shares, formats = zip(*FORMATS)
    return rng.choices(formats, weights=shares)[0].format(a=a, b=b, c=c)


def generate_corpus(n: int, careless: float, exclude: Collection[tuple[int, int]] = (), seed: int = 0) -> list[str]:
    """``n`` corpus lines; on a carry problem a line is a careless writer's with probability ``careless``.

    Args:
        n: lines to write, >= 1.
        careless: share of careless writers, in [0, 1].
        exclude: ``(a, b)`` pairs that never appear (the held-out problems).
        seed: the corpus is a function of its arguments alone.
    """
    _args.integer(n, "n", minimum=1)
    _check_share(careless)
    excluded = set(exclude)
    allowed = [pair for pair in all_pairs() if pair not in excluded]
    if not allowed:
        raise ValueError("exclude leaves no problem to write the corpus from.")
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        a, b = rng.choice(allowed)
        c = written_sum(a, b, careless, rng)
        out.append(_line(a, b, c, rng))
    return out


def make_problems(n_sft: int, n_train: int, n_test: int, seed: int = 0,
                  careless: float = 0.0) -> dict[str, list[dict]]:
    """The task split: distinct problems ``{"prompt": "47+38=", "answer": "85"}``.

    ``train`` and ``test`` hold problems with a carry, answered right (the verifier's references).
    ``sft`` holds *demonstrations*: half of them problems without a carry, half with one, answered
    as the corpus's writers answer them, so with ``careless`` > 0 some carry answers are wrong
    (:func:`careless_sum`). No problem is in two splits, and ``test`` does not depend on the other
    sizes (it is drawn first), nor ``train`` on ``n_sft`` or ``careless``.
    """
    for value, name in ((n_sft, "n_sft"), (n_train, "n_train"), (n_test, "n_test")):
        _args.integer(value, name, minimum=0)
    _check_share(careless)
    rng = random.Random(seed)
    pairs = all_pairs()
    rng.shuffle(pairs)
    carry = [p for p in pairs if carries(*p)]
    plain = [p for p in pairs if not carries(*p)]
    n_plain = n_sft - n_sft // 2
    if n_test + n_train + n_sft // 2 > len(carry) or n_plain > len(plain):
        raise ValueError(f"asked for {n_test} + {n_train} + {n_sft // 2} carry problems and {n_plain} without a "
                         f"carry; there are {len(carry)} and {len(plain)}.")
    sft = plain[:n_plain] + carry[n_test + n_train:n_test + n_train + n_sft // 2]
    random.Random(seed + 1).shuffle(sft)
    writer = random.Random(seed + 2)

    def rows(chosen: list[tuple[int, int]], answer) -> list[dict]:
        return [{"prompt": prompt(a, b), "answer": str(answer(a, b))} for a, b in chosen]

    return {"sft": rows(sft, lambda a, b: written_sum(a, b, careless, writer)),
            "train": rows(carry[n_test:n_test + n_train], lambda a, b: a + b),
            "test": rows(carry[:n_test], lambda a, b: a + b)}
