"""What the learner copies say about their results holds on the solutions' own runs.

DESIGN.md: every sentence of a learner copy that states a direction or an order of a
result has an assertion on the solution's own figures. Those assertions are the
claims of ``autograder/course/claims.py``. Here:

- fast: every claim still quotes its learner copy (reword the text and the claim
  must follow), names one code cell as its anchor, and has a unique id; every lab
  has claims; and the seed shift the sweep uses moves every kind of seed;
- slow: each solution notebook runs once, top to bottom (seed 0: the notebook as
  learners get it), two at a time, with a probe after each anchor, and each claim is
  asserted on the figures the run printed or plotted. This is the suite's only plain
  run of the solutions: the graded runs of ``tests/labs/test_labs.py`` are the learner's
  view through the sandbox, where the grader may skip cells no test depends on.

The sweep over seeds 0-4 runs outside CI: ``rlhf-course bench --claims``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import nbformat
import pytest
import _background as background

from autograder.course import claims as K
from autograder.labs import find_labs, source_notebook

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions"
LABS = REPO / "labs"
LAB_IDS = find_labs(SOLUTIONS)
PARAMS = LAB_IDS  # test_labs.py::test_the_syllabus_is_all_there fails when one is missing


def _claims(lab: str) -> list[K.Claim]:
    return [c for c in K.CLAIMS if c.lab == lab]


@pytest.mark.parametrize("lab", PARAMS)
def test_every_lab_has_claims_each_quoting_its_learner_copy(lab):
    claims = _claims(lab)
    assert claims, f"{lab}: no claims in autograder/course/claims.py"
    text = K.normalise("\n".join(c.source for c in nbformat.read(LABS / lab / f"{lab}.ipynb", as_version=4).cells))
    gone = [c.id for c in claims if K.normalise(c.quote) not in text]
    assert not gone, f"{lab}: the words these claims check are no longer in the learner copy: {gone}"
    twice = [cid for cid, n in Counter(c.id for c in claims).items() if n > 1]
    assert not twice, f"{lab}: claim ids used twice: {twice}"


@pytest.mark.parametrize("lab", PARAMS)
def test_every_claim_is_anchored_in_one_code_cell(lab):
    nb = nbformat.read(source_notebook(SOLUTIONS, lab), as_version=4)
    probed = K.probed_notebook(nb, _claims(lab))  # raises when an anchor names no cell, or several
    probes = [c for c in probed.cells if c.metadata.get("claims")]
    assert sorted(i for c in probes for i in c.metadata["claims"]) == sorted(c.id for c in _claims(lab))


@pytest.mark.slow
def test_a_seed_shifts_every_seed_the_run_sets(tmp_path):
    """Seed 0 runs the notebook as it is; seed 2 adds 2000 to torch's, a generator's, random's and numpy's seeds."""
    cell = ("import random\nimport numpy as np\nimport torch\n"
            "torch.manual_seed(3); a = torch.rand(1).item()\n"
            "b = torch.rand(1, generator=torch.Generator().manual_seed(4)).item()\n"
            "c = random.Random(5).random()\nrandom.seed(6); d = random.random()\n"
            "e = float(np.random.default_rng(7).random())\nnp.random.seed(8); f = float(np.random.rand())")
    (tmp_path / "toy").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), tmp_path / "toy" / "toy.ipynb")
    claim = K.Claim("toy", "draws", "-", after="torch.manual_seed(3); a = torch.rand(1).item()",
                    figures={"draws": "[a, b, c, d, e, f]"}, holds=lambda f: True)
    import random

    import numpy as np
    import torch

    def expected(shift):
        torch.manual_seed(3 + shift)
        np.random.seed(8 + shift)
        random.seed(6 + shift)
        return [torch.rand(1).item(), torch.rand(1, generator=torch.Generator().manual_seed(4 + shift)).item(),
                random.Random(5 + shift).random(), random.random(),
                float(np.random.default_rng(7 + shift).random()), float(np.random.rand())]

    for seed in (0, 2):
        (verdict,) = K.run_lab(tmp_path, "toy", seed, claims=[claim], timeout=120)
        assert verdict.ok and verdict.error is None, verdict.line()
        assert verdict.figures["draws"] == pytest.approx(expected(1000 * seed)), f"seed {seed}"


def test_a_claim_that_fails_or_cannot_be_read_says_so():
    claim = K.Claim("toy", "x", "-", after="-", figures={"x": "x"}, holds=lambda f: f["x"] > 1)
    assert K._judge(claim, 0, {"x": 2}, []).ok
    assert not K._judge(claim, 0, {"x": 0}, []).ok
    missing = K._judge(claim, 0, None, ["NameError: x (in 'y = x')"])
    assert not missing.ok and "never ran" in missing.error and "NameError" in missing.error
    broken = K._judge(claim, 3, {"x": {"error": "KeyError('k')"}}, [])
    assert not broken.ok and "KeyError" in broken.error and "seed 3" in broken.line()


def run_the_claims(scratch: Path) -> list[dict]:
    """Every lab's solution run once (seed 0), two at a time, and its claims judged (in the
    background: tests/_background.py). Plain data: a claim's checks are functions, not pickled."""
    return [dict(lab=v.claim.lab, id=v.claim.id, seed=v.seed, figures=v.figures, ok=v.ok, error=v.error)
            for v in K.sweep(SOLUTIONS, LAB_IDS, seeds=(0,), jobs=2, progress=print)]


@pytest.fixture(scope="module")
def verdicts():
    claims = {(c.lab, c.id): c for c in K.CLAIMS}
    by_lab: dict[str, list[K.Verdict]] = {}
    for v in background.result("verdicts", run_the_claims):
        claim = claims[v.pop("lab"), v.pop("id")]
        by_lab.setdefault(claim.lab, []).append(K.Verdict(claim, **v))
    return by_lab


@pytest.mark.slow
@pytest.mark.parametrize("lab", PARAMS)
def test_the_claims_hold_on_the_solutions_run(verdicts, lab):
    failing = [v.line() for v in verdicts.get(lab, []) if not v.ok]
    assert not failing, f"{lab}: the learner copy says what its own run does not show:\n" + "\n".join(failing)
    assert len(verdicts.get(lab, [])) == len(_claims(lab))
