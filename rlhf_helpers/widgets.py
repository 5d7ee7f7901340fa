"""Interactive ipywidgets panels for the labs.

Each panel keeps its logic in a plain function (parameters in, results out) that
the tests call without a browser; the widget only reads its controls, calls that
function and shows the result. Every panel carries a CSS class (and its parts
distinct ones) so that a browser test can find its controls, text and chart.
Functions are grouped by the lab that introduced them.
"""

from __future__ import annotations

import html
import io
import warnings
from collections.abc import Mapping
from typing import Any

import torch

# ----------------------------------------------------------------------------- lab 1: generation explorer
GENERATION_DEFAULTS: dict[str, Any] = {
    "prompt": "the acting was",
    "do_sample": True,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "num_beams": 1,
    "repetition_penalty": 1.0,
    "min_new_tokens": 0,
    "max_new_tokens": 20,
    "seed": 0,
}
"""The generation explorer's parameters and their starting values (``top_k=0`` means no top-k,
unlike ``generate()``'s own default of 50)."""

EXPLORER_CLASS = "rlhf-generation-explorer"
EXPLORER_TEXT_CLASS = "rlhf-generated-text"
EXPLORER_CHART_CLASS = "rlhf-next-token-chart"
EXPLORER_INFO_CLASS = "rlhf-explorer-info"


