"""rlhf_helpers.arithmetic: lab 9's problems and the corpus the math policy reads."""

from __future__ import annotations

import re

import pytest

from rlhf_helpers import arithmetic
from rlhf_helpers.arithmetic import all_pairs, careless_sum, carries, generate_corpus, make_problems, operands, prompt


def test_careless_sum_by_hand():
    # 47+38: tens 4+3=7, units 7+8=15 -> "7" "5"; 95+17: tens 10, units 12 -> "10" "2"; no carry: the sum
    assert [careless_sum(47, 38), careless_sum(95, 17), careless_sum(12, 35), careless_sum(99, 99)] == [75, 102, 47, 188]
    assert carries(47, 38) and carries(95, 17) and not carries(12, 35) and not carries(50, 49)


def test_careless_equals_the_sum_exactly_when_nothing_carries():
    for a, b in all_pairs():
        assert (careless_sum(a, b) == a + b) == (not carries(a, b)), (a, b)


def test_prompt_and_operands_are_inverse():
    assert prompt(47, 38) == "47+38=" and operands("47+38=") == (47, 38)
    assert all(operands(prompt(a, b)) == (a, b) for a, b in all_pairs()[::97])


def test_problems_are_deterministic_by_seed():
    assert make_problems(50, 40, 30, seed=3) == make_problems(50, 40, 30, seed=3)
    assert make_problems(50, 40, 30, seed=3) != make_problems(50, 40, 30, seed=4)


def test_problem_splits_are_disjoint_and_as_described():
    split = make_problems(300, 400, 200, seed=0)
    assert {k: len(v) for k, v in split.items()} == {"sft": 300, "train": 400, "test": 200}
    pairs = {k: [operands(p["prompt"]) for p in v] for k, v in split.items()}
    assert all(len(set(v)) == len(v) for v in pairs.values())
    assert not set(pairs["sft"]) & set(pairs["train"]) and not set(pairs["sft"]) & set(pairs["test"])
    assert not set(pairs["train"]) & set(pairs["test"])
    assert sum(carries(*p) for p in pairs["sft"]) == 150  # half the demonstrations carry
    assert all(carries(*p) for p in pairs["train"] + pairs["test"])
    assert all(int(p["answer"]) == sum(operands(p["prompt"])) for v in split.values() for p in v)  # careless=0


def test_demonstrations_are_answered_like_the_corpus():
    right, sloppy = make_problems(400, 100, 100, seed=2), make_problems(400, 100, 100, seed=2, careless=0.6)
    assert [p["prompt"] for p in right["sft"]] == [p["prompt"] for p in sloppy["sft"]]
    assert right["train"] == sloppy["train"] and right["test"] == sloppy["test"]
    wrong = [p for p in sloppy["sft"] if int(p["answer"]) != sum(operands(p["prompt"]))]
    assert all(int(p["answer"]) == careless_sum(*operands(p["prompt"])) for p in wrong)
    assert all(carries(*operands(p["prompt"])) for p in wrong)
    assert 0.45 < len(wrong) / 200 < 0.75  # 60 % of the 200 carry demonstrations, give or take
    with pytest.raises(ValueError, match="careless"):
        make_problems(4, 4, 4, careless=1.5)


def test_test_split_does_not_depend_on_the_train_size():
    assert make_problems(10, 5, 30, seed=1)["test"] == make_problems(10, 500, 30, seed=1)["test"]


def test_too_many_problems_are_refused():
    with pytest.raises(ValueError, match="carry problems"):
        make_problems(0, 3600, 100)
    with pytest.raises(TypeError, match="n_test"):
        make_problems(1, 1, 2.0)


def _pairs_in(line: str) -> tuple[int, int]:
    a, b = re.findall(r"\d+", line)[:2]
    return int(a), int(b)


def test_corpus_leaves_out_the_excluded_operands():
    held_out = {operands(p["prompt"]) for p in make_problems(0, 0, 200, seed=0)["test"]}
    corpus = generate_corpus(5000, 0.5, exclude=held_out, seed=0)
    assert len(corpus) == 5000
    seen = {_pairs_in(line) for line in corpus}
    assert not seen & held_out
    assert len(seen) > 2000  # the rest is covered widely, so the exclusion is not vacuous


def test_corpus_writers_are_careful_or_careless_as_asked():
    def answers(careless: float) -> list[bool]:
        out = []
        for line in generate_corpus(3000, careless, seed=2):
            a, b, c = (int(x) for x in re.findall(r"\d+", line)[:3])
            assert c in {a + b, careless_sum(a, b)}, line
            if carries(a, b):
                out.append(c == a + b)
        return out

    assert all(answers(0.0)) and not any(answers(1.0))
    half = answers(0.5)
    assert 0.4 < sum(half) / len(half) < 0.6


def test_corpus_uses_every_format_and_is_deterministic():
    corpus = generate_corpus(2000, 0.6, seed=7)
    assert corpus == generate_corpus(2000, 0.6, seed=7)
    skeletons = {re.sub(r"\d+", "N", line) for line in corpus}
    assert skeletons == {re.sub(r"\{.\}", "N", fmt) for _, fmt in arithmetic.FORMATS}
    with pytest.raises(ValueError, match="careless"):
        generate_corpus(10, 1.5)
