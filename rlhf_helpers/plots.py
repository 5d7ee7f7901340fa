"""Plotting helpers shared by the labs (matplotlib only).

Each function draws on an ``ax`` you pass (or a new figure's) and returns the
``Axes``, so a notebook can combine plots and a test can inspect what was drawn.
Functions are grouped by the lab that introduced them.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes


# ----------------------------------------------------------------------------- lab 1: sampling
def _show_token(token: str) -> str:
    """A readable label for a token: spaces and newlines made visible, EOS named."""
    if token == "":
        return "<eos>"
    return token.replace("\n", "\\n").replace(" ", "\u2423")  # ␣ marks a leading space


def plot_next_token_distribution(tokens: Sequence[str], probs: Sequence[float], ax: Axes | None = None,
                                 title: str | None = None, color: str = "tab:blue") -> Axes:
    """Bar chart of next-token probabilities, most probable at the top.

    Args:
        tokens: decoded tokens (length N); a leading space is drawn as ``␣``.
        probs: their probabilities (length N), in [0, 1].
        ax: where to draw; a new 5 x 3 inch figure when None.
        title: the plot's title.

    Returns:
        The ``Axes``; its bars are ``ax.patches`` in the order of ``tokens``.
    """
    tokens, probs = list(tokens), [float(p) for p in probs]
    if len(tokens) != len(probs):
        raise ValueError(f"tokens and probs must have the same length, got {len(tokens)} and {len(probs)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    positions = list(range(len(tokens)))
    ax.barh(positions, probs, color=color)
    ax.set_yticks(positions, [_show_token(t) for t in tokens])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability")
    for y, p in zip(positions, probs):
        ax.text(min(p, 0.85) + 0.01, y, f"{p:.2f}", va="center", fontsize=8)
    if title:
        ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------- lab 2: rewards
def plot_reward_histogram(rewards: Sequence[float], ax: Axes | None = None, bins: int = 30,
                          title: str | None = None, xlabel: str = "reward", color: str = "tab:blue",
                          label: str | None = None) -> Axes:
    """Histogram of rewards with a dashed line at their mean.

    Args:
        rewards: N rewards (a list or a 1-D tensor; tensors are moved to the CPU).
        ax: where to draw; a new 5 x 3 inch figure when None.
        bins: number of histogram bins.
        title, xlabel: the plot's title and x-axis label.
        color: colour of the bars and the mean line.
        label: legend entry for the bars (the mean line is labelled with its value).

    Returns:
        The ``Axes``; the bars are ``ax.patches`` and the mean line ``ax.lines[-1]``.
    """
    values = [float(r) for r in (rewards.detach().cpu().tolist() if hasattr(rewards, "detach") else rewards)]
    if not values:
        raise ValueError("rewards is empty: nothing to plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.hist(values, bins=bins, color=color, alpha=0.7, label=label)
    mean = sum(values) / len(values)
    ax.axvline(mean, color=color, linestyle="--", label=f"mean {mean:.2f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_reward_vs_temperature(temperatures: Sequence[float], means: Sequence[float],
                               std_errors: Sequence[float], ax: Axes | None = None,
                               title: str | None = None, ylabel: str = "expected reward",
                               label: str | None = None, n_se: float = 1.96) -> Axes:
    """Expected reward against sampling temperature, with error bars.

    Args:
        temperatures: the K temperatures (x axis).
        means: the K empirical mean rewards.
        std_errors: their K standard errors; the bars span ``mean ± n_se · SE``
            (1.96: an approximate 95% confidence interval).
        ax: where to draw; a new 5 x 3 inch figure when None.
        title, ylabel, label: the title, y-axis label and legend entry.

    Returns:
        The ``Axes``; the curve is ``ax.lines[0]``.
    """
    xs, ys, es = list(map(float, temperatures)), list(map(float, means)), list(map(float, std_errors))
    if not len(xs) == len(ys) == len(es):
        raise ValueError(f"temperatures, means and std_errors must have the same length, "
                         f"got {len(xs)}, {len(ys)} and {len(es)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.errorbar(xs, ys, yerr=[n_se * e for e in es], marker="o", capsize=3, label=label)
    ax.set_xlabel("sampling temperature")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if label:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------- lab 3: PPO
PPO_CURVE_LABELS = {
    "reward_mean": "mean reward (score)",
    "kl": "KL to reference (nats / response)",
    "positive_share": "share of positive samples",
    "entropy": "entropy (nats / token)",
    "clip_fraction": "clipped token fraction",
    "policy_loss": "policy loss",
    "value_loss": "value loss",
    "kl_coef": "KL coefficient beta",
}
"""Axis labels for the keys of :meth:`rlhf_helpers.ppo.PPOTrainer.step`'s stats (others use the key)."""


