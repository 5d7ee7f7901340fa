"""Unit tests of rlhf_helpers.rewards (the kit's reference for lab 2's graded functions)."""

from __future__ import annotations

import random
import statistics

import pytest
import torch

from rlhf_helpers.rewards import (
    LengthSampler,
    build_queries,
    expected_reward,
    make_reward_fn,
    pipeline_rewards,
    rollout,
    rollout_texts,
    scores_from_pipe_outputs,
)

SAMPLE = {"do_sample": True, "top_k": 0, "top_p": 1.0}


class ScriptedLengths:
    """A stand-in sampler that returns fixed lengths and counts its calls."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def __call__(self) -> int:
        self.calls += 1
        return self.values[self.calls - 1]


# ----------------------------------------------------------------------------- LengthSampler
def test_length_sampler_range_and_type():
    sampler = LengthSampler(3, 7, torch.Generator().manual_seed(0))
    draws = [sampler() for _ in range(2000)]
    assert all(type(d) is int for d in draws)
    assert set(draws) == {3, 4, 5, 6}  # upper bound excluded, every value reached


def test_length_sampler_uniform_chi_square():
    sampler = LengthSampler(2, 8, torch.Generator().manual_seed(123))
    n, k = 6000, 6
    counts = torch.bincount(torch.tensor([sampler() - 2 for _ in range(n)]), minlength=k).double()
    chi2 = (((counts - n / k) ** 2) / (n / k)).sum().item()
    assert chi2 < 20.5  # df=5: P(chi2 > 20.5) ~ 0.001


def test_length_sampler_generator_reproducible_and_independent_of_global_rng():
    a = LengthSampler(1, 100, torch.Generator().manual_seed(7))
    b = LengthSampler(1, 100, torch.Generator().manual_seed(7))
    first = [a() for _ in range(20)]
    torch.manual_seed(999)
    assert first == [b() for _ in range(20)]
    torch.manual_seed(0)
    x = [LengthSampler(1, 100)() for _ in range(5)]
    torch.manual_seed(0)
    assert x == [LengthSampler(1, 100)() for _ in range(5)]  # None: the global generator


def test_length_sampler_single_value():
    assert {LengthSampler(4, 5)() for _ in range(20)} == {4}


@pytest.mark.parametrize("lo,hi", [(0, 5), (-1, 3), (5, 5), (6, 5)])
def test_length_sampler_value_errors(lo, hi):
    with pytest.raises(ValueError):
        LengthSampler(lo, hi)


@pytest.mark.parametrize("args", [(1.0, 5), (1, "5"), (True, 5)])
def test_length_sampler_type_errors(args):
    with pytest.raises(TypeError):
        LengthSampler(*args)
    with pytest.raises(TypeError):
        LengthSampler(1, 5, generator=0)


# ----------------------------------------------------------------------------- pipe outputs
def test_scores_by_label_in_any_order():
    rng = random.Random(0)
    pos = [0.9, 0.2, 0.55, 0.01]
    outputs = []
    for p in pos:
        d = [{"label": "POSITIVE", "score": p}, {"label": "NEGATIVE", "score": 1 - p}]
        rng.shuffle(d)
        outputs.append(d)
    got = scores_from_pipe_outputs(outputs)
    assert got.dtype == torch.float32 and got.shape == (4,)
    torch.testing.assert_close(got, torch.tensor(pos))
    torch.testing.assert_close(scores_from_pipe_outputs(outputs, "NEGATIVE"), 1 - torch.tensor(pos))


def test_scores_errors():
    with pytest.raises(ValueError, match="POSITIVE"):
        scores_from_pipe_outputs([[{"label": "LABEL_0", "score": 0.3}, {"label": "LABEL_1", "score": 0.7}]])
    with pytest.raises(TypeError, match="top_k=None"):
        scores_from_pipe_outputs([{"label": "POSITIVE", "score": 0.7}])
    assert scores_from_pipe_outputs([]).shape == (0,)


def test_pipeline_output_is_sorted_by_score_so_position_is_wrong(reward_pipe):
    texts = ["i loved it. a masterpiece.", "a waste of time. i hated it."]
    outputs = reward_pipe(texts, top_k=None)
    assert [o[0]["label"] for o in outputs] == ["POSITIVE", "NEGATIVE"]  # the fact the lab teaches
    pos = scores_from_pipe_outputs(outputs)
    assert pos[0] > 0.5 > pos[1]


def test_pipeline_rewards_match_the_model(reward_pipe):
    texts = ["the acting was superb.", "the plot was dull and the ending was weak.", "a film"]
    logits = pipeline_rewards(reward_pipe, texts, kind="logit")
    probs = pipeline_rewards(reward_pipe, texts, kind="probability")
    model, tok = reward_pipe.model, reward_pipe.tokenizer
    with torch.no_grad():
        ref = model(**tok(texts, return_tensors="pt", padding=True).to(model.device)).logits.cpu()
    pos = model.config.label2id["POSITIVE"]
    torch.testing.assert_close(logits, ref[:, pos], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(probs, ref.softmax(-1)[:, pos], atol=1e-5, rtol=1e-4)
    fn = make_reward_fn(reward_pipe, kind="probability")
    torch.testing.assert_close(fn(texts), probs)
    assert pipeline_rewards(reward_pipe, []).shape == (0,)
    with pytest.raises(ValueError):
        pipeline_rewards(reward_pipe, texts, kind="softmax")
    with pytest.raises(TypeError):
        pipeline_rewards(reward_pipe, "one text")


def test_pipeline_rewards_use_the_given_scores_fn(reward_pipe):
    """Lab 2 passes the learner's scores_from_pipe_outputs (the kit's is a stub while lab 2 is graded)."""
    seen = []

    def scores_fn(outputs, label):
        seen.append((len(outputs), label))
        return scores_from_pipe_outputs(outputs, label) + 1.0

    texts = ["the acting was superb.", "a film"]
    plain = pipeline_rewards(reward_pipe, texts, label="NEGATIVE")
    torch.testing.assert_close(pipeline_rewards(reward_pipe, texts, label="NEGATIVE", scores_fn=scores_fn), plain + 1)
    fn = make_reward_fn(reward_pipe, label="NEGATIVE", scores_fn=scores_fn)
    torch.testing.assert_close(fn(texts), plain + 1)
    assert seen == [(2, "NEGATIVE"), (2, "NEGATIVE")]


def test_reward_helpers_in_lab2s_box_take_the_learners_function(tmp_path, monkeypatch):
    """In lab 2's box (tests/grader/test_answer_key_stubs.py: what is stubbed) pipeline_rewards works with
    the learner's scores_from_pipe_outputs passed as scores_fn, and raises (the stub) without it."""
    from _box import boxed

    box, _, _ = boxed("lab2_rewards", "rewards", tmp_path, monkeypatch)

    def fake_pipe(texts, **kwargs):
        return [[{"label": "NEGATIVE", "score": 0.25}, {"label": "POSITIVE", "score": 0.75}] for _ in texts]

    def learners(outputs, label):
        return torch.tensor([next(d["score"] for d in o if d["label"] == label) for o in outputs])

    with pytest.raises(RuntimeError, match="not available while lab2_rewards is graded"):
        box.pipeline_rewards(fake_pipe, ["a", "b"])
    torch.testing.assert_close(box.pipeline_rewards(fake_pipe, ["a", "b"], scores_fn=learners),
                               torch.tensor([0.75, 0.75]))
    torch.testing.assert_close(box.make_reward_fn(fake_pipe, scores_fn=learners)(["a"]), torch.tensor([0.75]))


