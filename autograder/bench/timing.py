"""How fast the kit is, measured: what ``rlhf-course bench`` runs.

Speed is the kit's promise (every lab trains for real, offline, on a laptop CPU,
in about a minute), so it is measured here, never asserted in the test suite::

    rlhf-course bench                       # everything; writes bench-out/BENCHMARKS.md and .json
    rlhf-course bench --labs lab3_ppo --repeats 3 --busy
    rlhf-course bench --skip-labs --skip-grading   # the building blocks only (a minute)

It measures, on this machine, with its cores, torch threads and library versions
in the report:

- the building blocks: loading the tiny world, sampling throughput (tokens per
  second), one PPO step split into generate / score / optimise, one DPO step;
- each lab's solution executed top to bottom (median of ``--repeats``; with
  ``--busy`` also beside a process that keeps one core busy, which must stay
  within twice the quiet time);
- each lab graded as a class of its blank and solution copies with ``--jobs 1``
  and ``--jobs 2`` (through ``rlhf-course grade``, sandbox included).

The exit status is 1 when a lab is over its budget (60 s alone, 120 s for lab 7;
1.5 times that for a submission graded beside another, 90 s and 180 s; twice the quiet time when busy), so
an author can run it before a release.

With ``--peers`` it also trains the kit's PPO beside classic TRL PPO (in an
environment of its own, created once from the package registry), TRL's RLOO
and GRPO, and lab 6's DPO, on one task, interleaved over seeds
(:mod:`autograder.bench.peers`)::

    rlhf-course bench --skip-labs --skip-grading --peers            # 3 seeds x 60 s each: about 25 minutes

With ``--claims`` it re-runs every lab's solution on seeds 0-4 (each seed the run sets shifted by
1000 times the seed, :mod:`autograder.course.claims`) and reports each claim of a learner copy that fails
for some seed; the exit status is 1 then too::

    rlhf-course bench --skip-blocks --skip-labs --skip-grading --claims   # 40 runs, two at a time
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from autograder.labs import budget, find_labs, source_notebook

GRADED_FACTOR = 1.5
"""A submission graded beside another (``--jobs 2``) may take this times its lab's budget: 90 s, 180 s for lab 7."""
BUSY_FACTOR = 2.0


def graded_budget(lab: str) -> float:
    return GRADED_FACTOR * budget(lab)


@dataclass
class Report:
    machine: dict = field(default_factory=dict)
    blocks: dict = field(default_factory=dict)
    labs: dict = field(default_factory=dict)
    grading: dict = field(default_factory=dict)
    peers: dict = field(default_factory=dict)
    claims: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)


def machine() -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "trl", "peft", "datasets", "nbgrader", "jupyterlab"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "python": platform.python_version(),
            "platform": platform.platform(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "versions": versions}


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


# ----------------------------------------------------------------------------- the building blocks
def blocks(repeats: int) -> dict:
    """World load, sampling throughput, one PPO step (generate / score / optimise), one DPO step."""
    import torch

    from rlhf_helpers.models import load_policy, load_reward_pipeline

    load_policy(), load_reward_pipeline()  # imports and first reads out of the way
    out: dict = {}
    out["world_load_s"], _ = _median_time(lambda: (load_policy(), load_reward_pipeline()), repeats)
    policy, tok = load_policy()
    pipe = load_reward_pipeline()

    prompts = tok(["the movie was"] * 64, return_tensors="pt", padding=True)
    new = 16

    def sample():
        with torch.no_grad():
            policy.generate(**prompts, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=new, min_new_tokens=new,
                            pad_token_id=tok.pad_token_id)

    seconds, _ = _median_time(sample, repeats)
    out["sampling_tokens_per_s"] = round(64 * new / seconds)
    out.update(ppo_step(policy, tok, pipe, repeats))
    out.update(dpo_step(repeats))
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def ppo_step(policy, tok, pipe, repeats: int) -> dict:
    from rlhf_helpers.data import load_reviews
    from rlhf_helpers.models import frozen_copy
    from rlhf_helpers.ppo import PPOConfig, PPOTrainer
    from rlhf_helpers.rewards import LengthSampler, build_queries, make_reward_fn

    texts = [r["text"] for r in load_reviews("train")][:64 * (repeats + 1)]
    trainer = PPOTrainer(PPOConfig(batch_size=64, mini_batch_size=16, seed=0), frozen_copy(policy).train(), tok)
    batches = iter([build_queries(texts[i:i + 64], tok, LengthSampler(2, 6)) for i in range(0, len(texts), 64)])
    history = trainer.train(repeats + 1, lambda: next(batches), make_reward_fn(pipe),
                            {"length_sampler": LengthSampler(12, 17), "do_sample": True, "top_k": 0, "top_p": 1.0},
                            progress=False)[1:]  # the first step warms up
    med = lambda key: statistics.median(h[key] for h in history)  # noqa: E731
    return {"ppo_step_s": med("time_total"), "ppo_generate_s": med("time_generate"),
            "ppo_score_s": med("time_score"), "ppo_optimise_s": med("time_optimise")}