def _check_generation_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in, unknown keys and bad values refused with a message that says what is expected."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params should be a dict, got {type(params).__name__}")
    unknown = set(params) - set(GENERATION_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown generation parameter(s) {sorted(unknown)}; expected some of {list(GENERATION_DEFAULTS)}")
    p = {**GENERATION_DEFAULTS, **params}
    if not isinstance(p["prompt"], str):
        raise TypeError(f"prompt should be a str, got {type(p['prompt']).__name__}")
    checks = [
        ("temperature", p["temperature"] > 0, "> 0 (greedy decoding is do_sample=False)"),
        ("top_k", int(p["top_k"]) == p["top_k"] and p["top_k"] >= 0, "an int >= 0 (0 means off)"),
        ("top_p", 0 < p["top_p"] <= 1, "in (0, 1]"),
        ("num_beams", int(p["num_beams"]) == p["num_beams"] and p["num_beams"] >= 1, "an int >= 1"),
        ("repetition_penalty", p["repetition_penalty"] > 0, "> 0 (1 means off)"),
        ("max_new_tokens", int(p["max_new_tokens"]) == p["max_new_tokens"] and p["max_new_tokens"] >= 1, "an int >= 1"),
        ("min_new_tokens", int(p["min_new_tokens"]) == p["min_new_tokens"]
         and 0 <= p["min_new_tokens"] <= p["max_new_tokens"], "an int in [0, max_new_tokens]"),
        ("seed", int(p["seed"]) == p["seed"], "an int"),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"{name} should be {expected}, got {p[name]!r}")
    for name in ("top_k", "num_beams", "max_new_tokens", "min_new_tokens", "seed"):
        p[name] = int(p[name])
    for name in ("temperature", "top_p", "repetition_penalty"):
        p[name] = float(p[name])
    p["do_sample"] = bool(p["do_sample"])
    return p


def _rng_devices(model) -> list[int]:
    device = getattr(model, "device", torch.device("cpu"))
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@torch.no_grad()
def explore_generation(model, tokenizer, params: Mapping[str, Any], top_n: int = 10) -> dict[str, Any]:
    """What the generation explorer shows for one setting of its controls.

    Generates with ``model.generate`` (so beams work too), seeded with
    ``params["seed"]`` without touching the global random state, and computes the
    first new token's distribution after the chosen processing
    (:func:`rlhf_helpers.sampling.next_token_distribution`).

    Args:
        params: any of the keys of :data:`GENERATION_DEFAULTS`; the rest take their defaults.
        top_n: how many of the most probable next tokens to return.

    Returns:
        ``{"prompt", "text"`` (the new text only), ``"new_token_ids"``, ``"tokens"``,
        ``"token_ids"``, ``"probs"`` (the plotted bars, most probable first),
        ``"kept"`` (tokens left with non-zero probability), ``"params"`` (all of them)``}``.
    """
    from rlhf_helpers.sampling import encode_prompt, next_token_distribution

    p = _check_generation_params(params)
    input_ids = encode_prompt(model, tokenizer, p["prompt"])
    limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if limit is not None and input_ids.shape[-1] + p["max_new_tokens"] > limit:
        raise ValueError(f"prompt ({input_ids.shape[-1]} tokens) + max_new_tokens ({p['max_new_tokens']}) "
                         f"exceeds the model's {limit} positions")
    kwargs: dict[str, Any] = dict(
        do_sample=p["do_sample"], num_beams=p["num_beams"], max_new_tokens=p["max_new_tokens"],
        min_new_tokens=p["min_new_tokens"], repetition_penalty=p["repetition_penalty"],
        pad_token_id=tokenizer.pad_token_id,
    )
    if p["do_sample"]:  # generate() warns when these are set for greedy or beam search
        kwargs.update(temperature=p["temperature"], top_k=p["top_k"], top_p=p["top_p"])
    with warnings.catch_warnings(), torch.random.fork_rng(devices=_rng_devices(model)):
        warnings.simplefilter("ignore")
        torch.manual_seed(p["seed"])
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    new_ids = out[0, input_ids.shape[-1]:]
    settings = {k: v for k, v in p.items() if k != "prompt"}
    dist = next_token_distribution(model, tokenizer, p["prompt"], top_n=top_n, **settings)
    return {
        "prompt": p["prompt"],
        "text": tokenizer.decode(new_ids, skip_special_tokens=True),
        "new_token_ids": new_ids.tolist(),
        "tokens": dist.tokens,
        "token_ids": dist.token_ids,
        "probs": dist.probs,
        "kept": dist.kept,
        "params": p,
    }


def _chart_png(result: Mapping[str, Any]) -> bytes:
    """The next-token bar chart of an :func:`explore_generation` result, as PNG bytes."""
    import matplotlib.figure

    from rlhf_helpers.plots import plot_next_token_distribution

    fig = matplotlib.figure.Figure(figsize=(5.6, 3.2), dpi=90)  # not pyplot: no global figure, no backend needed
    ax = fig.add_subplot()
    p = result["params"]
    mode = ("sampling" if p["do_sample"] else "greedy") if p["num_beams"] == 1 else f"beam search ({p['num_beams']} beams)"
    plot_next_token_distribution(result["tokens"], result["probs"], ax=ax,
                                 title=f"next token: {mode}, {result['kept']} tokens kept")
    ax.title.set_fontsize(10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class GenerationExplorer:
    """The generation explorer: controls, the generated text and the next-token chart.

    ``controls`` maps each parameter name of :data:`GENERATION_DEFAULTS` to its
    widget; ``text`` (``HTML``), ``chart`` (``Image``, PNG) and ``info`` (``HTML``)
    show the result; ``widget`` is the whole panel; ``result`` the last
    :func:`explore_generation` output. Any change of a control calls :meth:`update`.
    """

    def __init__(self, model, tokenizer, top_n: int = 10, **initial: Any):
        import ipywidgets as w

        self.model, self.tokenizer, self.top_n = model, tokenizer, top_n
        start = _check_generation_params(initial)
        limit = getattr(model.config, "n_positions", None) or 1024
        max_tokens = max(1, min(100, limit - 16))
        style = {"description_width": "150px"}
        layout = w.Layout(width="420px")
        slider = dict(continuous_update=False, style=style, layout=layout)
        self.controls: dict[str, Any] = {
            "prompt": w.Text(value=start["prompt"], description="prompt", continuous_update=False,
                             style=style, layout=w.Layout(width="640px")),
            "do_sample": w.Checkbox(value=start["do_sample"], description="sample (do_sample)", indent=False),
            "temperature": w.FloatSlider(value=start["temperature"], min=0.05, max=3.0, step=0.05,
                                         description="temperature", **slider),
            "top_k": w.IntSlider(value=start["top_k"], min=0, max=100, description="top-k (0 = off)", **slider),
            "top_p": w.FloatSlider(value=start["top_p"], min=0.01, max=1.0, step=0.01,
                                   description="top-p", **slider),
            "num_beams": w.IntSlider(value=start["num_beams"], min=1, max=8, description="beams", **slider),
            "repetition_penalty": w.FloatSlider(value=start["repetition_penalty"], min=0.5, max=3.0, step=0.05,
                                                description="repetition penalty", **slider),
            "min_new_tokens": w.IntSlider(value=min(start["min_new_tokens"], max_tokens), min=0, max=max_tokens,
                                          description="min new tokens", **slider),
            "max_new_tokens": w.IntSlider(value=min(start["max_new_tokens"], max_tokens), min=1, max=max_tokens,
                                          description="max new tokens", **slider),
            "seed": w.IntText(value=start["seed"], description="seed", style=style,
                              layout=w.Layout(width="260px")),
        }
        for name, control in self.controls.items():
            control.add_class(f"rlhf-control-{name.replace('_', '-')}")
        self.text = w.HTML().add_class(EXPLORER_TEXT_CLASS)
        self.chart = w.Image(format="png").add_class(EXPLORER_CHART_CLASS)
        self.info = w.HTML().add_class(EXPLORER_INFO_CLASS)
        c = self.controls
        column_a = w.VBox([c["do_sample"], c["temperature"], c["top_k"], c["top_p"], c["seed"]])
        column_b = w.VBox([c["num_beams"], c["repetition_penalty"], c["min_new_tokens"], c["max_new_tokens"]])
        self.widget = w.VBox([c["prompt"], w.HBox([column_a, column_b]), self.info, self.text, self.chart])
        self.widget.add_class(EXPLORER_CLASS)
        self.widget.explorer = self  # reach the explorer from the displayed panel
        self.result: dict[str, Any] | None = None
        for control in self.controls.values():
            control.observe(self.update, names="value")
        self.update()

    def params(self) -> dict[str, Any]:
        """The controls' current values."""
        return {name: control.value for name, control in self.controls.items()}

    def update(self, change: Any = None) -> None:
        """Recompute and redraw; a bad setting is reported in the panel instead of raising."""
        p = self.params()
        for name in ("temperature", "top_k", "top_p", "seed"):  # warpers only act when sampling
            self.controls[name].disabled = not p["do_sample"]
        try:
            result = explore_generation(self.model, self.tokenizer, p, top_n=self.top_n)
        except (ValueError, TypeError) as exc:
            self.info.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        self.result = result
        n_new = len(result["new_token_ids"])
        self.info.value = f"<small>{n_new} new tokens</small>"
        self.text.value = (f"<div style='font-family:monospace;max-width:640px'><b>{html.escape(result['prompt'])}</b>"
                           f"{html.escape(result['text'])}</div>")
        self.chart.value = _chart_png(result)


def generation_explorer(model, tokenizer, **initial: Any):
    """An ipywidgets panel to try every generation parameter on the policy, live.

    A control per parameter (prompt, sampling on/off, temperature, top-k, top-p,
    beams, repetition penalty, min/max new tokens, seed); on every change it shows
    the generated text (bold: the prompt) and a bar chart of the most probable next
    tokens after the chosen processing. The logic is :func:`explore_generation`.

    CSS hooks: the panel has class ``rlhf-generation-explorer``, the text
    ``rlhf-generated-text``, the chart ``rlhf-next-token-chart``, each control
    ``rlhf-control-<name>`` (e.g. ``rlhf-control-top-p``).

    Args:
        initial: starting values for any of :data:`GENERATION_DEFAULTS`.

    Returns:
        The panel (an ``ipywidgets.VBox``; ``panel.explorer`` is the :class:`GenerationExplorer`).
    """
    return GenerationExplorer(model, tokenizer, **initial).widget


# ----------------------------------------------------------------------------- lab 4: beta explorer
BETA_EXPLORER_CLASS = "rlhf-beta-explorer"
BETA_SLIDER_CLASS = "rlhf-control-beta"
BETA_CHART_CLASS = "rlhf-beta-chart"
BETA_INFO_CLASS = "rlhf-beta-info"


def _beta_chart_png(state: Mapping[str, Any], vocab: list[str]) -> bytes:
    """The three bar charts (pi_ref, reward, pi*) of a :func:`rlhf_helpers.kl.beta_explorer_state`, as PNG."""
    import matplotlib.figure

    from rlhf_helpers.plots import plot_beta_bars

    fig = matplotlib.figure.Figure(figsize=(9, 2.6), dpi=80)  # not pyplot: no global figure
    axes = fig.subplots(1, 3, sharey=True)
    plot_beta_bars(vocab, state["ref_probs"].tolist(), state["rewards"].tolist(), state["policy"].tolist(),
                   axes=axes, beta=state["beta"])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class BetaExplorer:
    """The beta explorer: a log-scale slider for beta and bar charts of pi_ref, r and pi*.

    ``slider`` (``FloatLogSlider``, description ``"beta"``), ``chart`` (``Image``, PNG),
    ``info`` (``HTML``: E[r], KL and the objective at pi*); ``widget`` is the panel;
    ``state`` the last :func:`rlhf_helpers.kl.beta_explorer_state`. Moving the slider
    calls :meth:`update`. ``policy_fn``, ``kl_fn`` and ``objective_fn`` are passed on to
    :func:`~rlhf_helpers.kl.beta_explorer_state` (None: the kit's versions).
    """

    def __init__(self, vocab=None, ref_probs=None, rewards=None, beta: float = 1.0,
                 beta_range: tuple[float, float] = (0.01, 10.0), *, policy_fn=None, kl_fn=None, objective_fn=None):
        import math

        import ipywidgets as w

        from rlhf_helpers import kl

        self.vocab = list(vocab if vocab is not None else kl.TOY_VOCAB)
        self.ref_probs = ref_probs if ref_probs is not None else kl.TOY_REF_PROBS
        self.rewards = rewards if rewards is not None else kl.TOY_REWARDS
        self.functions = {"policy_fn": policy_fn, "kl_fn": kl_fn, "objective_fn": objective_fn}
        lo, hi = beta_range
        if not 0 < lo < hi:
            raise ValueError(f"beta_range should be (low, high) with 0 < low < high, got {beta_range!r}")
        if not lo <= beta <= hi:
            raise ValueError(f"beta should lie in beta_range {beta_range!r}, got {beta!r}")
        first = kl.beta_explorer_state(self.ref_probs, self.rewards, beta, **self.functions)  # checks the inputs
        if len(self.vocab) != first["policy"].numel():
            raise ValueError(f"vocab has {len(self.vocab)} words but ref_probs has {first['policy'].numel()} entries")
        self.slider = w.FloatLogSlider(value=beta, base=10, min=math.log10(lo), max=math.log10(hi), step=0.05,
                                       description="beta", readout_format=".3g", continuous_update=False,
                                       layout=w.Layout(width="480px"))
        self.slider.add_class(BETA_SLIDER_CLASS)
        self.chart = w.Image(format="png").add_class(BETA_CHART_CLASS)
        self.info = w.HTML().add_class(BETA_INFO_CLASS)
        self.widget = w.VBox([self.slider, self.info, self.chart])
        self.widget.add_class(BETA_EXPLORER_CLASS)
        self.widget.explorer = self
        self.state: dict[str, Any] | None = None
        self.slider.observe(self.update, names="value")
        self.update()

    def update(self, change: Any = None) -> None:
        """Recompute pi* for the slider's beta and redraw."""
        from rlhf_helpers.kl import beta_explorer_state

        s = beta_explorer_state(self.ref_probs, self.rewards, self.slider.value, **self.functions)
        self.state = s
        self.info.value = (
            f"<span style='font-family:monospace'>beta = {s['beta']:.3g} &nbsp; "
            f"E<sub>&pi;*</sub>[r] = {s['expected_reward']:.3f} (reference {s['ref_expected_reward']:.3f}) &nbsp; "
            f"KL(&pi;* || &pi;<sub>ref</sub>) = {s['kl']:.3f} &nbsp; objective = {s['objective']:.3f} &nbsp; "
            f"most likely: <b>{html.escape(self.vocab[s['top']])}</b></span>")
        if s.get("kit_fallback"):
            self.info.value += ("<br><i>showing the kit's " + html.escape(", ".join(s["kit_fallback"]))
                                + " until you write yours</i>")
        self.chart.value = _beta_chart_png(s, self.vocab)


def beta_explorer(vocab=None, ref_probs=None, rewards=None, beta: float = 1.0,
                  beta_range: tuple[float, float] = (0.01, 10.0), *, policy_fn=None, kl_fn=None, objective_fn=None):
    """An ipywidgets panel: slide beta and watch pi* = pi_ref exp(r / beta) / Z move, live.

    Shows three bar charts over a toy vocabulary (the reference policy, the
    reward, and the KL-regularised optimum pi*) and the numbers E_pi*[r],
    KL(pi* || pi_ref) and the objective. Small beta piles pi* onto the word the
    reward over-rates; large beta leaves it at pi_ref. The logic is
    :func:`rlhf_helpers.kl.beta_explorer_state`, with the functions given (in lab 4
    the learner's ``optimal_policy``, ``kl_divergence`` and ``regularized_objective``).

    CSS hooks: the panel has class ``rlhf-beta-explorer``, the slider (description
    ``"beta"``) ``rlhf-control-beta``, the chart ``rlhf-beta-chart``, the numbers
    ``rlhf-beta-info``.

    Args:
        vocab: V words (default :data:`rlhf_helpers.kl.TOY_VOCAB`).
        ref_probs: pi_ref over them (default :data:`rlhf_helpers.kl.TOY_REF_PROBS`).
        rewards: their rewards (default :data:`rlhf_helpers.kl.TOY_REWARDS`).
        beta: the starting beta, inside ``beta_range``.
        beta_range: the slider's ends (log scale).
        policy_fn: computes pi*, like :func:`rlhf_helpers.kl.optimal_policy` (default the kit's).
        kl_fn: computes KL(pi* || pi_ref), like :func:`rlhf_helpers.kl.kl_divergence` (default the kit's).
        objective_fn: computes J(pi*), like :func:`rlhf_helpers.kl.regularized_objective` (default the kit's).

    Returns:
        The panel (an ``ipywidgets.VBox``; ``panel.explorer`` is the :class:`BetaExplorer`).
    """
    return BetaExplorer(vocab, ref_probs, rewards, beta=beta, beta_range=beta_range, policy_fn=policy_fn,
                        kl_fn=kl_fn, objective_fn=objective_fn).widget