# ----------------------------------------------------------------------------- queries
def test_build_queries_prefixes_drawn_per_text(policy):
    _, tok = policy
    texts = ["the film was good. i loved it.", "bad", "the acting was superb and the plot was fresh."]
    lengths = ScriptedLengths([4, 10, 100])
    queries = build_queries(texts, tok, lengths)
    assert lengths.calls == 3
    for text, n, q in zip(texts, [4, 10, 100], queries):
        ids = tok(text)["input_ids"]
        assert q.dtype == torch.long and q.dim() == 1
        assert q.tolist() == ids[:n]
        assert len(q) == min(n, len(ids))  # never past the end of the text


def test_build_queries_errors(policy):
    _, tok = policy
    with pytest.raises(ValueError):
        build_queries(["fine", ""], tok, LengthSampler(1, 3))
    with pytest.raises(TypeError):
        build_queries("a text", tok, LengthSampler(1, 3))


# ----------------------------------------------------------------------------- rollouts
def _queries(tok, texts):
    return [torch.tensor(tok(t)["input_ids"]) for t in texts]


def test_rollout_shapes_and_lengths(policy):
    model, tok = policy
    queries = _queries(tok, ["the film", "this horror film is about a", "i"])
    lengths = ScriptedLengths([3, 9, 5])
    kwargs = {**SAMPLE, "suppress_tokens": [tok.eos_token_id]}  # no early stop: exact lengths
    before = dict(kwargs)
    torch.manual_seed(0)
    out = rollout(model, tok, queries, lengths, kwargs)
    assert kwargs == before and lengths.calls == 3
    assert isinstance(out, list) and len(out) == 3
    for q, n, r in zip(queries, [3, 9, 5], out):
        assert set(r) == {"query", "response", "query_ids", "response_ids"}
        assert torch.equal(r["query_ids"], q)
        assert r["response_ids"].dtype == torch.long and r["response_ids"].shape == (n,)
        assert r["query"] == tok.decode(q)
        assert r["response"] == tok.decode(r["response_ids"])
    assert rollout_texts(out) == [r["query"] + r["response"] for r in out]