def plot_training_curves(history: Sequence[dict], keys: Sequence[str] = ("reward_mean", "kl"),
                         axes: Sequence[Axes] | None = None, label: str | None = None,
                         title: str | None = None, color: str | None = None) -> list[Axes]:
    """One panel per statistic against the PPO step, e.g. mean reward and KL.

    Args:
        history: per-step stats dicts (``PPOTrainer.train``'s return value, or
            any list of dicts holding ``keys``; a ``step`` key gives the x
            value, else the index).
        keys: the statistics to draw, one panel each (see ``PPO_CURVE_LABELS``).
        axes: ``len(keys)`` axes to draw on (to overlay runs); new figure when None.
        label: legend entry for this run (legends are drawn when given).
        title: the figure's title (``suptitle``) when a new figure is made.
        color: line colour.

    Returns:
        The list of ``Axes``; the curve of ``keys[i]`` is ``axes[i].lines[-1]``.
    """
    history = list(history)
    keys = list(keys)
    if not history:
        raise ValueError("history is empty: nothing to plot")
    missing = [k for k in keys if k not in history[0]]
    if missing:
        raise KeyError(f"history has no {missing}; available: {sorted(history[0])}")
    if axes is None:
        fig, new_axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3), squeeze=False)
        axes = list(new_axes[0])
        if title:
            fig.suptitle(title)
    elif len(axes) != len(keys):
        raise ValueError(f"got {len(axes)} axes for {len(keys)} keys")
    xs = [h.get("step", i) for i, h in enumerate(history)]
    for ax, key in zip(axes, keys):
        ax.plot(xs, [float(h[key]) for h in history], marker=".", color=color, label=label)
        ax.set_xlabel("PPO step")
        ax.set_ylabel(PPO_CURVE_LABELS.get(key, key))
        ax.grid(alpha=0.3)
        if label:
            ax.legend(fontsize=8)
    if axes and axes[0].figure is not None:
        axes[0].figure.tight_layout()
    return list(axes)


# ----------------------------------------------------------------------------- lab 4: KL and beta
def plot_beta_bars(vocab: Sequence[str], ref_probs: Sequence[float], rewards: Sequence[float],
                   policy: Sequence[float], axes: Sequence[Axes] | None = None,
                   beta: float | None = None) -> list[Axes]:
    """Three bar charts side by side: pi_ref, the reward, and the policy pi* (lab 4's beta explorer).

    Args:
        vocab: the V words (y-axis labels, shared by the three charts).
        ref_probs: pi_ref, V probabilities.
        rewards: the V rewards (bars left of 0 are negative).
        policy: pi*, V probabilities.
        axes: three ``Axes`` to draw on; a new 9 x 2.8 inch figure when None.
        beta: shown in the third chart's title when given.

    Returns:
        The three ``Axes``; each one's bars are its ``patches`` in the order of ``vocab``.
    """
    vocab = list(vocab)
    ref, rew, pol = ([float(v) for v in x] for x in (ref_probs, rewards, policy))
    if not len(vocab) == len(ref) == len(rew) == len(pol):
        raise ValueError(f"vocab, ref_probs, rewards and policy must have the same length, "
                         f"got {len(vocab)}, {len(ref)}, {len(rew)} and {len(pol)}")
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(9, 2.8), sharey=True)
    axes = list(axes)
    if len(axes) != 3:
        raise ValueError(f"axes should hold 3 Axes, got {len(axes)}")
    positions = list(range(len(vocab)))
    title = "policy $\\pi^*$" + (f" ($\\beta$ = {beta:.3g})" if beta is not None else "")
    panels = [(axes[0], ref, "reference $\\pi_{ref}$", "tab:gray"),
              (axes[1], rew, "reward $r$", "tab:orange"),
              (axes[2], pol, title, "tab:blue")]
    for ax, values, name, color in panels:
        ax.barh(positions, values, color=color)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes:  # first word at the top; with shared y axes one inversion covers all
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
    axes[0].set_yticks(positions, vocab)
    for ax in (axes[0], axes[2]):
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability")
    axes[1].axvline(0, color="black", linewidth=0.8)
    axes[1].set_xlabel("reward")
    for y, p in zip(positions, pol):
        axes[2].text(min(p, 0.8) + 0.02, y, f"{p:.2f}", va="center", fontsize=8)
    return axes


