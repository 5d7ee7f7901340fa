"""rlhf_helpers.widgets (lab 1 part): the generation explorer's logic, without a browser,
and the next-token bar chart from rlhf_helpers.plots."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from rlhf_helpers.plots import plot_next_token_distribution
from rlhf_helpers.sampling import next_token_distribution
from rlhf_helpers.widgets import (
    EXPLORER_CHART_CLASS,
    EXPLORER_CLASS,
    EXPLORER_TEXT_CLASS,
    GENERATION_DEFAULTS,
    explore_generation,
    generation_explorer,
)

PROMPT = "the acting was"


def _generate(model, tok, prompt=PROMPT, **kw):
    enc = tok(prompt, return_tensors="pt")
    out = model.generate(**enc, **kw)
    return tok.decode(out[0, enc["input_ids"].shape[-1]:], skip_special_tokens=True)


# ----------------------------------------------------------------------------- explore_generation
def test_explore_generation_greedy_and_beams_equal_generate(policy):
    model, tok = policy
    greedy = explore_generation(model, tok, {"prompt": PROMPT, "do_sample": False, "max_new_tokens": 15,
                                             "repetition_penalty": 1.3, "temperature": 0.2})
    assert greedy["text"] == _generate(model, tok, do_sample=False, max_new_tokens=15, repetition_penalty=1.3)
    assert greedy["prompt"] == PROMPT and not greedy["text"].startswith(PROMPT)
    beams = explore_generation(model, tok, {"do_sample": False, "num_beams": 4, "max_new_tokens": 12,
                                            "min_new_tokens": 12})
    assert beams["text"] == _generate(model, tok, do_sample=False, num_beams=4, max_new_tokens=12, min_new_tokens=12)
    assert len(beams["new_token_ids"]) == 12


def test_explore_generation_sampling_is_seeded_and_leaves_the_global_rng_alone(policy):
    model, tok = policy
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = explore_generation(model, tok, {"seed": 3, "temperature": 1.2})
    assert torch.equal(torch.get_rng_state(), state), "explore_generation must not move the global RNG"
    assert explore_generation(model, tok, {"seed": 3, "temperature": 1.2})["text"] == a["text"]
    texts = {explore_generation(model, tok, {"seed": s, "max_new_tokens": 15})["text"] for s in range(5)}
    assert len(texts) > 1
    torch.manual_seed(3)
    assert a["text"] == _generate(model, tok, do_sample=True, temperature=1.2, top_k=0, top_p=1.0, max_new_tokens=20)


def test_explore_generation_plots_the_processed_distribution(policy):
    model, tok = policy
    r = explore_generation(model, tok, {"top_k": 3, "temperature": 0.8}, top_n=10)
    assert set(r) >= {"prompt", "text", "new_token_ids", "tokens", "token_ids", "probs", "kept", "params"}
    assert r["kept"] == 3 and len(r["tokens"]) == len(r["probs"]) == len(r["token_ids"]) == 3
    assert abs(sum(r["probs"]) - 1) < 1e-5 and r["probs"] == sorted(r["probs"], reverse=True)
    ref = next_token_distribution(model, tok, PROMPT, top_n=10, top_k=3, temperature=0.8)
    assert r["token_ids"] == ref.token_ids and r["probs"] == pytest.approx(ref.probs)
    assert r["tokens"] == [tok.decode([i]) for i in r["token_ids"]]
    full = explore_generation(model, tok, {}, top_n=10)
    assert full["kept"] == model.config.vocab_size and len(full["probs"]) == 10
    assert full["params"] == GENERATION_DEFAULTS
    nucleus = explore_generation(model, tok, {"top_p": 0.5})
    greedy = explore_generation(model, tok, {"top_p": 0.5, "do_sample": False})
    assert nucleus["kept"] < greedy["kept"] == model.config.vocab_size  # warpers only act when sampling
    hot = explore_generation(model, tok, {"temperature": 2.5})
    assert hot["probs"][0] < full["probs"][0] and hot["token_ids"][0] == full["token_ids"][0]


@pytest.mark.parametrize("params, match", [
    ({"beta": 1.0}, "unknown"),
    ({"temperature": 0.0}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"num_beams": 0}, "num_beams"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"min_new_tokens": 30, "max_new_tokens": 10}, "min_new_tokens"),
    ({"max_new_tokens": 500}, "positions"),
])
def test_explore_generation_refuses_bad_parameters(policy, params, match):
    model, tok = policy
    with pytest.raises(ValueError, match=match):
        explore_generation(model, tok, params)


def test_explore_generation_refuses_a_non_dict(policy):
    model, tok = policy
    with pytest.raises(TypeError):
        explore_generation(model, tok, [("temperature", 1.0)])


# ----------------------------------------------------------------------------- the panel
def test_generation_explorer_panel_updates_on_every_change(policy):
    import ipywidgets as w

    model, tok = policy
    panel = generation_explorer(model, tok)
    assert isinstance(panel, w.VBox) and EXPLORER_CLASS in panel._dom_classes
    ex = panel.explorer
    assert set(ex.controls) == set(GENERATION_DEFAULTS)
    descriptions = {name: c.description for name, c in ex.controls.items()}
    assert len(set(descriptions.values())) == len(descriptions) and all(descriptions.values())
    for name, control in ex.controls.items():
        assert f"rlhf-control-{name.replace('_', '-')}" in control._dom_classes
    assert EXPLORER_TEXT_CLASS in ex.text._dom_classes and EXPLORER_CHART_CLASS in ex.chart._dom_classes
    assert ex.chart.value[:8] == b"\x89PNG\r\n\x1a\n" and PROMPT in ex.text.value
    assert ex.result["params"] == GENERATION_DEFAULTS

    chart0 = ex.chart.value
    ex.controls["top_k"].value = 2
    assert ex.result["kept"] == 2 and len(ex.result["probs"]) == 2 and ex.chart.value != chart0
    ex.controls["do_sample"].value = False
    assert ex.controls["temperature"].disabled and ex.controls["seed"].disabled
    assert ex.result["text"] == _generate(model, tok, do_sample=False, max_new_tokens=20)
    assert html.escape(ex.result["text"]) in ex.text.value
    ex.controls["num_beams"].value = 3
    assert ex.result["params"]["num_beams"] == 3
    ex.controls["prompt"].value = "what a <b>"  # HTML in the prompt is shown, not rendered
    assert "&lt;b&gt;" in ex.text.value and "<b>what a <b>" not in ex.text.value


def test_generation_explorer_reports_bad_settings_in_the_panel(policy):
    model, tok = policy
    ex = generation_explorer(model, tok, max_new_tokens=10).explorer
    before = ex.result
    ex.controls["min_new_tokens"].value = 20  # > max_new_tokens: shown, not raised
    assert "min_new_tokens" in ex.info.value and ex.result is before
    ex.controls["max_new_tokens"].value = 25
    assert ex.result is not before and ex.result["params"]["min_new_tokens"] == 20
    assert len(ex.result["new_token_ids"]) >= 20


def test_generation_explorer_starting_values(policy):
    model, tok = policy
    ex = generation_explorer(model, tok, prompt="i", temperature=0.5, top_p=0.9).explorer
    assert ex.params()["prompt"] == "i" and ex.params()["temperature"] == 0.5
    with pytest.raises(ValueError, match="unknown"):
        generation_explorer(model, tok, beta=2.0)


# ----------------------------------------------------------------------------- the bar chart
def test_plot_next_token_distribution_draws_one_bar_per_token():
    import matplotlib.pyplot as plt

    ax = plot_next_token_distribution([" not", " really", ""], [0.5, 0.3, 0.2], title="t")
    heights = [p.get_width() for p in ax.patches]  # horizontal bars
    assert heights == pytest.approx([0.5, 0.3, 0.2])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["\u2423not", "\u2423really", "<eos>"] and ax.get_title() == "t"
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="same length"):
        plot_next_token_distribution(["a"], [0.1, 0.2])