def test_rollout_samples_and_stops_at_eos(policy):
    model, tok = policy
    q = _queries(tok, ["the acting was"])
    torch.manual_seed(1)
    texts = {rollout(model, tok, q, LengthSampler(20, 21), SAMPLE)[0]["response"] for _ in range(4)}
    assert len(texts) > 1  # sampled, not greedy
    torch.manual_seed(2)
    many = rollout(model, tok, q * 64, LengthSampler(60, 61), SAMPLE)
    eos = tok.eos_token_id
    ended = [r["response_ids"] for r in many if r["response_ids"][-1] == eos]
    assert ended, "the tiny policy ends most reviews within 60 tokens"
    for ids in ended:
        assert (ids == eos).sum() == 1  # one EOS kept, padding after it dropped


def test_rollout_batched_matches_one_by_one_greedy(policy):
    """Left padding must not change what the policy generates."""
    model, tok = policy
    queries = _queries(tok, ["the film", "this horror film is about a group of", "i"])
    batched = rollout(model, tok, queries, ScriptedLengths([12, 12, 12]), {"do_sample": False})
    for q, r in zip(queries, batched):
        alone = model.generate(q[None], attention_mask=torch.ones_like(q)[None], max_new_tokens=12,
                               do_sample=False, pad_token_id=tok.pad_token_id)[0, len(q):]
        n = len(r["response_ids"])
        assert torch.equal(r["response_ids"], alone[:n])


def test_rollout_restores_mode_and_rejects_length_kwargs(policy):
    model, tok = policy
    q = _queries(tok, ["the film"])
    model.train()
    try:
        rollout(model, tok, q, LengthSampler(2, 3), SAMPLE)
        assert model.training
    finally:
        model.eval()
    with pytest.raises(ValueError, match="max_new_tokens"):
        rollout(model, tok, q, LengthSampler(2, 3), {**SAMPLE, "max_new_tokens": 5})
    with pytest.raises(ValueError):
        rollout(model, tok, [torch.tensor([1.0, 2.0])], LengthSampler(2, 3), SAMPLE)
    assert rollout(model, tok, [], LengthSampler(2, 3), SAMPLE) == []


# ----------------------------------------------------------------------------- expected reward
def test_expected_reward_matches_statistics():
    r = torch.tensor([1.0, 2.0, 4.0, -0.5])
    mean, se = expected_reward(r)
    assert type(mean) is float and type(se) is float
    vals = r.tolist()
    assert mean == pytest.approx(statistics.mean(vals))
    assert se == pytest.approx(statistics.stdev(vals) / len(vals) ** 0.5)


def test_expected_reward_errors():
    with pytest.raises(ValueError):
        expected_reward(torch.tensor([1.0]))
    with pytest.raises(ValueError):
        expected_reward(torch.ones(2, 2))
    with pytest.raises(TypeError):
        expected_reward([1.0, 2.0])


# ----------------------------------------------------------------------------- lab 2's plots
def test_reward_plots_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhf_helpers.plots import plot_reward_histogram, plot_reward_vs_temperature

    rewards = torch.tensor([-1.0, 0.0, 0.5, 2.5])
    ax = plot_reward_histogram(rewards, bins=4, title="t")
    assert len(ax.patches) == 4 and ax.lines[-1].get_xdata()[0] == pytest.approx(0.5)
    ax = plot_reward_vs_temperature([0.5, 1.0], [0.1, 0.2], [0.01, 0.02])
    assert list(ax.lines[0].get_ydata()) == [0.1, 0.2]
    with pytest.raises(ValueError):
        plot_reward_vs_temperature([0.5, 1.0], [0.1], [0.01, 0.02])
    with pytest.raises(ValueError):
        plot_reward_histogram([])
    plt.close("all")