def plot_kl_estimators(estimates: dict, exact: float, ax: Axes | None = None,
                       title: str | None = None) -> Axes:
    """Box plots of per-sample KL estimates, their means (triangles) and the exact KL (dashed line).

    Args:
        estimates: ``{name: per-sample values}`` (e.g. the output of ``kl_estimators``:
            tensors of shape ``(N,)`` or lists).
        exact: the exact KL(p || q).
        ax: where to draw; a new 5 x 3 inch figure when None.

    Returns:
        The ``Axes``; the exact line is ``ax.lines[-1]``.
    """
    names = list(estimates)
    if not names:
        raise ValueError("estimates is empty: nothing to plot")
    data = [[float(v) for v in (x.detach().cpu().flatten().tolist() if hasattr(x, "detach") else x)]
            for x in estimates.values()]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.boxplot(data, showmeans=True, showfliers=False, tick_labels=names)
    ax.axhline(float(exact), color="tab:red", linestyle="--", label=f"exact KL = {float(exact):.3f}")
    ax.set_ylabel("per-sample estimate")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_reward_vs_kl(kls: Sequence[Sequence[float]], rewards: Sequence[Sequence[float]],
                      labels: Sequence[str], ax: Axes | None = None, title: str | None = None,
                      xlabel: str = "KL(policy || reference) [nats]", ylabel: str = "mean reward",
                      end_kls: Sequence[float] | None = None, end_rewards: Sequence[float] | None = None,
                      end_errors: Sequence[float] | None = None) -> Axes:
    """Reward against KL for several training runs (lab 4's beta sweep).

    Each run is drawn as its trajectory over training (thin line) and a large
    marker at its end point, so the frontier of the runs' end points is
    visible: more reward costs more KL.

    Args:
        kls: one sequence of KL values per run (e.g. per PPO step), K runs.
        rewards: the matching mean rewards, K sequences of the same lengths.
        labels: K legend entries (e.g. ``"beta = 0.1"``).
        ax: where to draw; a new 5 x 3.5 inch figure when None.
        end_kls, end_rewards: K end points (e.g. measured on held-out queries after
            training); default the last point of each trajectory.
        end_errors: K standard errors of ``end_rewards``, drawn as +- 1.96 SE bars.

    Returns:
        The ``Axes``; run k's trajectory is ``ax.lines[k]``, its end point ``ax.collections[k]``
        (without ``end_errors``).
    """
    kls, rewards, labels = [list(map(float, k)) for k in kls], [list(map(float, r)) for r in rewards], list(labels)
    if not len(kls) == len(rewards) == len(labels):
        raise ValueError(f"kls, rewards and labels must have the same length (one per run), "
                         f"got {len(kls)}, {len(rewards)} and {len(labels)}")
    for i, (k, r) in enumerate(zip(kls, rewards)):
        if len(k) != len(r) or not k:
            raise ValueError(f"run {i}: kls and rewards must be non-empty and of the same length, "
                             f"got {len(k)} and {len(r)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    colors = plt.get_cmap("viridis")
    for i, (k, r, label) in enumerate(zip(kls, rewards, labels)):
        color = colors(i / max(1, len(kls) - 1) * 0.9)
        ax.plot(k, r, color=color, alpha=0.5, linewidth=1)
    ends_k = [k[-1] for k in kls] if end_kls is None else [float(v) for v in end_kls]
    ends_r = [r[-1] for r in rewards] if end_rewards is None else [float(v) for v in end_rewards]
    if not len(ends_k) == len(ends_r) == len(kls):
        raise ValueError(f"end_kls and end_rewards need one value per run ({len(kls)}), "
                         f"got {len(ends_k)} and {len(ends_r)}")
    for i, (k, r, label) in enumerate(zip(ends_k, ends_r, labels)):
        color = colors(i / max(1, len(kls) - 1) * 0.9)
        if end_errors is not None:
            ax.errorbar([k], [r], yerr=[1.96 * float(end_errors[i])], color=color, capsize=3, zorder=2)
        ax.scatter([k], [r], color=color, s=60, zorder=3, label=label, edgecolor="black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------- lab 5: deriving DPO
def plot_margin_curves(margins: Sequence[float], curves: dict[str, Sequence[float]], ax: Axes | None = None,
                       ylabel: str = "loss", title: str | None = None) -> Axes:
    """Curves against the DPO margin h = beta [log-ratio(y_w) - log-ratio(y_l)], e.g. -log σ(h) beside -σ(h).

    Args:
        margins: the N values of h (x axis).
        curves: ``{legend label: N values}``, one line each.
        ax: where to draw; a new 4.5 x 3 inch figure when None.
        ylabel / title: axis label and title.

    Returns:
        The ``Axes``; the lines are ``ax.lines`` in the order of ``curves`` (then a dotted line at h = 0).
    """
    xs = [float(m) for m in margins]
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    for name, ys in curves.items():
        if len(ys) != len(xs):
            raise ValueError(f"curve {name!r} has {len(ys)} values for {len(xs)} margins")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    for name, ys in curves.items():
        ax.plot(xs, [float(y) for y in ys], label=name)
    ax.axvline(0.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("margin $h$ (implied reward of chosen minus rejected)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_policy_comparison(vocab: Sequence[str], policies: dict[str, Sequence[float]], ax: Axes | None = None,
                           title: str | None = None) -> Axes:
    """Grouped horizontal bars: several distributions over the same few responses (e.g. pi_ref, pi*, pi_DPO).

    Args:
        vocab: the V responses (y-axis labels, first at the top).
        policies: ``{legend label: V probabilities}``, one bar colour each.
        ax: where to draw; a new 6 x (0.5 V + 1) inch figure when None.
        title: the plot's title.

    Returns:
        The ``Axes``; its ``patches`` are the bars, policy by policy, each in the order of ``vocab``.
    """
    vocab = list(vocab)
    if not policies:
        raise ValueError("policies is empty: nothing to plot")
    for name, probs in policies.items():
        if len(probs) != len(vocab):
            raise ValueError(f"policy {name!r} has {len(probs)} probabilities for {len(vocab)} responses")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.5 * len(vocab) + 1))
    height = 0.8 / len(policies)
    for k, (name, probs) in enumerate(policies.items()):
        ys = [i - 0.4 + height * (k + 0.5) for i in range(len(vocab))]
        ax.barh(ys, [float(p) for p in probs], height=height, label=name)
    ax.set_yticks(range(len(vocab)), vocab)
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set_xlabel("probability")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# ----------------------------------------------------------------------------- lab 6: DPO with TRL
def plot_log_history(log_history: list[dict], keys: Sequence[str], ax: Axes | None = None) -> Axes:
    """Curves of a ``Trainer``'s ``state.log_history``: one line per key against the step.

    Each line (``ax.plot``, labelled with its key) has as x the ``"step"`` of
    every entry that holds the key and as y the key's values in those entries,
    in order. Entries without the key are skipped: ``"loss"`` is in the
    training entries, ``"eval_loss"`` in evaluation entries, and the final
    summary entry holds ``"train_loss"`` (the mean), never ``"loss"``.

    Lab 6's exercise; this is the kit's answer (hidden while lab 6 is graded).

    Returns:
        The ``Axes`` (a new figure when ``ax`` is None), x-axis labelled "step", with a legend.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for key in keys:
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        ax.plot([x for x, _ in points], [y for _, y in points], label=key)
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    return ax
