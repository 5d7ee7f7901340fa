"""The review grammar: seeded, balanced, with negations and mixed reviews."""

import pytest

from rlhf_helpers.reviews import generate_reviews


def test_deterministic_for_a_seed():
    assert generate_reviews(50, seed=3) == generate_reviews(50, seed=3)
    assert generate_reviews(50, seed=3) != generate_reviews(50, seed=4)


def test_balanced_labels_and_features():
    reviews = generate_reviews(4000, seed=0)
    share = sum(r["label"] for r in reviews) / len(reviews)
    assert 0.45 < share < 0.55
    texts = [r["text"] for r in reviews]
    assert sum(" not " in t for t in texts) > 400, "negations such as 'not good' must be common"
    assert sum(" but " in t for t in texts) > 200, "mixed reviews ('great but boring') must occur"
    assert all(t == t.lower() and t.endswith(".") for t in texts)
    lengths = [len(t.split()) for t in texts]
    assert 10 < sum(lengths) / len(lengths) < 40


def test_bad_arguments():
    with pytest.raises(ValueError, match="n should be an int >= 0"):
        generate_reviews(-1)
