"""Agreement (lab 8): Cohen's and Fleiss' kappa, bootstrap and Wilson intervals, the classifier as a rater, blind tallies."""

from __future__ import annotations

import math

import pytest
import torch

from rlhf_helpers import agreement as A
from rlhf_helpers import labelling as L
from rlhf_helpers.finetune import FakeSentimentPipeline


# ----------------------------------------------------------------------------- statistics
def test_cohens_kappa_and_its_edge_cases():
    assert A.cohens_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert A.cohens_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert math.isnan(A.cohens_kappa([1, 1], [1, 1]))
    with pytest.raises(ValueError):
        A.cohens_kappa([1], [1, 2])
    with pytest.raises(ValueError):
        A.cohens_kappa([], [])


def test_fleiss_kappa_known_values():
    assert A.fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    assert A.fleiss_kappa([["a", "b"], ["b", "a"]]) == pytest.approx(-1.0)
    assert math.isnan(A.fleiss_kappa([["a"]]))


def test_wilson_interval_matches_the_formula_and_stays_in_bounds():
    low, high = A.wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4901568, 0.9433191), abs=1e-6)
    low, high = A.wilson_interval(10, 10)
    assert high == 1.0 and 0.6 < low < 0.8
    assert A.wilson_interval(0, 5)[0] == 0.0
    for bad in ((1, 0), (-1, 3), (4, 3)):
        with pytest.raises(ValueError):
            A.wilson_interval(*bad)


def test_wilson_interval_holds_the_proportion_at_0_and_n_successes():
    """21 of 21 once gave a high end of 0.9999999999999999, below the proportion: the lab's error bars failed."""
    assert A.wilson_interval(21, 21)[1] == 1.0 and A.wilson_interval(0, 11)[0] == 0.0
    for n in range(1, 300):
        for successes in (0, n / 2, n):
            low, high = A.wilson_interval(successes, n)
            assert 0.0 <= low <= successes / n <= high <= 1.0, (successes, n, low, high)


def test_bootstrap_interval_brackets_the_statistic():
    a = [i % 2 for i in range(60)]
    b = [x if i % 5 else 1 - x for i, x in enumerate(a)]
    k = A.cohens_kappa(a, b)
    low, high = A.bootstrap_interval(A.cohens_kappa, a, b, n_boot=300)
    assert low < k < high and high - low < 0.6
    assert A.bootstrap_interval(A.cohens_kappa, a, b, n_boot=300) == (low, high)  # seeded


# ----------------------------------------------------------------------------- the classifier as a rater, blind comparisons
def test_judged_and_classifier_wins_on_the_same_pairs():
    pairs = L.blind_pairs(["p1", "p2", "p3", "p4"], [" bad", " bad", " good", " meh"], [" good", " good!", " bad", " meh!"])
    fake = FakeSentimentPipeline({f"{p}{c}": (0.9 if c.startswith(" good") else 0.1 if c == " bad" else 0.5)
                                  for p, c in ((p["prompt"], c) for p in pairs for c in p["completions"])})
    choices = [("A", 1), ("B", 0), ("A", 0), ("tie", 0)]
    labels = [dict(p, shown_first=s, choice=c, labeller="a", preferred={"A": s, "B": 1 - s}.get(c))
              for p, (c, s) in zip(pairs, choices)]
    # A with shown_first 1 = tuned wins; B with shown_first 0 = tuned wins; A with shown_first 0 = reference wins
    assert A.judged_wins(labels) == {"wins": 2, "losses": 1, "ties": 1, "skipped": 0}
    assert A.classifier_tally(fake, labels) == {"wins": 2, "losses": 1, "ties": 1, "skipped": 0}
    assert A.win_rate({"wins": 2, "losses": 1, "ties": 1}) == (pytest.approx(0.625), 4)
    # pairs nobody judged: the classifier judges all four (the tuned text wins on p1 and p2, loses on p3, p4 ties)
    assert A.classifier_tally(fake, pairs) == {"wins": 2, "losses": 1, "ties": 1, "skipped": 0}


def test_classifier_preferences_from_scores_computed_once():
    """The lab scores the pairs once (it shows the scores) and turns them into the classifier's choices;
    classifier_preferences gives the same choices in one call."""
    labels = [{"prompt": "p", "completions": [" good", " bad"]}, {"prompt": "q", "completions": [" bad", " good"]},
              {"prompt": "r", "completions": [" meh", " meh!"]}]
    fake = FakeSentimentPipeline({"p good": 0.9, "p bad": 0.1, "q bad": 0.2, "q good": 0.8})  # r: 0.5 and 0.5
    scores = A.pair_scores(fake, labels)
    assert scores == [pytest.approx(s) for s in ((0.9, 0.1), (0.2, 0.8), (0.5, 0.5))]
    assert A.preferred_from_scores(scores) == [0, 1, None]  # the index in completions, None on a tie
    assert A.classifier_preferences(fake, labels) == [0, 1, None]
    assert A.preferred_from_scores([]) == []


def test_the_blind_panel_takes_a_ppo_policy():
    """Lab 3's policy (the kit's PPO, one step) gives blind pairs like the DPO model does."""
    from rlhf_helpers.finetune import generate_completions
    from rlhf_helpers.models import frozen_copy, load_policy
    from rlhf_helpers.ppo import PPOConfig, PPOTrainer
    from rlhf_helpers.rewards import LengthSampler

    policy, tokenizer = load_policy()
    trainer = PPOTrainer(PPOConfig(batch_size=8, mini_batch_size=4, ppo_epochs=1, seed=0), policy, tokenizer,
                         ref_model=frozen_copy(policy))
    queries = [tokenizer("the film was", return_tensors="pt").input_ids[0]] * 8
    trainer.train(1, lambda: queries, lambda texts: torch.ones(len(texts)), {"length_sampler": LengthSampler(4, 5),
                  "do_sample": True, "top_k": 0, "top_p": 1.0}, progress=False)
    prompts = ["the film was", "i saw this", "the acting"]
    ppo_texts = generate_completions(trainer.model.pretrained_model, tokenizer, prompts, 8, do_sample=True, seed=2)
    ref_texts = generate_completions(trainer.ref_model, tokenizer, prompts, 8, do_sample=True, seed=1)
    pairs = L.blind_pairs(prompts, ref_texts, ppo_texts, names=("reference", "ppo"), task="blind")
    assert pairs and all(p["sources"] == ["reference", "ppo"] for p in pairs)
    labels = [dict(p, shown_first=0, choice="B", labeller="a", preferred=1) for p in pairs]
    assert A.judged_wins(labels, "ppo")["wins"] == len(pairs)