def dpo_step(repeats: int) -> dict:
    """Seconds per optimiser step of TRL's DPOTrainer on the tiny policy (batch 16), as lab 6 trains."""
    import logging

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from rlhf_helpers.config import get_profile
    from rlhf_helpers.data import load_preference_pairs
    from rlhf_helpers._hf import no_load_bars
    from rlhf_helpers.models import _source

    source = _source(get_profile(None), "policy")
    with no_load_bars():
        tok = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source)
    tok.pad_token = tok.pad_token or tok.eos_token
    pairs = load_preference_pairs("train")
    rows = [dict(pairs[i]) for i in range(16 * (repeats + 2))]
    data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    steps = repeats + 2
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, use_cpu=True, bf16=False, activation_checkpointing=False,
                         per_device_train_batch_size=16, max_steps=steps, learning_rate=3e-4, beta=0.1,
                         logging_steps=steps, save_strategy="no", report_to="none", seed=0, disable_tqdm=True)
        logging.getLogger("transformers").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
            t0 = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - t0
    return {"dpo_step_s": seconds / steps}


# ----------------------------------------------------------------------------- the labs
def _burner() -> subprocess.Popen:
    """A process that keeps one core busy, as another program on a learner's laptop would."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL)


def run_lab(path: Path, timeout: int = 600) -> float:
    import copy

    import nbformat

    from autograder.course.selftest import _execute

    nb = nbformat.read(path, as_version=4)
    return _execute(copy.deepcopy(nb), path.parent, allow_errors=True, timeout=timeout)


def bench_lab(solutions: Path, lab: str, repeats: int, busy: bool) -> dict:
    path = source_notebook(solutions, lab)
    times = [run_lab(path) for _ in range(repeats)]
    out = {"alone_s": round(statistics.median(times), 1), "alone_runs_s": [round(t, 1) for t in times],
           "budget_s": budget(lab)}
    if busy:
        burner = _burner()
        try:
            out["busy_s"] = round(run_lab(path), 1)
        finally:
            burner.kill()
            burner.wait()
    return out


def bench_grading(solutions: Path, lab: str, jobs: int) -> dict:
    """Grade a class of the lab's blank and solution copies; wall time and each submission's seconds."""
    from autograder.grading.batch import grade_class
    from autograder.grading.records import Settings

    with tempfile.TemporaryDirectory(prefix="rlhf-bench-") as tmp:
        subs = Path(tmp) / "subs"
        for student, nb in (("solution", source_notebook(solutions, lab)),
                            ("blank", source_notebook(solutions.parent / "labs", lab))):
            (subs / student / lab).mkdir(parents=True)
            shutil.copy2(nb, subs / student / lab / f"{lab}.ipynb")
        t0 = time.perf_counter()
        records = grade_class(subs, Path(tmp) / "out", solutions, Settings(jobs=jobs), progress=lambda line: None)
        wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 1), "submission_s": {r.student_id: r.seconds for r in records},
            "scores": {r.student_id: r.auto_score for r in records}}


# ----------------------------------------------------------------------------- the report
def check(report: Report) -> None:
    for lab, r in report.labs.items():
        if r["alone_s"] > r["budget_s"]:
            report.problems.append(f"{lab}: {r['alone_s']} s top to bottom, over its {r['budget_s']} s budget")
        if "busy_s" in r and r["busy_s"] > BUSY_FACTOR * r["alone_s"]:
            report.problems.append(f"{lab}: {r['busy_s']} s beside a busy process, more than {BUSY_FACTOR:g}x "
                                   f"its {r['alone_s']} s alone")
    for lab, by_jobs in report.grading.items():
        limit = graded_budget(lab)
        slow = {k: s for k, s in by_jobs.get("jobs2", {}).get("submission_s", {}).items() if s > limit}
        if slow:
            report.problems.append(f"{lab}: graded with --jobs 2, {slow} s per submission, over {limit:g} s")


def markdown(report: Report) -> str:
    m = report.machine
    lines = ["# Benchmarks", "",
             f"Measured by `rlhf-course bench` on {m['date']}: {m['cores']} cores, torch threads "
             f"{m['torch_threads']}, load average at the start {m['load_average']}, Python {m['python']}, "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + f" ({m['platform']}).", ""]
    if report.blocks:
        b = report.blocks
        lines += ["## Building blocks (median)", "", "| what | measured |", "|---|---|",
                  f"| load the tiny world (policy + reward pipeline) | {b['world_load_s']} s |",
                  f"| sampling, 64 x 16 tokens | {b['sampling_tokens_per_s']} tokens/s |",
                  f"| one PPO step, batch 64 (generate / score / optimise) | {b['ppo_step_s']} s "
                  f"({b['ppo_generate_s']} / {b['ppo_score_s']} / {b['ppo_optimise_s']}) |",
                  f"| one DPO step, batch 16 (TRL DPOTrainer) | {b['dpo_step_s']} s |", ""]
    if report.labs:
        lines += ["## Labs, top to bottom (solution, headless)", "",
                  "| lab | median | runs | budget | beside a busy process |", "|---|---|---|---|---|"]
        for lab, r in report.labs.items():
            lines.append(f"| {lab} | {r['alone_s']} s | {', '.join(map(str, r['alone_runs_s']))} | {r['budget_s']} s "
                         f"| {str(r['busy_s']) + ' s' if 'busy_s' in r else '-'} |")
        lines.append("")
    if report.grading:
        lines += ["## Grading a class of blank + solution (sandboxed)", "",
                  "| lab | --jobs 1 wall | --jobs 2 wall | solution graded (jobs 2) |", "|---|---|---|---|"]
        for lab, g in report.grading.items():
            lines.append(f"| {lab} | {g.get('jobs1', {}).get('wall_s', '-')} s | {g.get('jobs2', {}).get('wall_s', '-')} s "
                         f"| {g.get('jobs2', {}).get('submission_s', {}).get('solution', '-')} s |")
        lines.append("")
    if report.peers:
        lines += peers_markdown(report.peers)
    if report.claims:
        lines += claims_markdown(report.claims)
    lines += ["## Verdict", ""] + ([f"- OVER BUDGET: {p}" for p in report.problems] or ["- every lab within budget"])
    lines += [f"- A CLAIM FAILS: {line}" for line in claim_failures(report)]
    return "\n".join(lines) + "\n"


PEER_NAMES = {"kit_ppo": "PPO, the kit", "trl011_ppo": "PPO, TRL 0.11", "trl011_ppo_2ep": "PPO, TRL 0.11, 2 epochs",
              "rloo": "RLOO, TRL 1.16", "grpo": "GRPO, TRL 1.16", "dpo": "DPO, TRL 1.16 (lab 6)"}


def _spread(stat: dict, unit: str = "") -> str:
    if stat["median"] is None:
        return "never" if stat["missing"] else "-"
    text = f"{stat['median']:g}{unit}"
    if stat["min"] != stat["max"]:
        text += f" ({stat['min']:g}-{stat['max']:g})"
    return text + (f", {stat['missing']} never" if stat["missing"] else "")


def peers_markdown(peers: dict) -> list[str]:
    s = peers["settings"]
    lines = ["## The kit's PPO beside its peers", "",
             f"Every method trains the tiny policy for {peers['seconds']:g} s of training (evaluation left out), "
             f"{peers['threads']} torch thread(s), against the classifier's POSITIVE logit, KL coefficient "
             f"{s['beta']}, {s['batch']} responses of at most {s['response_tokens']} tokens per rollout batch "
             f"(RLOO/GRPO: {s['k']} per prompt), learning rates PPO {s['ppo_lr']:g}, RLOO/GRPO {s['trl_lr']:g}, "
             f"DPO {s['dpo_lr']:g}; evaluated by one function on the same {s['held_out']} held-out queries. "
             f"PPO runs {s['ppo_epochs']['kit']} epochs of 4 minibatches per batch in the kit and "
             f"{s['ppo_epochs']['trl011']} (its default) in TRL 0.11, unless its row says otherwise. "
             "Median over seeds (min-max); a rollout batch is one PPO step, or four optimiser steps of "
             "RLOO/GRPO; DPO counts optimiser steps of 16 pairs and its target share is 0.95.", "",
             f"| method | time to target share | share at the end | reward at the end | KL at the end (nats) "
             f"| KL when reward first reaches {peers['reward_level']:g} | batches/s | ratio to the kit | peak MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, r in peers["summary"].items():
        name = PEER_NAMES.get(method, method)
        if "stats" not in r:
            lines.append(f"| {name} | failed: {r['errors'][0][:120]} | | | | | | | |")
            continue
        st, ratio = r["stats"], r.get("ratio_to_kit", {})
        lines.append(f"| {name} | {_spread(st['time_to_target_s'], ' s')} | {_spread(st['share'])} "
                     f"| {_spread(st['reward'])} | {_spread(st['kl'])} | {_spread(st['kl_at_reward'])} "
                     f"| {_spread(st['batches_per_s'])} | {ratio.get('batches_per_s', '-')} "
                     f"| {_spread(st['peak_rss_mb'])} |")
    versions = {m: r["versions"] for m, r in peers["summary"].items() if "versions" in r}
    classic = [m for m in ("trl011_ppo", "trl011_ppo_2ep") if m in versions]
    if classic:
        v = versions[classic[0]]
        lines += ["", f"Classic TRL PPO ran with trl {v['trl']}, transformers {v['transformers']}, torch {v['torch']}."]
    return lines + [""]


def claims_markdown(claims: dict) -> list[str]:
    """The claims that failed on some seed, with their figures there; or that all held."""
    seeds = ", ".join(map(str, claims["seeds"]))
    lines = ["## Claims of the learner copies, on seeds " + seeds, "",
             f"{claims['checked']} claims of {len(claims['labs'])} labs, each checked on every seed "
             "(`autograder/course/claims.py`; a seed shifts every seed the run sets by 1000 times it).", ""]
    if not claims["failing"]:
        return lines + ["Every claim held on every seed.", ""]
    lines += ["| claim | the learner copy says | fails on seeds | figures there |", "|---|---|---|---|"]
    for row in claims["failing"]:
        figures = "; ".join(f"seed {v['seed']}: {v['error'] or v['figures']}" for v in row["verdicts"])
        lines.append(f"| {row['lab']}/{row['id']} | {row['quote']} | {', '.join(str(v['seed']) for v in row['verdicts'])} "
                     f"| {figures[:600]} |")
    return lines + [""]


def claim_failures(report: Report) -> list[str]:
    """One line per claim that failed on some seed (none when the claims were not checked)."""
    return [f"{row['lab']}/{row['id']} ({row['quote']!r}) on seeds " + ", ".join(str(v["seed"]) for v in row["verdicts"])
            for row in report.claims.get("failing", [])]


def run_claims(solutions: Path, labs: list[str], seeds: list[int], jobs: int, progress=print) -> dict:
    """Every claim of ``labs`` on every seed (:func:`autograder.course.claims.sweep`), summarised as plain data."""
    from autograder.course import claims as K

    verdicts = K.sweep(solutions, labs, seeds, jobs=jobs, progress=progress)
    failing = [{"lab": lab, "id": cid, "quote": vs[0].claim.quote,
                "verdicts": [{"seed": v.seed, "error": v.error, "figures": K._short(v.figures, 300)} for v in vs]}
               for (lab, cid), vs in K.failures(verdicts).items()]
    return {"seeds": list(seeds), "labs": sorted({v.claim.lab for v in verdicts}),
            "checked": len({(v.claim.lab, v.claim.id) for v in verdicts}), "failing": failing}


def run(solutions: Path, out: Path, labs: list[str] | None, repeats: int, busy: bool,
        skip_blocks: bool, skip_labs: bool, skip_grading: bool, progress=print, peers: dict | None = None,
        claims: dict | None = None) -> Report:
    """Measure, write ``out``/BENCHMARKS.md and benchmarks.json; ``peers`` (keyword arguments of
    :func:`autograder.bench.peers.run_peers`, or None to skip) also trains the kit's PPO beside its peers;
    ``claims`` (``{"seeds": [...], "jobs": n}``, or None) re-runs the labs' claims on those seeds."""
    report = Report(machine=machine())
    lab_ids = labs or find_labs(solutions)
    if not skip_blocks:
        progress("building blocks ...")
        report.blocks = blocks(repeats)
    for lab in ([] if skip_labs else lab_ids):
        progress(f"{lab}: top to bottom x{repeats}{' and beside a busy process' if busy else ''} ...")
        report.labs[lab] = bench_lab(solutions, lab, repeats, busy)
        progress(f"  {report.labs[lab]}")
    for lab in ([] if skip_grading else lab_ids):
        progress(f"{lab}: graded with --jobs 1 and 2 ...")
        report.grading[lab] = {f"jobs{j}": bench_grading(solutions, lab, j) for j in (1, 2)}
    if peers is not None:
        from autograder.bench.peers import run_peers

        report.peers = run_peers(progress=progress, **peers)
    if claims is not None:
        progress(f"claims of {len(lab_ids)} labs on seeds {claims['seeds']} ...")
        report.claims = run_claims(solutions, lab_ids, claims["seeds"], claims.get("jobs", 2), progress=progress)
    check(report)
    out.mkdir(parents=True, exist_ok=True)
    (out / "BENCHMARKS.md").write_text(markdown(report))
    (out / "benchmarks.json").write_text(json.dumps(report.__dict__, indent=1))
    return report
