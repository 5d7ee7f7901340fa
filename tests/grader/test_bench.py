"""`rlhf-course bench`: budgets become a verdict, and the building blocks are measured for real.

The figures themselves are never asserted (they depend on the machine); what is
tested is that the bench runs, reports them, and says when a lab is over budget.
"""

from __future__ import annotations

import json

import pytest

from autograder.bench import timing as bench


def test_budgets():
    assert bench.budget("lab3_ppo") == 60 and bench.budget("lab7_beyond_ppo") == 120
    assert bench.graded_budget("lab3_ppo") == 90 and bench.graded_budget("lab7_beyond_ppo") == 180


def test_over_budget_labs_are_reported():
    report = bench.Report(machine={"date": "d", "cores": 2, "torch_threads": 2, "load_average": [0, 0, 0],
                                   "python": "3.11", "versions": {"torch": "2.13.0"}, "platform": "p"})
    report.labs = {"lab1_sampling": {"alone_s": 30.0, "alone_runs_s": [30.0], "budget_s": 60, "busy_s": 75.0},
                   "lab4_kl_beta": {"alone_s": 61.0, "alone_runs_s": [61.0], "budget_s": 60}}
    report.grading = {"lab6_dpo_hf": {"jobs2": {"wall_s": 100.0, "submission_s": {"solution": 95.0, "blank": 10.0}}},
                      "lab7_beyond_ppo": {"jobs2": {"wall_s": 150.0, "submission_s": {"solution": 133.0}}}}
    bench.check(report)
    text = "\n".join(report.problems)
    assert "lab4_kl_beta: 61.0 s" in text and "lab1_sampling: 75.0 s beside a busy process" in text
    assert "lab6_dpo_hf: graded with --jobs 2, {'solution': 95.0} s per submission, over 90 s" in text
    assert "lab7" not in text, "lab 7 graded in 133 s is within its 180 s"
    assert "OVER BUDGET" in bench.markdown(report)


@pytest.mark.slow
def test_bench_measures_the_building_blocks(tmp_path, capsys):
    from autograder.cli import main

    rc = main(["bench", "--skip-labs", "--skip-grading", "--repeats", "1", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    for key in ("world_load_s", "sampling_tokens_per_s", "ppo_generate_s", "ppo_score_s", "ppo_optimise_s",
                "dpo_step_s"):
        assert data["blocks"][key] > 0, key
    assert data["machine"]["cores"] >= 1 and data["machine"]["versions"]["trl"]
    assert "one PPO step" in (tmp_path / "BENCHMARKS.md").read_text()


def test_failing_claims_are_reported_with_their_seeds_and_figures():
    report = bench.Report(machine={"date": "d", "cores": 2, "torch_threads": 1, "load_average": [0, 0, 0],
                                   "python": "3.11", "versions": {"torch": "2.13.0"}, "platform": "p"})
    assert bench.claim_failures(report) == []
    report.claims = {"seeds": [0, 1, 2], "labs": ["lab3_ppo"], "checked": 6, "failing": [
        {"lab": "lab3_ppo", "id": "baseline_runs", "quote": "some red runs settle on a bad ending",
         "verdicts": [{"seed": 2, "error": None, "figures": '{"red": [4.0, 4.1]}'}]}]}
    (line,) = bench.claim_failures(report)
    assert "lab3_ppo/baseline_runs" in line and "on seeds 2" in line
    text = bench.markdown(report)
    assert "## Claims of the learner copies, on seeds 0, 1, 2" in text and '{"red": [4.0, 4.1]}' in text
    assert "A CLAIM FAILS: lab3_ppo/baseline_runs" in text
    report.claims["failing"] = []
    assert "Every claim held on every seed." in bench.markdown(report)
