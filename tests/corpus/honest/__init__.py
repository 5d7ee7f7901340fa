"""Honest answers to every lab, written in unusual styles: the grader must give them full marks.

A grader that refuses honest work is worse than one that misses a cheat (docs: DESIGN.md,
"Integrity"). Each module here, one per lab (``lab1_sampling.py`` ...), holds ``VARIANTS``:
variant name -> {grade_id of a solution cell: the whole cell source a learner would leave}.
A cell source keeps the given signature and docstring; the body, and any helpers, classes or
aliases the learner adds in that cell, are the learner's own, written in a style the kit's
solution does not use: locals named like the notebook's globals (``out``, ``first``,
``logits``, ``probs`` ...), module-level helpers and helpers of helpers, classes (callable
objects, static and class methods), recursion, decorators (``functools.wraps``, a custom one,
``lru_cache``), ``functools.partial`` and aliases (``f = g``, ``f = f``), assigned lambdas,
other formulas (log-sum-exp, loops, another order of operations) and the library's building
blocks (``torch.topk``, ``torch.sort``, ``F.log_softmax``, ``torch.logsumexp``,
``F.cross_entropy(reduction="none")``, ``datasets``' own methods ...). None of them uses a
ready-made equivalent named in the cell's ``rlhf_course.equivalents`` metadata, nor the kit's
own answer in ``rlhf_helpers``; each is correct.

Variant ``"a"`` answers every graded solution cell of its lab, ``"b"`` at least half of them in
other styles; the cells a variant does not list keep the solution's source (as in
``tests/labs/test_labs.py``'s solved copy). Further variants (``"c"``, ``"d"``) hold honest styles that lost
points when they were written, one finding each (:data:`FINDINGS`: what was lost and why). The
grader was fixed for each; they stay in the corpus, like every other variant, so that a change
that loses those points again fails the tests. Add a variant whenever a learner reports a
refusal.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[3]
SOLUTIONS = REPO / "solutions"
LABS = ("lab1_sampling", "lab2_rewards", "lab3_ppo", "lab4_kl_beta", "lab5_dpo_derivation", "lab6_dpo_hf",
        "lab7_beyond_ppo", "lab8_human_feedback", "lab9_verifiable_rewards")

VARIANTS_BY_LAB: dict[str, dict[str, dict[str, str]]] = {
    lab: importlib.import_module(f"{__name__}.{lab}").VARIANTS for lab in LABS
}
"""lab -> variant -> {grade_id: the learner's cell source}."""

@dataclass(frozen=True)
class Finding:
    """An honest answer that lost points when its variant was written, and what fixed it."""

    reason: str
    lost: tuple[str, ...]
    """The test cells (grade_ids) that scored 0 when the variant was graded (grade_class, jobs=2)."""
    static: bool
    """True when ``autograder.grading.judge.handoffs`` refused it; False when only the graded run lost the points."""
    fixed: str
    """What the grader does now."""


FINDINGS: dict[tuple[str, str], Finding] = {
    ("lab1_sampling", "c"): Finding(
        "a private helper _penalty is rebound to a float by a hidden test's loop variable (for _penalty in [...]): "
        "hidden tests run in the learner's namespace",
        ("test_apply_repetition_penalty", "test_generate_text_greedy", "test_generate_text_sampling"), static=False,
        fixed="the kernel runs each test inside a function of its own: the test's names are its locals"),
    ("lab1_sampling", "d"): Finding(
        "a module-level lambda with a star parameter *out: the hand-off check reads it as the notebook's global "
        "out = model.generate(...), so beam_search 'uses' generate",
        ("test_beam_search", "test_beam_search_generate"), static=True,
        fixed="a lambda's *args, **kwargs and positional-only parameters are its own"),
    ("lab2_rewards", "c"): Finding(
        "expected_reward reads est.sem, a field of the learner's own NamedTuple: the hand-off check takes the "
        "attribute name for scipy.stats.sem / pandas.Series.sem",
        ("test_expected_reward",), static=True,
        fixed="attributes named like a member of the learner's own classes (fields, self.x) are theirs"),
    ("lab3_ppo", "c"): Finding(
        "ppo_policy_loss delegates to the learner's own static method of the same name and uses the kit's "
        "masked_mean (handed out by the lab): read as 'taken from an import'",
        ("test_ppo_policy_loss",), static=True,
        fixed="a method of the learner's own class named like the graded function is theirs"),
    ("lab6_dpo_hf", "c"): Finding(
        "make_dpo_config delegates to the learner's own class method of the same name, which calls get_device() "
        "as the lab says: read as 'taken from an import'",
        ("test_make_dpo_config", "test_make_dpo_config_unknown"), static=True,
        fixed="a method of the learner's own class named like the graded function is theirs"),
    ("lab7_beyond_ppo", "c"): Finding(
        "a private helper _loss is rebound to a tensor by the hidden part of test_pairwise_loss "
        "(_loss, _gc, _gr = observe(...)): hidden tests run in the learner's namespace",
        ("test_pairwise_loss",), static=False,
        fixed="the kernel runs each test inside a function of its own: the test's names are its locals"),
}
"""(lab, variant) -> the finding; every variant past a and b is one. All are fixed: each must keep full marks."""

def solution_sources(lab: str) -> dict[str, str]:
    """grade_id -> source of every solution cell of the lab's instructor source (written answers too)."""
    source = nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
    return {c.metadata.nbgrader["grade_id"]: c.source for c in source.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def honest_notebook(lab: str, variant: str, released_nb) -> nbformat.NotebookNode:
    """The released learner copy (a notebook, or the path of one) with every solution cell answered:
    the variant's cells where it gives them, the solution's source elsewhere."""
    if not isinstance(released_nb, nbformat.NotebookNode):
        released_nb = nbformat.read(Path(released_nb), as_version=4)
    variant_cells = VARIANTS_BY_LAB[lab][variant]
    answers = {**solution_sources(lab), **variant_cells}
    unknown = set(variant_cells) - set(solution_sources(lab))
    if unknown:
        raise KeyError(f"{lab} variant {variant!r} answers cells the lab does not have: {sorted(unknown)}")
    nb = copy.deepcopy(released_nb)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb
