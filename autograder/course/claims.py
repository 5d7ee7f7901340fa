"""What the labs say about their results, checked on the solutions' own runs.

DESIGN.md ("Every lab"): every sentence of a learner copy that states a direction
or an order of a result has an assertion on the solution's own figures, on seeds
0-4 where the seed is a choice. This module holds those assertions and runs them.

A :class:`Claim` quotes the words of the learner copy that state the result (a
test checks they are still there, so text and claim cannot drift apart), names
the code cell after which its figures exist (``after``: a line of that cell), the
figures themselves (Python expressions evaluated in the lab's kernel at that
point, turned into plain numbers and lists) and ``holds``, a predicate over them
evaluated outside the kernel. The figures are the ones the learner's own run
prints or plots: nothing is re-run for the claim.

:func:`run_lab` executes a solution notebook top to bottom in a fresh kernel, in
a scratch copy of its folder, with a probe cell after each anchor, and returns
one :class:`Verdict` per claim. ``tests/labs/test_claims.py`` runs every lab once
(seed 0: the notebook as learners get it); ``rlhf-course bench --claims`` runs
them on seeds 0-4 (:func:`sweep`). For a seed ``s`` other than 0 a first cell
shifts every seed the run sets, the notebook's and the libraries' (TRL's
``seed=``, a helper's default), by ``1000 * s``: ``torch.manual_seed``,
``torch.Generator().manual_seed``, ``random.seed`` / ``random.Random``, and
numpy's ``seed`` / ``default_rng``. Seed 0 adds nothing.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from autograder.cells import is_test_cell
from autograder.labs import budget, source_notebook

SEEDS = (0, 1, 2, 3, 4)
SEED_STRIDE = 1000
MARK = "<<claim-figures>>"


@dataclass(frozen=True)
class Claim:
    """One statement of a lab about its own result, and the assertion that checks it.

    Attributes:
        lab: the lab id, e.g. ``"lab3_ppo"``.
        id: a short name, unique within the lab.
        quote: words of the learner copy that state the result (whitespace-insensitive).
        after: a line of the code cell after which the figures exist (it must name one cell).
        figures: name -> Python expression evaluated in the lab's kernel there (plain data, tensors or arrays).
        holds: the assertion, a predicate over the figures (a dict of plain data).
    """

    lab: str
    id: str
    quote: str
    after: str
    figures: dict[str, str]
    holds: Callable[[dict], bool]


@dataclass
class Verdict:
    claim: Claim
    seed: int
    figures: dict = field(default_factory=dict)
    ok: bool = False
    error: str | None = None

    def line(self) -> str:
        state = "holds" if self.ok else ("ERROR " + self.error if self.error else "FAILS")
        return f"{self.claim.lab}/{self.claim.id} (seed {self.seed}): {state}; figures {_short(self.figures)}"


def _short(figures: dict, width: int = 400) -> str:
    text = json.dumps(figures, default=str)
    return text if len(text) <= width else text[:width] + " ..."


# ----------------------------------------------------------------------------- the kernel side
PRELUDE = '''
def _claims_plain(value):
    """Tensors, arrays and containers of them as JSON-ready numbers and lists."""
    import math
    if hasattr(value, "detach"):
        value = value.detach().cpu().tolist()
    elif hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _claims_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_claims_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
'''

SEED_SHIFT = '''
import random as _claims_random

import numpy as _claims_np
import torch as _claims_torch

_CLAIMS_SHIFT = {shift}


def _claims_shifted(seed):
    return seed + _CLAIMS_SHIFT if isinstance(seed, int) and not isinstance(seed, bool) else seed


class _ClaimsGenerator(_claims_torch.Generator):
    def manual_seed(self, seed):
        return super().manual_seed(_claims_shifted(seed))


_claims_torch.Generator = _ClaimsGenerator
_claims_manual_seed = _claims_torch.manual_seed
_claims_torch.manual_seed = lambda seed: _claims_manual_seed(_claims_shifted(seed))
_claims_torch.random.manual_seed = _claims_torch.manual_seed


class _ClaimsRandom(_claims_random.Random):
    def seed(self, a=None, version=2):
        super().seed(_claims_shifted(a), version)


_claims_random.Random = _ClaimsRandom
_claims_random_seed = _claims_random.seed
_claims_random.seed = lambda a=None, version=2: _claims_random_seed(_claims_shifted(a), version)
_claims_default_rng = _claims_np.random.default_rng
_claims_np.random.default_rng = lambda seed=None: _claims_default_rng(_claims_shifted(seed))
_claims_np_seed = _claims_np.random.seed
_claims_np.random.seed = lambda seed=None: _claims_np_seed(_claims_shifted(seed))
'''


def _probe(claims: Sequence[Claim]) -> str:
    lines = ["import json as _claims_json", "_claims_out = {}"]
    for claim in claims:
        lines.append(f"_claims_out[{claim.id!r}] = {{}}")
        for name, expr in claim.figures.items():
            lines += ["try:",
                      f"    _claims_out[{claim.id!r}][{name!r}] = _claims_plain({expr})",
                      "except Exception as _claims_error:",
                      f"    _claims_out[{claim.id!r}][{name!r}] = {{'error': repr(_claims_error)}}"]
    lines.append(f"print({MARK!r} + _claims_json.dumps(_claims_out))")
    return "\n".join(lines)


def _anchor(nb, claim: Claim) -> int:
    """The index of the one non-test code cell holding ``claim.after`` as a line."""
    hits = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and not is_test_cell(c)
            and any(line.strip() == claim.after.strip() for line in c.source.splitlines())]
    if len(hits) != 1:
        raise ValueError(f"{claim.lab}/{claim.id}: the line {claim.after!r} is in {len(hits)} code cells, not one")
    return hits[0]


def probed_notebook(nb, claims: Sequence[Claim], seed: int = 0):
    """A copy of ``nb`` with the prelude (and the seed shift) first and a probe cell after each anchor."""
    import nbformat

    anchors: dict[int, list[Claim]] = {}
    for claim in claims:
        anchors.setdefault(_anchor(nb, claim), []).append(claim)
    out = copy.deepcopy(nb)
    cells = [nbformat.v4.new_code_cell(PRELUDE)]
    if seed:
        cells.append(nbformat.v4.new_code_cell(SEED_SHIFT.format(shift=SEED_STRIDE * seed)))
    for i, cell in enumerate(out.cells):
        cells.append(cell)
        if i in anchors:
            probe = nbformat.v4.new_code_cell(_probe(anchors[i]))
            probe.metadata["claims"] = [c.id for c in anchors[i]]
            cells.append(probe)
    out.cells = cells
    return out


def _read_figures(nb) -> tuple[dict, list[str]]:
    """The figures the probe cells printed, and the errors of the lab's own (non-test) cells."""
    figures: dict = {}
    errors = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and o.name == "stdout" and MARK in o.text:
                for line in o.text.splitlines():
                    if line.startswith(MARK):
                        figures.update(json.loads(line[len(MARK):]))
            elif o.output_type == "error" and not is_test_cell(cell):
                errors.append(f"{o.ename}: {str(o.evalue)[:200]} (in {cell.source[:60]!r})")
    return figures, errors


