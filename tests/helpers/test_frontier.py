"""rlhf_helpers.frontier: best-of-n's KL (the formula and the measured one) and expected rewards."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_helpers.frontier import (
    best_of_n_curve,
    best_of_n_kl_bound,
    best_of_n_probabilities,
    sample_groups,
    score_groups,
)


def test_bound_values():
    assert best_of_n_kl_bound(1) == 0.0
    assert best_of_n_kl_bound(4) == pytest.approx(math.log(4) - 0.75)
    assert type(best_of_n_kl_bound(2)) is float
    for bad in (0, -1):
        with pytest.raises(ValueError, match="n should be an int >= 1"):
            best_of_n_kl_bound(bad)
    for bad in (2.0, True):  # a wrong type is a TypeError, as rlhf_helpers._args promises
        with pytest.raises(TypeError, match="n should be an int"):
            best_of_n_kl_bound(bad)


def test_probabilities_for_distinct_scores_are_order_statistics():
    # M = 4 distinct samples, n = 2: rank i is kept with probability (i/4)^2 - ((i-1)/4)^2
    p = best_of_n_probabilities(["a", "b", "c", "d"], torch.tensor([0.3, -1.0, 2.0, 0.5]), 2)
    expected = torch.tensor([3 / 16, 1 / 16, 7 / 16, 5 / 16], dtype=torch.float64)  # ranks 2, 1, 4, 3
    torch.testing.assert_close(p, expected)
    torch.testing.assert_close(best_of_n_probabilities(["a", "b"], torch.tensor([1.0, 0.0]), 1),
                               torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_measured_kl_approaches_the_formula_without_repeats_and_falls_below_with_them():
    gen = torch.Generator().manual_seed(0)
    M = 2000
    texts = [f"t{i}" for i in range(M)]
    scores = torch.randn(M, generator=gen)
    for n in (2, 8):
        row = best_of_n_curve([texts], scores[None], {"s": scores[None]}, [n])[0]
        assert row["kl"] == pytest.approx(best_of_n_kl_bound(n), abs=0.01)
        assert row["kl_bound"] == pytest.approx(best_of_n_kl_bound(n))
        assert best_of_n_curve([texts], scores[None], {}, [n], kl_bound_fn=lambda k: 10.0 * k)[0]["kl_bound"] == 10.0 * n
    # the same texts repeated: three distinct answers with shares 1/2, 1/4, 1/4 and scores 0 < 1 < 2
    rep = ["x", "x", "y", "z"]
    row = best_of_n_curve([rep], torch.tensor([[0.0, 0.0, 1.0, 2.0]]), {}, [4])[0]
    # P(keep z) = 1 - (3/4)^4, P(keep y) = (3/4)^4 - (1/2)^4, P(keep x) = (1/2)^4
    pz, py, px = 1 - 0.75 ** 4, 0.75 ** 4 - 0.5 ** 4, 0.5 ** 4
    exact = pz * math.log(pz / 0.25) + py * math.log(py / 0.25) + px * math.log(px / 0.5)
    assert row["kl"] == pytest.approx(exact)
    assert row["kl"] < best_of_n_kl_bound(4)


def test_expected_value_of_the_kept_sample():
    select = torch.tensor([[0.0, 1.0, 2.0]])
    value = torch.tensor([[10.0, 20.0, 30.0]])
    rows = best_of_n_curve([["a", "b", "c"]], select, {"v": value}, [1, 3])
    assert rows[0]["v"] == pytest.approx(20.0)   # n = 1: the mean
    # n = 3: ranks kept with probabilities 1/27, 7/27, 19/27
    assert rows[1]["v"] == pytest.approx((10 * 1 + 20 * 7 + 30 * 19) / 27)


def test_errors():
    with pytest.raises(ValueError):
        best_of_n_probabilities(["a"], torch.tensor([1.0, 2.0]), 2)
    with pytest.raises(TypeError):
        best_of_n_probabilities(["a", "b"], torch.tensor([1, 2]), 2)
    with pytest.raises(ValueError):
        best_of_n_curve([["a", "b"]], torch.zeros(2, 2), {}, [2])


def test_sample_groups_keeps_the_callers_random_state():
    from rlhf_helpers.models import load_policy
    from rlhf_helpers.rewards import LengthSampler

    model, tok = load_policy(device="cpu")
    queries = [torch.tensor(tok.encode("i saw this film")), torch.tensor(tok.encode("the acting"))]
    state = torch.random.get_rng_state()
    a = sample_groups(model, tok, queries, 3, LengthSampler(4, 5), seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a == sample_groups(model, tok, queries, 3, LengthSampler(4, 5), seed=1)
    assert len(a) == 2 and all(len(g) == 3 and all(t.startswith(tok.decode(q)) for t in g) for g, q in zip(a, queries))
    scores = score_groups(lambda texts: [float(len(t)) for t in texts], a)
    assert scores.shape == (2, 3) and scores[0, 0] == len(a[0][0])
