"""A seeded probabilistic grammar of short movie reviews (the tiny IMDb).

Each review has a latent sentiment, ``1`` positive or ``0`` negative, and is
built from sentences that mostly agree with it::

    [opening]  aspect sentence(s)  [verdict]

- *Aspect sentences* judge one part of the film ("the acting was superb.").
  About one in six disagrees with the review's sentiment, so some reviews are
  mixed ("the music was lovely but the plot was a mess."), and about one in five
  expresses its polarity through a negation ("the plot was not boring." is
  positive, "the acting was not good." negative).
- The *verdict* ("i loved it.", "a waste of time.") always agrees with the
  label, and at least half of the aspects do (a clear majority when there is
  no verdict), so the text alone decides the label, as a human reader would.

The vocabulary is lower case, a few hundred words, so a byte-level BPE
tokenizer of about a thousand tokens covers it with whole words.

>>> from rlhf_helpers.reviews import generate_reviews
>>> generate_reviews(1, seed=0)[0].keys()
dict_keys(['text', 'label'])
"""

from __future__ import annotations

import random

from rlhf_helpers import _args

POSITIVE, NEGATIVE = 1, 0

GENRES = ["comedy", "drama", "thriller", "horror film", "western", "romance", "war film",
          "musical", "mystery", "science fiction film", "family film", "crime story"]
TOPICS = ["a young boy", "two old friends", "a small town", "a lost dog", "a lonely detective",
          "a family on holiday", "a group of students", "a retired soldier", "a famous singer",
          "a haunted house", "a long journey", "a young nurse", "a failing restaurant"]
OPENINGS = [
    "i watched this movie last night.", "i saw this film at the cinema.", "i rented this movie on friday.",
    "this is a {genre} about {topic}.", "the film tells the story of {topic}.",
    "a {genre} about {topic}.", "i went to see this {genre} with my friends.",
    "this {genre} is about {topic}.", "my wife wanted to watch this {genre}.",
    "i had heard a lot about this film.", "this was my first {genre} in years.",
]
ASPECTS = ["acting", "plot", "story", "music", "ending", "dialogue", "cast", "script",
           "camera work", "lead actor", "direction", "pacing", "soundtrack", "characters",
           "special effects", "humour", "first half", "final scene"]
PLURAL = {"characters", "special effects"}
POS_ADJ = ["great", "wonderful", "brilliant", "excellent", "superb", "amazing", "beautiful",
           "moving", "clever", "charming", "good", "fantastic", "lovely", "fresh", "gripping",
           "perfect", "funny", "touching"]
NEG_ADJ = ["terrible", "awful", "boring", "dull", "bad", "poor", "weak", "horrible", "stupid",
           "painful", "predictable", "lame", "flat", "silly", "messy", "annoying", "forgettable"]
# adjectives whose negation reads naturally ("not boring", "not good")
NEGATABLE_POS = ["good", "great", "funny", "clever", "moving", "fresh", "gripping"]
NEGATABLE_NEG = ["bad", "boring", "dull", "predictable", "silly", "annoying", "weak"]
INTENSIFIERS = ["", "", "", "really ", "very ", "truly ", "quite ", "so ", "rather "]
# adjectives that read oddly with an intensifier ("very excellent")
EXTREME = {"excellent", "superb", "perfect", "brilliant", "fantastic", "amazing", "terrible", "awful",
           "horrible"}
POS_VERDICTS = [
    "i loved it.", "highly recommended.", "one of the best films of the year.", "i would watch it again.",
    "a real gem.", "ten out of ten.", "do not miss it.", "a must see.", "i enjoyed every minute.",
    "what a treat.", "easily a classic.", "i will buy it on dvd.",
]
NEG_VERDICTS = [
    "i hated it.", "a waste of time.", "one of the worst films of the year.", "i want my money back.",
    "avoid this one.", "two out of ten.", "do not watch it.", "i fell asleep.", "what a mess.",
    "i walked out after an hour.", "skip it.", "a total disaster.",
]


class ReviewGrammar:
    """Sample reviews from the grammar. ``rng`` is a ``random.Random``."""

    def __init__(self, rng: random.Random, p_disagree: float = 0.17, p_negation: float = 0.2,
                 p_verdict: float = 0.85, p_opening: float = 0.7) -> None:
        self.rng = rng
        self.p_disagree, self.p_negation = p_disagree, p_negation
        self.p_verdict, self.p_opening = p_verdict, p_opening

    def _choice(self, items: list[str]) -> str:
        return items[self.rng.randrange(len(items))]

    def opening(self) -> str:
        return self._choice(OPENINGS).format(genre=self._choice(GENRES), topic=self._choice(TOPICS))

    def judgement(self, polarity: int) -> str:
        """An adjective phrase with the given polarity, possibly through a negation."""
        if self.rng.random() < self.p_negation:
            adj = self._choice(NEGATABLE_NEG if polarity == POSITIVE else NEGATABLE_POS)
            return f"not {adj}" if self.rng.random() < 0.7 else f"never {adj}"
        adj = self._choice(POS_ADJ if polarity == POSITIVE else NEG_ADJ)
        return adj if adj in EXTREME else self._choice(INTENSIFIERS) + adj

    def clause(self, polarity: int, aspect: str) -> str:
        verb = "were" if aspect in PLURAL else "was"
        return f"the {aspect} {verb} {self.judgement(polarity)}"

    def review(self, label: int) -> str:
        n_aspects = self.rng.choice([1, 2, 2, 3, 3, 4])
        polarities = [label if self.rng.random() >= self.p_disagree else 1 - label for _ in range(n_aspects)]
        has_verdict = self.rng.random() < self.p_verdict
        agree = sum(p == label for p in polarities)
        if 2 * agree < n_aspects or (not has_verdict and 2 * agree == n_aspects):
            polarities = [label] * n_aspects  # the text alone must decide the label
        aspects = self.rng.sample(ASPECTS, n_aspects)
        sentences = [self.opening()] if self.rng.random() < self.p_opening else []
        i = 0
        while i < n_aspects:
            first = self.clause(polarities[i], aspects[i])
            if i + 1 < n_aspects and self.rng.random() < 0.5:
                join = " but " if polarities[i] != polarities[i + 1] else self._choice([" and ", ", and "])
                sentences.append(first + join + self.clause(polarities[i + 1], aspects[i + 1]) + ".")
                i += 2
            else:
                sentences.append(first + ".")
                i += 1
        if has_verdict:
            sentences.append(self._choice(POS_VERDICTS if label == POSITIVE else NEG_VERDICTS))
        return " ".join(sentences)


def generate_reviews(n: int, seed: int = 0) -> list[dict]:
    """``n`` reviews ``{"text": str, "label": int}``, balanced, deterministic for ``seed``."""
    _args.integer(n, "n", minimum=0)
    rng = random.Random(seed)
    grammar = ReviewGrammar(rng)
    out = []
    for i in range(n):
        label = POSITIVE if rng.random() < 0.5 else NEGATIVE
        out.append({"text": grammar.review(label), "label": label})
    return out