def _judge(claim: Claim, seed: int, figures: dict | None, errors: list[str]) -> Verdict:
    verdict = Verdict(claim, seed, figures or {})
    broken = [f"{k}: {v['error']}" for k, v in (figures or {}).items() if isinstance(v, dict) and "error" in v]
    if figures is None:
        verdict.error = "its probe never ran: " + ("; ".join(errors) or "the notebook stopped before it")
    elif broken:
        verdict.error = "a figure could not be read: " + "; ".join(broken)
    else:
        try:
            verdict.ok = bool(claim.holds(figures))
        except Exception as exc:  # a figure of the wrong shape: report, do not crash the sweep
            verdict.error = f"{type(exc).__name__}: {exc}"
    return verdict


def run_lab(solutions: Path, lab: str, seed: int = 0, claims: Sequence[Claim] | None = None,
            timeout: int = 900) -> list[Verdict]:
    """Execute the lab's solution notebook once (in a scratch copy of its folder) and judge its claims."""
    import nbformat
    from nbclient import NotebookClient

    claims = [c for c in (CLAIMS if claims is None else claims) if c.lab == lab]
    source = source_notebook(solutions, lab)
    nb = probed_notebook(nbformat.read(source, as_version=4), claims, seed)
    with tempfile.TemporaryDirectory(prefix=f"claims-{lab}-") as tmp:
        work = Path(tmp) / lab
        shutil.copytree(source.parent, work)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(work)}}).execute()
    figures, errors = _read_figures(nb)
    return [_judge(c, seed, figures.get(c.id), errors) for c in claims]


def sweep(solutions: Path, labs: Sequence[str], seeds: Sequence[int] = SEEDS, jobs: int = 2,
          progress: Callable[[str], None] = print) -> list[Verdict]:
    """Every claim of ``labs`` on every seed; ``jobs`` notebooks at a time, the long labs first (a long
    lab started last would run alone at the end)."""
    tasks = [(lab, seed) for seed in seeds for lab in labs if any(c.lab == lab for c in CLAIMS)]
    tasks.sort(key=lambda task: -budget(task[0]))  # stable: seeds and labs in order otherwise

    def one(task):
        lab, seed = task
        verdicts = run_lab(solutions, lab, seed)
        failing = [v.claim.id for v in verdicts if not v.ok]
        progress(f"{lab} seed {seed}: {len(verdicts) - len(failing)} of {len(verdicts)} claims hold"
                 + (f"; failing: {', '.join(failing)}" if failing else ""))
        return verdicts

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return [v for verdicts in pool.map(one, tasks) for v in verdicts]


def failures(verdicts: Sequence[Verdict]) -> dict[tuple[str, str], list[Verdict]]:
    """Per claim (lab, id), the verdicts that did not hold, for the claims failing on some seed."""
    out: dict[tuple[str, str], list[Verdict]] = {}
    for v in verdicts:
        if not v.ok:
            out.setdefault((v.claim.lab, v.claim.id), []).append(v)
    return out


def normalise(text: str) -> str:
    """Lower case, one space between words, markdown emphasis and code ticks dropped."""
    return re.sub(r"\s+", " ", re.sub(r"[*`]", "", text)).strip().lower()


# ----------------------------------------------------------------------------- the claims
def _decreasing(xs: Sequence[float]) -> bool:
    return all(a > b for a, b in zip(xs, xs[1:]))


def _falls(xs: Sequence[float]) -> bool:
    """Never rises, and ends lower than it starts (a curve that saturates may repeat a value)."""
    return all(a >= b for a, b in zip(xs, xs[1:])) and xs[-1] < xs[0]


