"""`rlhf-course bench --peers`: the kit's PPO beside its peers on one task.

What is tested is the harness (the evaluation schedule, the figures it derives,
the report, the peers' environment) and that every method the main environment
runs trains for real and is evaluated by the same code; the speeds themselves are
never asserted (they belong to the machine).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from autograder.bench import timing as bench, peers


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_run_evaluates_every_batch_until_the_target_then_every_two_seconds(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(peers.time, "perf_counter", clock)
    shares = iter([0.5, 0.7, 0.95, 0.96, 0.97, 0.98, 0.99])
    run = peers.Run(lambda: {"share": next(shares), "reward": 0.0, "kl": 0.0}, target=0.9, limit=5.0)
    run.start()
    done = []
    for batch in range(1, 20):
        clock.now += 0.5  # half a second of training a batch (evaluation takes no time on this clock)
        done.append(run.tick(batch))
        if done[-1]:
            break
    assert [p["batches"] for p in run.points] == [0, 1, 2, 6, 10]
    assert run.reached == 1.0 and run.points[-1]["seconds"] == 5.0 and done[-1] and not any(done[:-1])


def test_kl_at_reward_interpolates_between_evaluations():
    points = [{"reward": 0.0, "kl": 0.0}, {"reward": 2.0, "kl": 1.0}, {"reward": 4.0, "kl": 3.0}]
    assert peers.kl_at_reward(points, 3.0) == pytest.approx(2.0)
    assert peers.kl_at_reward(points, 5.0) is None


def _run(method, seed, reached, final, batches, seconds=10.0):
    return {"method": method, "seed": seed, "target": 0.9, "time_to_target_s": reached, "batches": batches,
            "seconds": seconds, "peak_rss_mb": 400.0, "versions": {"torch": "t", "transformers": "x", "trl": "y"},
            "points": [{"batches": 0, "seconds": 0.0, "share": 0.5, "reward": 0.0, "kl": 0.0},
                       {"batches": batches, "seconds": seconds, **final}]}


def test_summary_gives_medians_spreads_and_ratios_to_the_kit():
    end = {"share": 0.95, "reward": 4.0, "kl": 2.0}
    runs = [_run("kit_ppo", 0, 4.0, end, 20), _run("kit_ppo", 1, 6.0, end, 30), _run("kit_ppo", 2, 5.0, end, 25),
            _run("trl011_ppo", 0, 8.0, end, 10), _run("trl011_ppo", 1, None, end, 12),
            {"method": "trl011_ppo", "seed": 2, "error": "exit 1: boom"}]
    summary = peers.summarise(runs)
    kit, trl = summary["kit_ppo"]["stats"], summary["trl011_ppo"]["stats"]
    assert kit["time_to_target_s"] == {"median": 5.0, "min": 4.0, "max": 6.0, "missing": 0}
    assert kit["batches_per_s"]["median"] == 2.5 and trl["batches_per_s"]["median"] == 1.1
    assert trl["time_to_target_s"]["missing"] == 1 and summary["trl011_ppo"]["errors"] == ["exit 1: boom"]
    assert summary["trl011_ppo"]["ratio_to_kit"]["batches_per_s"] == 0.44
    assert kit["kl_at_reward"]["median"] == pytest.approx(1.5)
    text = "\n".join(bench.peers_markdown({"seconds": 10.0, "threads": 1, "reward_level": 3.0, "summary": summary,
                                           "settings": {"beta": 0.2, "batch": 64, "response_tokens": 16, "k": 4,
                                                        "ppo_lr": 2e-4, "trl_lr": 5e-4, "dpo_lr": 3e-4,
                                                        "held_out": 64, "ppo_epochs": {"kit": 2, "trl011": 4}}}))
    assert "| PPO, the kit | 5 s (4-6) |" in text and "| PPO, TRL 0.11 | 8 s, 1 never |" in text
    assert "0.44" in text and "trl y, transformers x" in text
    assert "2 epochs of 4 minibatches per batch in the kit and 4 (its default) in TRL 0.11" in text


def test_the_kit_runs_with_its_own_defaults():
    """The bench's kit PPO is what a learner gets from PPOConfig(), and classic TRL PPO runs both ways."""
    from rlhf_helpers.ppo import PPOConfig

    assert peers.KIT_EPOCHS == PPOConfig().ppo_epochs and peers.TRL011_EPOCHS == 4
    assert set(peers.PEER_ENV_METHODS) <= set(peers.RL_METHODS) <= set(peers.METHODS)
    assert all(callable(getattr(peers, f"_train_{m}")) for m in peers.METHODS)


def test_the_peers_environment_is_made_once(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        if "venv" in cmd:
            Path(cmd[-1]).mkdir(parents=True, exist_ok=True)
        failed = "pip" in cmd and len(calls) == 2
        return subprocess.CompletedProcess(cmd, 1 if failed else 0, "", "ERROR: No matching distribution for trl\n")

    monkeypatch.setattr(peers.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="(?s)could not install .*trl==0.11.4.*run without --peers"):
        peers.ensure_peer_env(tmp_path / "env", progress=lambda line: None)
    assert not (tmp_path / "env" / "rlhf-peers.json").exists()
    python = peers.ensure_peer_env(tmp_path / "env", progress=lambda line: None)  # the second try installs
    assert python == tmp_path / "env" / "bin" / "python" and len(calls) == 4
    assert "transformers==4.46.3" in calls[-1] and any(a.startswith("torch==") for a in calls[-1])
    peers.ensure_peer_env(tmp_path / "env", progress=lambda line: None)
    assert len(calls) == 4, "a ready environment is not made again"
    json.loads((tmp_path / "env" / "rlhf-peers.json").read_text())


def test_unknown_methods_are_refused():
    with pytest.raises(ValueError, match="unknown method"):
        peers.run_peers(methods=("kit_ppo", "ppo2"))


@pytest.mark.slow
def test_every_method_here_trains_and_is_evaluated_by_the_same_code():
    result = peers.run_peers(seeds=1, seconds=2.0, methods=("kit_ppo", "rloo", "grpo", "dpo"),
                             progress=lambda line: None)
    runs = {r["method"]: r for r in result["runs"]}
    assert not [r["error"] for r in runs.values() if "error" in r]
    starts = {m: r["points"][0] for m, r in runs.items()}
    assert len({json.dumps(p, sort_keys=True) for p in starts.values()}) == 1, starts  # one evaluation, same queries
    for method, r in runs.items():
        assert r["batches"] >= 1 and r["seconds"] >= 2.0 and r["peak_rss_mb"] > 0, method
        assert r["points"][-1]["batches"] == r["batches"], method
        assert r["points"][-1] != r["points"][0], f"{method} did not change the policy"
    assert set(result["summary"]) == {"kit_ppo", "rloo", "grpo", "dpo"}
