"""rlhf_helpers.verifiable: lab 9's verifier, format reward, SFT examples and pass@k estimator."""

from __future__ import annotations

import itertools
import math

import pytest

from rlhf_helpers.verifiable import (exact_match_reward, first_number, format_reward, parse_answer, pass_at_k,
                                     pass_at_k_curve, to_sft_example)


# ----------------------------------------------------------------------------- the verifier
@pytest.mark.parametrize("completion, expected", [
    ("<answer>85</answer>", 85),
    ("<answer> 85 </answer>", 85),            # spaces around the number are stripped
    ("so <answer>85</answer> done", 85),       # text outside the block does not matter
    ("<answer>085</answer>", 85),              # leading zeros read as the number
    ("<answer>-3</answer>", -3),
    ("<answer>85</answer><answer>75</answer>", None),  # two answers: none
    ("<answer>85<answer>75</answer>", None),
    ("85", None),                              # missing tags
    ("<answer>85", None),
    ("85</answer>", None),
    ("</answer>85<answer>", None),             # tags in the wrong order
    ("<answer></answer>", None),
    ("<answer>8 5</answer>", None),            # a space inside the number
    ("<answer>85.0</answer>", None),
    ("<answer>+85</answer>", None),
    ("<answer>eighty-five</answer>", None),
])
def test_parse_answer(completion, expected):
    assert parse_answer(completion) == expected


def test_exact_match_reward_compares_numbers_not_text():
    completions = ["<answer>85</answer>", "<answer>085</answer>", "<answer> 85</answer>", "<answer>75</answer>",
                   "<answer>85</answer> <answer>85</answer>", "85", ""]
    assert exact_match_reward(completions, answer=["85"] * 7, prompts=["47+38="] * 7) == [1.0, 1.0, 1.0, 0.0,
                                                                                           0.0, 0.0, 0.0]
    assert exact_match_reward(["<answer>12</answer>", "<answer>12</answer>"], answer=["12", "13"]) == [1.0, 0.0]


def test_format_reward_wants_one_block_and_nothing_else():
    completions = ["<answer>85</answer>", " <answer>75</answer> ", "<answer>85</answer>.", "the sum <answer>85</answer>",
                   "<answer>x</answer>", "<answer>1</answer><answer>2</answer>", "85"]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_first_number_reads_loose_answers():
    assert [first_number(t) for t in [" 85", "? answer: 85", "85.", "-4 and 5", "none"]] == [85, 85, 85, -4, None]


def test_sft_example_keeps_only_prompt_and_completion():
    assert to_sft_example({"prompt": "47+38=", "answer": "85", "extra": 1}) == {
        "prompt": "47+38=", "completion": "<answer>85</answer>"}


# ----------------------------------------------------------------------------- pass@k
def test_pass_at_k_by_hand():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)           # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)           # 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 3, 3) == 1.0                          # n - c < k: every draw of 3 holds a correct one


def test_pass_at_k_matches_a_brute_force_count():
    for n in range(1, 8):
        for c in range(n + 1):
            correct = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                draws = list(itertools.combinations(correct, k))
                brute = sum(any(d) for d in draws) / len(draws)
                assert pass_at_k(n, c, k) == pytest.approx(brute), (n, c, k)
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_refuses_out_of_range_values():
    for n, c, k in [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)
    with pytest.raises(TypeError, match="k should be an int"):
        pass_at_k(5, 2, 1.0)


def test_pass_at_k_curve_averages_over_problems_and_takes_an_estimator():
    assert pass_at_k_curve([0, 4, 1], n=4, ks=[1, 2]) == pytest.approx([(0 + 1 + 0.25) / 3, (0 + 1 + 0.5) / 3])
    assert pass_at_k_curve([1, 2], n=4, ks=[3], estimator=lambda n, c, k: c * k) == [4.5]


# ----------------------------------------------------------------------------- with the world's math policy
@pytest.fixture(scope="module")
def math_policy():
    from rlhf_helpers.models import load_math_policy

    return load_math_policy("tiny", device="cpu")


def test_sample_answers_draws_its_own_stream(math_policy):
    import torch

    from rlhf_helpers.verifiable import sample_answers

    model, tokenizer = math_policy
    prompts = ["47+38=", "12+35="]
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    first = sample_answers(model, tokenizer, prompts, 8, seed=3, max_new_tokens=6)
    assert torch.rand(1) == before  # the caller's random state is as it was
    assert sample_answers(model, tokenizer, prompts, 8, seed=3, max_new_tokens=6) == first
    assert [len(group) for group in first] == [8, 8]
    greedy = sample_answers(model, tokenizer, prompts, 2, greedy=True, max_new_tokens=6)
    assert all(group[0] == group[1] for group in greedy)


def test_check_completion_only_loss_on_a_hand_made_batch(math_policy):
    import torch

    from rlhf_helpers.verifiable import check_completion_only_loss

    _, tokenizer = math_policy
    examples = [to_sft_example({"prompt": "12+35=", "answer": "47"})]
    text = examples[0]["prompt"] + examples[0]["completion"] + tokenizer.eos_token
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    n_prompt = len(tokenizer(examples[0]["prompt"])["input_ids"])
    labels = ids.clone()
    labels[:, :n_prompt] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    check_completion_only_loss(batch, tokenizer, examples)  # right: no error
    whole = dict(batch, labels=ids.clone())  # the loss also covers the prompt
    with pytest.raises(ValueError, match="row 0"):
        check_completion_only_loss(whole, tokenizer, examples)
    no_eos = dict(batch, labels=labels.clone())
    no_eos["labels"][0, -1] = -100
    with pytest.raises(ValueError, match="row 0"):
        check_completion_only_loss(no_eos, tokenizer, examples)