def _share_of_end(curve: Sequence[float]) -> float:
    """How much of its last quarter's mean a curve had reached in its second fifth (logged batch means are noisy)."""
    early = curve[len(curve) // 5: 2 * len(curve) // 5] or curve[:1]
    late = curve[-max(1, len(curve) // 4):]
    return (sum(early) / len(early)) / (sum(late) / len(late))


def _below_frontier(point: dict, curve: Sequence[dict]) -> bool:
    """Whether ``point`` (kl, reward) lies below the curve of (kl, reward) points at its KL (linear between points)."""
    pts = sorted((p["kl"], p["reward"]) for p in curve)
    if point["kl"] >= pts[-1][0]:
        return point["reward"] < pts[-1][1]
    for (k0, r0), (k1, r1) in zip(pts, pts[1:]):
        if k0 <= point["kl"] <= k1:
            return point["reward"] < r0 + (r1 - r0) * (point["kl"] - k0) / max(k1 - k0, 1e-12)
    return False

def _agrees(lab: str, cid: str, quote: str, after: str, diff: str, tol: float) -> Claim:
    """A claim that two of the run's figures agree: ``diff`` (an expression) is below ``tol``."""
    return Claim(lab, cid, quote, after, {"diff": diff}, lambda f: f["diff"] < tol)


CLAIMS: list[Claim] = []

# --- lab 1: sampling and generation parameters
CLAIMS += [
    Claim("lab1_sampling", "temperature_reshapes",
          "$T \\to 0$ approaches greedy (one-hot), $T \\to \\infty$ the uniform distribution; the order never changes",
          after="fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), sharey=False)",
          figures={"top": "[softmax_with_temperature(next_logits, t).max() for t in (0.5, 1.0, 2.0)]",
                   "same_order": "all(torch.equal(softmax_with_temperature(next_logits, t).argsort(), next_logits.argsort())"
                                 " for t in (0.5, 2.0))"},
          holds=lambda f: _decreasing(f["top"]) and f["same_order"]),
    Claim("lab1_sampling", "samples_match_probabilities", "they should agree up to noise",
          after="shown = torch.topk(exact, 10).indices",
          figures={"z": "((counts[shown] - exact[shown]).abs()"
                          " / (exact[shown] * (1 - exact[shown]) / n).sqrt()).max()"},
          holds=lambda f: f["z"] < 4.0),
    Claim("lab1_sampling", "loop_equals_generate", "Greedy output must equal `model.generate(do_sample=False)`",
          after='print("generate()    :", repr(ref), "(equal)" if mine == ref else "(DIFFERENT)")',
          figures={"equal": "mine == ref", "seeds_001": "[samples[0] == samples[1], samples[0] == samples[2]]",
                   "lengths": "{f'{lo}-{hi}': n for (lo, hi), n in bounded.items()}"},
          holds=lambda f: f["equal"] and f["seeds_001"] == [True, False]
          and 35 <= f["lengths"]["35-40"] <= 40 and f["lengths"]["0-8"] <= 8 and f["lengths"]["0-40"] <= 40),
    Claim("lab1_sampling", "greedy_loops_penalty_helps", "Greedy decoding of a small model soon loops",
          after="distinct = {}",
          figures={"distinct": "[distinct[t][0] for t in (1.0, 1.2, 3.0)]",
                   "lengths": "[distinct[t][1] for t in (1.0, 1.2, 3.0)]"},
          holds=lambda f: f["distinct"][0] < 0.7 and f["distinct"][0] < f["distinct"][1] < f["distinct"][2]
          and len(set(f["lengths"])) > 1),
    Claim("lab1_sampling", "hot_top_p_keeps_more",
          "set `top-p = 0.5` and raise the temperature: why do more tokens survive?",
          after='result = explore_generation(model, tokenizer, {"prompt": "the acting was", "temperature": 0.7, "top_p": 0.8, "seed": 1})',
          figures={"kept": "[explore_generation(model, tokenizer, {'prompt': 'the acting was', 'temperature': t, 'top_p': 0.5,"
                           " 'seed': 1})['kept'] for t in (0.7, 1.0, 1.5, 2.0)]"},
          holds=lambda f: f["kept"][0] < f["kept"][-1] and all(a <= b for a, b in zip(f["kept"], f["kept"][1:]))),
]

# --- lab 2: rewards and rollouts
CLAIMS += [
    Claim("lab2_rewards", "sorted_by_score", "the pipeline **sorts them by score**",
          after="pipe_outputs = reward_pipe(texts, top_k=None)",
          figures={"scores": "[[d['score'] for d in out] for out in pipe_outputs]"},
          holds=lambda f: all(s == sorted(s, reverse=True) for s in f["scores"])),
    Claim("lab2_rewards", "position_gets_the_other_label", "gets the *other* label's score for every positive text",
          after='by_label = [next(d["score"] for d in out if d["label"] == "POSITIVE") for out in pipe_outputs]',
          figures={"pairs": "list(zip(by_position, by_label))"},
          holds=lambda f: all(abs(p + l - 1) < 1e-5 for p, l in f["pairs"] if l > 0.5)
          and any(l > 0.5 for _, l in f["pairs"])),
    _agrees("lab2_rewards", "sigmoid_of_logit_gap",
          "for two labels $p_{\\text{POS}} = \\sigma(z_{\\text{POS}} - z_{\\text{NEG}})$",
            'compare("sigmoid(z_pos - z_neg)", torch.sigmoid(z_pos - z_neg), p_pos)',
            "(torch.sigmoid(z_pos - z_neg) - p_pos).abs().max()", 1e-5),
    Claim("lab2_rewards", "uniform_lengths",
          "draws $n$ uniformly from $\\{a, \\dots, b-1\\}$ (upper bound **excluded**",
          after="counts = torch.bincount(draws, minlength=9)",
          figures={"counts": "counts"},
          holds=lambda f: f["counts"][0] == f["counts"][1] == f["counts"][8] == 0
          and all(abs(c - 1000) < 4 * (6000 * 5 / 36) ** 0.5 for c in f["counts"][2:8])),
    Claim("lab2_rewards", "probability_saturates", "near 0 and 1 the probability barely tells good from better",
          after="prob_rewards = rewards_of(full_texts, kind=\"probability\")",
          figures={"top": "[(z, p) for z, p in zip(logit_rewards.tolist(), prob_rewards.tolist()) if p > 0.98]"},
          holds=lambda f: len(f["top"]) >= 3 and max(z for z, _ in f["top"]) - min(z for z, _ in f["top"]) > 1.0
          and max(p for _, p in f["top"]) - min(p for _, p in f["top"]) < 0.02),
    Claim("lab2_rewards", "classifier_has_blind_spots", "has different blind spots, but has some",
          after="wrong = [(t, l, p.item()) for t, l, p in zip(review_texts, review_labels, test_p) if (p.item() > 0.5) != bool(l)]",
          figures={"probes_wrong": "sum((p.item() > 0.5) != bool(h) for (_, h), p in zip(probes, probe_p))",
                   "reviews_wrong": "len(wrong)"},
          holds=lambda f: f["probes_wrong"] >= 1 and f["reviews_wrong"] >= 2),
]

# --- lab 3: policy gradient and PPO
CLAIMS += [
    Claim("lab3_ppo", "estimate_converges", "one estimate misses it by sampling noise, which shrinks like $1/\\sqrt N$",
          after="misses = {}  # N -> (largest |estimate - exact|, largest standard error)",
          figures={"misses": "[misses[n] for n in sorted(misses)]"},
          holds=lambda f: _decreasing([m for m, _ in f["misses"]]) and all(m <= 4 * se for m, se in f["misses"])),
    Claim("lab3_ppo", "baseline_runs", "some red runs settle on a bad ending, which no green run does",
          after='toy_runs = {}  # label -> J curves, one row per seed',
          figures={"red": 'toy_runs["REINFORCE, rewards + 50"][:, -1]',
                   "green": 'toy_runs["REINFORCE, rewards + 50, baseline"][:, -1]', "rewards": "toy_rewards"},
          holds=lambda f: min(f["red"]) < 1.0 and min(f["green"]) > 0.9 * f["rewards"][1]),
    Claim("lab3_ppo", "baseline_cuts_variance", "A baseline cuts the variance without biasing the gradient",
          after="spreads = {}",
          figures={"spreads": "spreads"},
          holds=lambda f: f["spreads"]["rewards + 50"] > 3 * f["spreads"]["rewards"]
          and f["spreads"]["rewards + 50, with baseline"] < f["spreads"]["rewards + 50"] / 3),
    Claim("lab3_ppo", "position_ids",
          "`generate()` derives positions from the attention mask; a plain forward pass does not",
          after='compare("without position_ids", logprobs_from_logits(without, new_tokens), sampled)',
          figures={"with": "(logprobs_from_logits(with_pos, new_tokens) - sampled).abs().max()",
                   "without": "(logprobs_from_logits(without, new_tokens) - sampled).abs().max()"},
          holds=lambda f: f["with"] < 1e-4 and f["without"] > 1e-2),
    Claim("lab3_ppo", "pieces_agree", "each line should report a match",
          after='compare("gradient, ratio e, A > 0", lp.grad, torch.zeros_like(lp))',
          figures={"diffs": '''[(rewards.sum(1) - (scores - beta * ((lp_old - lp_ref) * mask).sum(1))).abs().max(),
                    (compute_gae(rewards, v_old, mask, 1.0, 1.0)[0][rows, first] - (rewards.sum(1) - v_old[rows, first])).abs().max(),
                    ((ret - v_old) * mask - adv).abs().max(),
                    (ppo_policy_loss(lp_old, lp_old, adv, mask, 0.2) + (adv * mask).sum() / mask.sum()).abs(),
                    lp.grad.abs().max(),
                    (ppo_value_loss(v_old, v_old, ret, mask, 0.2) - 0.5 * ((v_old - ret) ** 2 * mask).sum() / mask.sum()).abs()]'''},
          holds=lambda f: max(f["diffs"]) < 1e-5),
    Claim("lab3_ppo", "reward_rises", "How fast does the reward rise, and what does the KL to the reference",
          after='after = evaluate("after PPO")',
          figures={"before": 'before["reward"]', "after": 'after["reward"]',
                   "share": '[before["positive"], after["positive"]]',
                   "kl": '[h["kl"] for h in history]'},
          holds=lambda f: f["after"] > f["before"] + 1 and f["share"][1] > f["share"][0] and f["kl"][-1] > f["kl"][0]),
]

# --- lab 4: KL and beta
CLAIMS += [
    Claim("lab4_kl_beta", "kl_not_symmetric", "**Not symmetric.**",
          after='reverse = (q_peak * (q_peak / p_wide).log()).sum().item()',
          figures={"forward": "forward", "reverse": "reverse"}, holds=lambda f: abs(f["forward"] - f["reverse"]) > 0.1),
    Claim("lab4_kl_beta", "kl_matches_torch", "**Never negative, zero only when $p = q$**",
          after='print("KL(p || p) =", kl_divergence(p_demo, p_demo))',
          figures={"diff": "(kl_divergence(p_demo, q_demo)"
                           " - torch_kl(Categorical(probs=p_demo), Categorical(probs=q_demo))).abs().max()",
                   "self": "kl_divergence(p_demo, p_demo).abs().max()", "min": "kl_divergence(p_demo, q_demo).min()"},
          holds=lambda f: f["diff"] < 1e-5 and f["self"] < 1e-6 and f["min"] > 0),
    Claim("lab4_kl_beta", "estimators",
          "$k_1$ (unbiased, noisy, can be negative), $k_2$ ($\\ge 0$; nearly unbiased, with a\nlow spread, only when $p \\approx q$), $k_3$ (unbiased, $\\ge 0$)",
          after="summaries = {}",
          figures={"s": "{name: {k: summary[k] for k in ('k1', 'k2', 'k3')} for name, summary in summaries.items()}"},
          holds=lambda f: all(
              f["s"][pair]["k1"]["min"] < 0 <= f["s"][pair]["k3"]["min"] and f["s"][pair]["k2"]["min"] >= 0
              and abs(f["s"][pair]["k1"]["bias"]) < 4 * f["s"][pair]["k1"]["std"] / 5000 ** 0.5
              and abs(f["s"][pair]["k3"]["bias"]) < 4 * f["s"][pair]["k3"]["std"] / 5000 ** 0.5 for pair in ("close", "far"))
          and abs(f["s"]["close"]["k2"]["bias"]) < 0.1 * f["s"]["close"]["k1"]["mean"]
          and f["s"]["close"]["k2"]["std"] < f["s"]["close"]["k1"]["std"]
          and abs(f["s"]["far"]["k2"]["bias"]) > 4 * f["s"]["far"]["k2"]["std"] / 5000 ** 0.5),
    Claim("lab4_kl_beta", "pi_star_maximises", "$\\pi^*$ is the unique maximiser, with\n$J(\\pi^*) = \\beta \\log Z$",
          after='gaps = {name: regularized_objective(d, ref_toy.expand_as(d), r_toy.expand_as(d), beta) - j_star',
          figures={"max_gap": "max(g.max().item() for g in gaps.values())",
                   "j_vs_logz": "j_star - beta * torch.logsumexp(torch.log(ref_toy) + r_toy / beta, 0).item()"},
          holds=lambda f: f["max_gap"] <= 1e-12 and abs(f["j_vs_logz"]) < 1e-9),
    Claim("lab4_kl_beta", "beta_limits",
          "as $\\beta \\to \\infty$,\n$\\pi^* \\to \\pi_{\\text{ref}}$; as $\\beta \\to 0$, $\\pi^*$ piles its mass on the best-rewarded\noutputs",
          after="betas_toy = [0.01, 0.1, 0.3, 1.0, 3.0, 100.0]",
          figures={"far": "(optimal_policy(ref_toy, r_toy, 100.0) - ref_toy).abs().max()",
                   "near": "optimal_policy(ref_toy, r_toy, 0.01)[r_toy.argmax()]",
                   "kl_near": "kl_divergence(optimal_policy(ref_toy, r_toy, 0.01), ref_toy)",
                   "log_inv_ref": "-ref_toy[r_toy.argmax()].log()",
                   "frontier": "[(kl_divergence(c, ref_toy).item(), (c * r_toy).sum().item()) for c in curve]"},
          holds=lambda f: f["far"] < 0.02 and f["near"] > 0.99 and f["kl_near"] <= f["log_inv_ref"] + 1e-9
          and _falls([kl for kl, _ in f["frontier"]]) and _falls([r for _, r in f["frontier"]])),
    Claim("lab4_kl_beta", "beta_sweep_order",
          "How much reward\ndoes each step down in $\\beta$ buy, and for how many nats of KL",
          after='reference = held_out(ref_model)',
          figures={"kl": "[runs[b]['final']['kl']['k1'] for b in betas]",
                   "reward": "[runs[b]['final']['reward_mean'] for b in betas]",
                   "reference": "reference['reward_mean']"},
          holds=lambda f: _decreasing(f["kl"]) and min(f["reward"]) > f["reference"]
          and f["reward"][0] > f["reward"][-1]),
    Claim("lab4_kl_beta", "stock_verdict_at_low_beta", "which runs append one stock verdict to whatever came before",
          after="def top_ending(texts, n_words=3):",
          figures={"ending_share": "[top_ending(runs[b]['final']['texts'])[1] for b in betas]",
                   "reference": "top_ending(reference['texts'])[1]"},
          holds=lambda f: max(f["ending_share"][1:3]) > 0.2 and max(f["ending_share"][1:3]) > f["ending_share"][-1] + 0.1
          and max(f["ending_share"][1:3]) > f["reference"] + 0.1),
]

# --- lab 5: deriving DPO
CLAIMS += [
    Claim("lab5_dpo_derivation", "implied_reward_offset",
          "gives the implied reward $r = \\beta\\log(\\pi^*/\\pi_{\\text{ref}}) + \\beta\\log Z(x)$",
          after="implied = implied_reward(pi_star.log(), toy_ref.log(), beta_toy)",
          figures={"gap": "(toy_r - implied).tolist()", "beta_log_z": "beta_toy * log_z"},
          holds=lambda f: max(abs(g - f["beta_log_z"]) for g in f["gap"]) < 1e-9),
    Claim("lab5_dpo_derivation", "z_cancels", "so $\\beta\\log Z(x)$ cancels for two responses to the same prompt",
          after='compare("implied rewards of pi*", p_implied, p_true)',
          figures={"shifted": "(p_shifted - p_true).abs().max()", "implied": "(p_implied - p_true).abs().max()"},
          holds=lambda f: f["shifted"] < 1e-9 and f["implied"] < 1e-9),
    _agrees("lab5_dpo_derivation", "sums_match_model_loss",
          "minus the loss times the number of completion tokens should equal your sums",
            'compare("yours vs the model\'s loss", pol_chosen, from_model_loss)',
            "(pol_chosen - from_model_loss).abs().max()", 1e-4),
    Claim("lab5_dpo_derivation", "matches_trl", "Your loss matches `trl.DPOTrainer`'s",
          after='compare("per-pair losses vs TRL", losses.cpu(), trl_result.per_pair)',
          figures={"mean": "abs(trl_result.loss - losses.mean().item())",
                   "per_pair": "(losses.cpu() - trl_result.per_pair).abs().max()"},
          holds=lambda f: f["mean"] < 1e-5 and f["per_pair"] < 1e-5),
    Claim("lab5_dpo_derivation", "sigma_gradient_dies",
          "vanishes at *both* ends, so the worst mistakes are never fixed",
          after="(sig_grad,) = torch.autograd.grad(sig_loss.sum(), h)",
          figures={"log_worst": "log_grad[0].abs()", "sig_worst": "sig_grad[0].abs()", "sig_best": "sig_grad[-1].abs()",
                   "sig_middle": "sig_grad.abs().max()"},
          holds=lambda f: f["log_worst"] > 0.99 and f["sig_worst"] < 1e-3 and f["sig_best"] < 1e-3
          and f["sig_middle"] > 0.2),
    _agrees("lab5_dpo_derivation", "gradient_closed_form", "the mean loss over $N$ pairs has gradient",
            'compare("autograd vs closed form", autograd_grad, closed_form)',
            "(autograd_grad - closed_form).abs().max()", 1e-12),
    Claim("lab5_dpo_derivation", "dpo_recovers_pi_star", "on a toy, it recovers $\\pi^*$",
          after="pi_dpo = torch.softmax(theta.detach(), -1)",
          figures={"kl": "[kl for _, kl in history]", "kl_ref": "kl_divergence(toy_ref, pi_star)"},
          holds=lambda f: f["kl"][-1] < f["kl"][0] / 20 and f["kl"][-1] < f["kl_ref"] / 20),
    Claim("lab5_dpo_derivation", "kl_stops_falling", "Where does the KL stop falling, and why not at 0",
          after="pi_dpo = torch.softmax(theta.detach(), -1)",
          figures={"kl": "[kl for _, kl in history]"},
          holds=lambda f: f["kl"][-1] > 0 and min(f["kl"][-30:]) > 0.5 * f["kl"][-30]),
    Claim("lab5_dpo_derivation", "dpo_keeps_the_flaw",
          "it removes the reward model and the RL loop, not a flawed reward",
          after="pi_dpo = torch.softmax(theta.detach(), -1)",
          figures={"ref": "toy_ref[-1]", "star": "pi_star[-1]", "dpo": "pi_dpo[-1]"},
          holds=lambda f: f["dpo"] > 2 * f["ref"] and abs(f["dpo"] - f["star"]) < 0.5 * f["star"]),
]

# --- lab 6: DPO with TRL
CLAIMS += [
    Claim("lab6_dpo_hf", "eval_loss_is_a_curve", "Each evaluation adds an entry with `eval_` names",
          after="eval_metrics = evaluations[-1]  # the last evaluation",
          figures={"eval_loss": '[h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]'},
          holds=lambda f: len(f["eval_loss"]) >= 3),
    Claim("lab6_dpo_hf", "reloaded_generates_the_same", "`from_pretrained(folder)` loads them like any Hub model",
          after='print("the reloaded model generates what the trained one does:", same)',
          figures={"same": "same"}, holds=lambda f: f["same"] is True),
    Claim("lab6_dpo_hf", "tuned_towards_positive", "tuning the tiny GPT-2 towards positive reviews",
          after='print(f"win rate over the reference: {win_rate:.2f} (DPO), {lora_win:.2f} (LoRA)")',
          figures={"share": "[ref_share, tuned_share, lora_share]", "win": "[win_rate, lora_win]",
                   "eval_accuracy": "[eval_metrics['eval_rewards/accuracies'], lora_eval['eval_rewards/accuracies']]"},
          holds=lambda f: f["share"][1] > f["share"][0] and f["share"][2] > f["share"][0] and min(f["win"]) > 0.5
          and min(f["eval_accuracy"]) > 0.5),
    _agrees("lab6_dpo_hf", "merge_keeps_the_model", "To ship a plain model instead, **merge**",
            'lora_model, _ = save_and_reload(lora_trainer, str(workdir / "dpo-lora"))',
            "(merged(**ids).logits - lora_model(**ids).logits).abs().max()", 1e-5),
    Claim("lab6_dpo_hf", "accuracy_before_margin",
          "Accuracy says only whether margins are positive, which a tiny push achieves",
          after="eval_metrics = evaluations[-1]  # the last evaluation",
          figures={"accuracy": '[h["rewards/accuracies"] for h in trainer.state.log_history if "rewards/accuracies" in h]',
                   "margin": '[h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h]'},
          holds=lambda f: _share_of_end(f["accuracy"]) > _share_of_end(f["margin"])),
    Claim("lab6_dpo_hf", "rejected_pushed_down", "making rejected texts much less likely and chosen ones a little less",
          after="eval_metrics = evaluations[-1]  # the last evaluation",
          figures={"chosen": '[h["rewards/chosen"] for h in trainer.state.log_history if "rewards/chosen" in h][-4:]',
                   "rejected": '[h["rewards/rejected"] for h in trainer.state.log_history if "rewards/rejected" in h][-4:]'},
          holds=lambda f: sum(f["rejected"]) < min(0.0, sum(f["chosen"]))),
]

# --- lab 7: after PPO and DPO
CLAIMS += [
    _agrees("lab7_beyond_ppo", "pairwise_loss_matches_trl", "beside the number the trainer computes",
            'compare("pairwise_loss vs TRL", pairwise_loss(chosen_scores, rejected_scores), trl_loss)',
            "(pairwise_loss(chosen_scores, rejected_scores) - trl_loss).abs()", 1e-5),
    _agrees("lab7_beyond_ppo", "grpo_matches_trl", "beside the advantages TRL computed and logged for it",
            'compare("grpo_advantages vs TRL", grpo_advantages(last_rewards, K), last_advantages)',
            "(grpo_advantages(last_rewards, K) - last_advantages).abs().max()", 1e-4),
    Claim("lab7_beyond_ppo", "memory_differs",
          "The kit's value head shares the policy's body; InstructGPT's PPO trained a separate critic as large as the policy",
          after="state_mb = {name: 4 * (4 * trained + frozen) for name, (trained, frozen) in memory.items()}",
          figures={"mb": "state_mb"},
          holds=lambda f: f["mb"]["PPO, a separate critic"] > 1.3 * f["mb"]["PPO, the kit's value head"]
          and abs(f["mb"]["PPO, the kit's value head"] - f["mb"]["RLOO"]) < 0.01 * f["mb"]["RLOO"]
          and f["mb"]["best-of-n (no training)"] < f["mb"]["DPO (no reward model)"] < f["mb"]["RLOO"]),
    Claim("lab7_beyond_ppo", "shifted_positions", "a GPT-2 scores the shorter ones at shifted positions",
          after="trl_lp, kit_lp = trl_logprobs(rloo, rloo.model, [s[\"query_ids\"] for s in samples], [s[\"response_ids\"] for s in samples],",
          figures={"rows": "[(len(s['query_ids']), (a - b).abs().max()) for s, a, b in zip(samples, trl_lp, kit_lp)]"},
          holds=lambda f: all((d < 1e-3) if n == max(m for m, _ in f["rows"]) else (d > 0.1) for n, d in f["rows"])),
    Claim("lab7_beyond_ppo", "bound_over_counts", "it is an upper bound, not an identity",
          after="bon_short = best_of_n_curve(short_groups, short_scores, {}, NS, kl_bound_fn=best_of_n_kl_bound)",
          figures={"long": "[(r['n'], r['kl'], best_of_n_kl_bound(r['n'])) for r in bon]",
                   "short": "[(r['n'], r['kl'], best_of_n_kl_bound(r['n'])) for r in bon_short]"},
          holds=lambda f: all(kl <= bound + 1e-9 for _, kl, bound in f["long"] + f["short"])),
    Claim("lab7_beyond_ppo", "short_answers_show_slack",
          "Answers of 2 tokens, which repeat far more often, show the bound's slack",
          after="bon_short = best_of_n_curve(short_groups, short_scores, {}, NS, kl_bound_fn=best_of_n_kl_bound)",
          figures={"short": "[(r['n'], r['kl'], best_of_n_kl_bound(r['n'])) for r in bon_short]",
                   "distinct": "[sum(len(set(g)) for g in groups) / len(groups),"
                               " sum(len(set(g)) for g in short_groups) / len(short_groups)]"},
          holds=lambda f: f["distinct"][1] < f["distinct"][0] / 2
          and all(kl < 0.8 * bound for n, kl, bound in f["short"] if n > 1)),
    Claim("lab7_beyond_ppo", "rloo_kl_stays_high", "RLOO's KL stays above PPO's even at $\\beta = 1$",
          after='fixed = results["RLOO, position ids", 1.0].points[-1]',
          figures={"rloo": 'results["RLOO", 1.0].points[-1]["kl"]', "ppo": 'results["PPO", 1.0].points[-1]["kl"]',
                   "fixed": 'fixed["kl"]', "rewards": '[results["RLOO", 1.0].points[-1]["reward"], fixed["reward"]]'},
          holds=lambda f: f["rloo"] > 1.25 * f["ppo"] and f["fixed"] < 0.85 * f["rloo"]),
    Claim("lab7_beyond_ppo", "online_methods_lead", "in this budget, the methods that query the true reward lead",
          after='fixed = results["RLOO, position ids", 1.0].points[-1]',
          figures={"dpo": '[{"kl": p["kl"], "reward": p["reward"]} for p in dpo_points.values()]',
                   "bon": '[{"kl": r["kl"], "reward": r["gold"]} for r in bon]',
                   "ppo": '[{"kl": p["kl"], "reward": p["reward"]} for _, c in runs["PPO"] for p in c.points]'},
          holds=lambda f: all(_below_frontier(d, f["bon"]) for d in f["dpo"])
          and max(p["reward"] for p in f["ppo"]) > max(d["reward"] for d in f["dpo"]) + 0.5),
    Claim("lab7_beyond_ppo", "proxy_outruns_gold", "it is the proxy's errors that get optimised",
          after="proxy_mean, proxy_std = proxy_scores.mean().item(), proxy_scores.std().item()",
          figures={"bon": "[((r['proxy'] - proxy_mean) / proxy_std, (r['gold'] - gold_mean) / gold_std)"
                          " for r in by_proxy]"},
          holds=lambda f: f["bon"][-1][0] - f["bon"][-1][1] > f["bon"][1][0] - f["bon"][1][1] > 0),
]

# --- lab 8: human feedback
CLAIMS += [
    Claim("lab8_human_feedback", "agreement_flatters",
          "It flatters: two raters who pick at random agree on half the pairs",
          after="kappa = cohens_kappa(yours, classifier)",
          figures={"agreement": "agreement_rate", "kappa": "kappa", "interval": "[low, high]"},
          holds=lambda f: f["kappa"] < f["agreement"] and f["interval"][0] <= f["kappa"] <= f["interval"][1]),
    Claim("lab8_human_feedback", "recorded_labels_say_so", 'and print them as "recorded"',
          after='results["classifier"] = agreement.classifier_tally(reward_pipe, judgements or tuned_panel.pairs, "tuned")',
          figures={"labels": "who", "judgements": "globals().get('judged_by')", "rows": "list(results)",
                   "judged_pairs": "sorted({j['pair_id'] for j in judgements})",
                   "shown_pairs": "sorted({p['pair_id'] for p in tuned_panel.pairs})"},
          holds=lambda f: f["labels"] == "recorded" and f["judgements"] in (None, "recorded")
          and set(f["judged_pairs"]) <= set(f["shown_pairs"]) and "you" not in f["rows"]),
    Claim("lab8_human_feedback", "few_judgements_wide_interval",
          "with a few dozen judgements only large differences are real",
          after='results["classifier"] = agreement.classifier_tally(reward_pipe, judgements or tuned_panel.pairs, "tuned")',
          figures={"widths": "[wilson_interval(t['wins'] + t['ties'] / 2, agreement.win_rate(t)[1])[1]"
                             " - wilson_interval(t['wins'] + t['ties'] / 2, agreement.win_rate(t)[1])[0]"
                             " for t in results.values()]"},
          holds=lambda f: min(f["widths"]) > 0.25),
]

# --- lab 9: rewards a program can check
_SCORES_AFTER_SFT = 'scores = {"base": evaluate(base_model, "base"), "SFT": evaluate(sft_model, "after SFT")}'
_PASS_AT_K = "curves = {name: pass_at_k_curve(c, N_SAMPLES, KS, estimator=pass_at_k) for name, c in counts.items()}"
CLAIMS += [
    Claim("lab9_verifiable_rewards", "base_writes_careless_sums",
          "on them it gives the careless writers' sum more often than the right one",
          after="loose = sum(n == a for n, a in firsts) / len(firsts)",
          figures={"right": "loose", "careless": "sum(sloppy) / len(sloppy)",
                   "number": "sum(n is not None for n, _ in firsts) / len(firsts)"},
          holds=lambda f: f["careless"] > f["right"] and f["number"] > 0.9),
    Claim("lab9_verifiable_rewards", "sft_teaches_the_format",
          "SFT taught the format: almost every completion is now one block the verifier can read "
          "(the base model wrote none)",
          after=_SCORES_AFTER_SFT, figures={"scores": "scores"},
          holds=lambda f: f["scores"]["SFT"]["format"] >= 0.85 and f["scores"]["base"]["format"] == 0.0),
    Claim("lab9_verifiable_rewards", "sft_keeps_the_accuracy",
          "It did not teach the sum: the accuracy stays near the base model's loose accuracy above",
          after=_SCORES_AFTER_SFT, figures={"loose": "loose", "sft": "scores['SFT']['exact']"},
          holds=lambda f: abs(f["sft"] - f["loose"]) < 0.15 and f["sft"] < 0.5),
    Claim("lab9_verifiable_rewards", "grpo_raises_accuracy", "GRPO on it raised held-out accuracy",
          after='scores["GRPO"] = evaluate(grpo_model, "after GRPO")', figures={"scores": "scores"},
          holds=lambda f: f["scores"]["GRPO"]["exact"] - f["scores"]["SFT"]["exact"] >= 0.2),
    Claim("lab9_verifiable_rewards", "grpo_raises_pass_at_1",
          "GRPO raised pass@1 a lot: from the SFT model's level to most problems solved in one try",
          after=_PASS_AT_K, figures={"curves": "curves"},
          holds=lambda f: f["curves"]["GRPO"][0] - f["curves"]["SFT"][0] >= 0.2 and f["curves"]["GRPO"][0] > 0.5),
    Claim("lab9_verifiable_rewards", "curves_meet_at_64",
          "At $k = 64$ the two curves are close: the SFT model already reached almost every right answer",
          after=_PASS_AT_K, figures={"curves": "curves"},
          holds=lambda f: abs(f["curves"]["GRPO"][-1] - f["curves"]["SFT"][-1]) < 0.05 and f["curves"]["SFT"][-1] > 0.9),
    Claim("lab9_verifiable_rewards", "format_only_reward_is_hacked",
          "The format reward stayed near its ceiling, where SFT had left it, while the accuracy fell well below the SFT model's",
          after='scores["format only"] = evaluate(hacked, "format only")', figures={"scores": "scores"},
          holds=lambda f: f["scores"]["format only"]["format"] >= max(0.9, f["scores"]["SFT"]["format"] - 0.02)
          and f["scores"]["format only"]["exact"] <= 0.5 * f["scores"]["SFT"]["exact"]),
]
