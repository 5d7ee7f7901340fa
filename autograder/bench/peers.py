"""The kit's PPO beside its peers on one task: what ``rlhf-course bench --peers`` runs.

Every method trains the tiny world's policy against the same reward (the sentiment
classifier's raw POSITIVE logit), from the same training queries, with the same
response length, samples per rollout batch and KL coefficient, and every method is
evaluated by the same code (:func:`evaluate`) on the same 64 held-out queries:

==================  ===============================================================
``kit_ppo``         ``rlhf_helpers.ppo.PPOTrainer`` (what labs 3, 4 and 7 teach), with
                    its defaults: 2 epochs of 4 minibatches
``trl011_ppo``      classic TRL PPO, ``trl==0.11.4`` with ``transformers==4.46.3`` (the
                    last TRL with ``PPOTrainer``), in a separate environment that
                    :func:`ensure_peer_env` creates from the package registry, with its
                    default of 4 epochs of 4 minibatches
``trl011_ppo_2ep``  the same with the kit's 2 epochs: the two PPOs at equal settings
``rloo``            TRL 1.16's ``RLOOTrainer`` (lab 7's settings)
``grpo``            TRL 1.16's ``GRPOTrainer`` (lab 7's settings)
``dpo``             TRL 1.16's ``DPOTrainer`` with lab 6's settings, on the preference pairs
==================  ===============================================================

Each (method, seed) trains in a process of its own, for ``seconds`` of training
(the evaluations' time left out), and the runs are interleaved (every method for
seed 0, then for seed 1, ...) so that a change in the machine's load falls on all
methods alike. Peak memory is the process's peak resident size. A run is
evaluated after every rollout batch until its positive share reaches the target
(0.9; 0.95 for DPO, every 5 steps), then every ``EVAL_EVERY_S`` seconds of
training, and once at the end. Evaluation forks the random state, so it does
not change the training's random stream.

One rollout batch is 64 sampled responses: one PPO step (2 or 4 epochs of 4
mini-batches), or 4 optimiser steps of TRL's RLOO/GRPO (16 completions each,
4 per prompt, sampled together). "Batches per second" counts these.

This module runs in both environments: nothing at its top imports more than the
standard library, and the child (``python -m autograder.bench.peers METHOD ...``)
reads the world's files itself, so transformers 4.46 and 5.x load the same
weights and tokenizers.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORLD = REPO / "rlhf_helpers" / "world"
METHODS = ("kit_ppo", "trl011_ppo", "trl011_ppo_2ep", "rloo", "grpo", "dpo")
RL_METHODS = ("kit_ppo", "trl011_ppo", "trl011_ppo_2ep", "rloo", "grpo")
PEER_ENV_METHODS = ("trl011_ppo", "trl011_ppo_2ep")
"""The methods that run in the classic-TRL environment."""
PEER_PINS = ("trl==0.11.4", "transformers==4.46.3", "rich")
"""Classic TRL PPO; trl 0.11.4 imports ``rich`` without declaring it."""

BETA = 0.2                # KL coefficient of every RL method (labs 3 and 7)
BATCH = 64                # sampled responses per rollout batch
RESPONSE_TOKENS = 16      # every response: at most 16 new tokens (stops at the end-of-text token)
K = 4                     # RLOO/GRPO: completions per prompt
PPO_LR, TRL_LR, DPO_LR = 2e-4, 5e-4, 3e-4   # lab 3/7's PPO, lab 7's RLOO/GRPO, lab 6's DPO
KIT_EPOCHS, TRL011_EPOCHS = 2, 4   # PPO epochs per rollout batch: the kit's default, classic TRL's default
TARGET, DPO_TARGET = 0.9, 0.95
REWARD_LEVEL = 3.0        # "KL at equal reward": the KL when the held-out mean reward first reaches this logit
EVAL_EVERY_S = 2.0
HELD_OUT = 64


# ============================================================================= the child: one method, one seed
def _texts(split: str) -> list[str]:
    import gzip

    with gzip.open(WORLD / "data" / f"reviews_{split}.jsonl.gz", "rt") as f:
        return [json.loads(line)["text"] for line in f]


def load_world():
    """The tiny policy, its tokenizer and the reward pipeline, read the same way under transformers 4.46 and 5.x."""
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedTokenizerFast,
                              pipeline)

    tok = PreTrainedTokenizerFast(tokenizer_file=str(WORLD / "policy" / "tokenizer.json"), bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                                  padding_side="left", model_max_length=128)
    policy = AutoModelForCausalLM.from_pretrained(WORLD / "policy")
    rtok = PreTrainedTokenizerFast(tokenizer_file=str(WORLD / "reward" / "tokenizer.json"), cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]", unk_token="<|endoftext|>",
                                   model_max_length=128, model_input_names=["input_ids", "attention_mask"])
    classifier = AutoModelForSequenceClassification.from_pretrained(WORLD / "reward")
    pipe = pipeline("sentiment-analysis", model=classifier, tokenizer=rtok, device="cpu")
    return policy, tok, pipe


class Run:
    """Training seconds (evaluation left out), the evaluation schedule and the points of one run."""

    def __init__(self, evaluate, target: float, limit: float, every_batch: int = 1):
        self.evaluate, self.target, self.limit, self.every_batch = evaluate, target, limit, every_batch
        self.points: list[dict] = []
        self.seconds = 0.0
        self.reached: float | None = None
        self._since = time.perf_counter()

    def _record(self, batches: int) -> None:
        point = {"batches": batches, "seconds": round(self.seconds, 3), **self.evaluate()}
        self.points.append(point)
        if self.reached is None and point["share"] >= self.target:
            self.reached = point["seconds"]

    def start(self) -> None:
        self._record(0)
        self._since = time.perf_counter()

    def tick(self, batches: int) -> bool:
        """After a rollout batch (a DPO step): evaluate when due; True (after a last evaluation) when time is up."""
        self.seconds += time.perf_counter() - self._since
        done = self.seconds >= self.limit
        due = (self.reached is None and batches % self.every_batch == 0) \
            or self.seconds - self.points[-1]["seconds"] >= EVAL_EVERY_S
        if done or due:
            self._record(batches)
        self._since = time.perf_counter()
        return done


def child(method: str, seed: int, seconds: float, threads: int) -> dict:
    import copy
    import resource

    import torch

    torch.set_num_threads(threads)
    from rlhf_helpers.kl import evaluate_reward_and_kl
    from rlhf_helpers.rewards import LengthSampler, build_queries, make_reward_fn, pipeline_rewards

    policy, tok, pipe = load_world()
    reference = copy.deepcopy(policy).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    reward_fn = make_reward_fn(pipe)
    train_texts = _texts("train")
    order = torch.randperm(len(train_texts), generator=torch.Generator().manual_seed(0)).tolist()
    train_queries = build_queries([train_texts[i] for i in order[:4096]], tok,
                                  LengthSampler(2, 6, generator=torch.Generator().manual_seed(1)))
    eval_queries = build_queries(_texts("test")[:HELD_OUT], tok,
                                 LengthSampler(2, 6, generator=torch.Generator().manual_seed(4)))
    response = LengthSampler(RESPONSE_TOKENS, RESPONSE_TOKENS + 1)

    def evaluate_model(model) -> dict:
        with torch.random.fork_rng():
            r = evaluate_reward_and_kl(model, reference, tok, eval_queries, reward_fn, response, seed=0)
            share = (pipeline_rewards(pipe, r["texts"], kind="probability") > 0.5).float().mean().item()
        return {"share": round(share, 4), "reward": round(r["reward_mean"], 4), "kl": round(r["kl"]["k1"], 4)}

    torch.manual_seed(seed)
    pick = torch.Generator().manual_seed(1000 + seed)

    def batch_of_queries(n: int = BATCH) -> list:
        return [train_queries[i] for i in torch.randint(len(train_queries), (n,), generator=pick).tolist()]

    model = copy.deepcopy(policy)
    t0 = time.perf_counter()
    run = globals()[f"_train_{method}"](model, reference, tok, pipe, reward_fn, train_queries, batch_of_queries,
                                       evaluate_model, seed, seconds)
    wall = time.perf_counter() - t0
    return {"method": method, "seed": seed, "threads": threads, "seconds": round(run.seconds, 2),
            "wall_s": round(wall, 1), "batches": run.points[-1]["batches"], "time_to_target_s": run.reached,
            "target": run.target, "points": run.points,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "versions": _versions()}


def _versions() -> dict:
    import importlib.metadata as md

    return {name: md.version(name) for name in ("torch", "transformers", "trl")}


def _decode_all(tok, queries, responses) -> list[str]:
    return [tok.decode(q, skip_special_tokens=True) + tok.decode(r, skip_special_tokens=True)
            for q, r in zip(queries, responses)]


def _train_kit_ppo(model, reference, tok, pipe, reward_fn, train_queries, batch_of_queries, evaluate, seed, seconds):
    from rlhf_helpers.ppo import PPOConfig, PPOTrainer
    from rlhf_helpers.rewards import LengthSampler

    trainer = PPOTrainer(PPOConfig(batch_size=BATCH, mini_batch_size=16, ppo_epochs=KIT_EPOCHS, kl_coef=BETA,
                                   learning_rate=PPO_LR, seed=seed), model, tok, ref_model=reference)
    run = Run(lambda: evaluate(trainer.model), TARGET, seconds)
    run.start()
    batches, done = 0, False
    length = LengthSampler(RESPONSE_TOKENS, RESPONSE_TOKENS + 1)
    while not done:
        queries = batch_of_queries()
        responses = trainer.generate(queries, length_sampler=length, do_sample=True, top_k=0, top_p=1.0)
        trainer.step(queries, responses, reward_fn(_decode_all(tok, queries, responses)))
        batches += 1
        done = run.tick(batches)
    return run


def _train_trl011_ppo(model, reference, tok, pipe, reward_fn, train_queries, batch_of_queries, evaluate, seed,
                      seconds, epochs=TRL011_EPOCHS):
    from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

    config = PPOConfig(batch_size=BATCH, mini_batch_size=16, ppo_epochs=epochs, learning_rate=PPO_LR, init_kl_coef=BETA,
                       adap_kl_ctrl=False, seed=seed, log_with=None)
    # ref_model=None: TRL 0.11 wants a value-head wrapper there and copies the policy (still the reference's weights)
    trainer = PPOTrainer(config, AutoModelForCausalLMWithValueHead.from_pretrained(model), None, tok)
    run = Run(lambda: evaluate(trainer.model), TARGET, seconds)
    run.start()
    batches, done = 0, False
    while not done:
        queries = batch_of_queries()
        responses = trainer.generate(queries, return_prompt=False, batch_size=BATCH, max_new_tokens=RESPONSE_TOKENS,
                                     do_sample=True, top_k=0, top_p=1.0, pad_token_id=tok.pad_token_id)
        scores = reward_fn(_decode_all(tok, queries, responses))
        trainer.step(queries, responses, list(scores))
        batches += 1
        done = run.tick(batches)
    return run


_train_trl011_ppo_2ep = functools.partial(_train_trl011_ppo, epochs=KIT_EPOCHS)


def _clock_callback(steps_per_batch: int):
    """A TRL trainer callback that ticks ``clock.run`` after every rollout batch and stops training when it is up."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        run: Run

        def on_train_begin(self, args, state, control, **kwargs):
            self.run.start()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps_per_batch == 0 and self.run.tick(state.global_step // steps_per_batch):
                control.should_training_stop = True

    return Clock()


def _train_trl_rl(trainer_class, config_class, model, tok, reward_fn, train_queries, evaluate, seed, seconds):
    import tempfile

    from transformers import PrinterCallback

    from rlhf_helpers.rloo_grpo import prompt_dataset, rl_config, trl_reward_func

    steps_per_batch = BATCH // 16
    clock = _clock_callback(steps_per_batch)
    with tempfile.TemporaryDirectory() as tmp:
        args = rl_config(config_class, tmp, num_generations=K, beta=BETA, per_device_train_batch_size=16,
                         steps_per_generation=steps_per_batch, max_completion_length=RESPONSE_TOKENS,
                         learning_rate=TRL_LR, lr_scheduler_type="constant", max_steps=10**6, seed=seed,
                         logging_steps=10**6)
        trainer = trainer_class(model=model, reward_funcs=trl_reward_func(reward_fn), args=args,
                                train_dataset=prompt_dataset(train_queries, tok), processing_class=tok,
                                callbacks=[clock])
        trainer.remove_callback(PrinterCallback)
        clock.run = Run(lambda: evaluate(trainer.model), TARGET, seconds)
        trainer.train()
    return clock.run


def _train_rloo(model, reference, tok, pipe, reward_fn, train_queries, batch_of_queries, evaluate, seed, seconds):
    import trl

    return _train_trl_rl(trl.RLOOTrainer, trl.RLOOConfig, model, tok, reward_fn, train_queries, evaluate, seed,
                         seconds)


def _train_grpo(model, reference, tok, pipe, reward_fn, train_queries, batch_of_queries, evaluate, seed, seconds):
    import trl

    return _train_trl_rl(trl.GRPOTrainer, trl.GRPOConfig, model, tok, reward_fn, train_queries, evaluate, seed,
                         seconds)


def _train_dpo(model, reference, tok, pipe, reward_fn, train_queries, batch_of_queries, evaluate, seed, seconds):
    """Lab 6's DPO (``make_dpo_config``'s settings, constant learning rate) on the tiny world's preference pairs."""
    import copy
    import tempfile

    from transformers import PrinterCallback

    from rlhf_helpers.data import load_preference_pairs
    from rlhf_helpers.finetune import build_dpo_trainer, make_dpo_config

    clock = _clock_callback(1)
    with tempfile.TemporaryDirectory() as tmp:
        args = make_dpo_config(tmp, max_steps=10**6, lr_scheduler_type="constant", seed=seed, logging_steps=10**6,
                               disable_tqdm=True)
        trainer = build_dpo_trainer(model, copy.deepcopy(reference), tok, args, load_preference_pairs("train"))
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(clock)
        clock.run = Run(lambda: evaluate(trainer.model), DPO_TARGET, seconds, every_batch=5)
        trainer.train()
    return clock.run


# ============================================================================= the parent: environments, runs, report
def peer_python(env: Path) -> Path:
    return env / "bin" / "python"


def ensure_peer_env(env: Path, progress=print) -> Path:
    """A virtual environment with classic TRL PPO beside this machine's torch; created once, from the registry."""
    import importlib.metadata as md

    torch_pin = f"torch=={md.version('torch').split('+')[0]}"
    pins = [torch_pin, *PEER_PINS]
    marker = env / "rlhf-peers.json"
    if marker.exists() and json.loads(marker.read_text()).get("pins") == pins:
        return peer_python(env)
    progress(f"creating the peers' environment in {env} ({', '.join(pins)}; a few minutes, once) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(env)], check=True)
    done = subprocess.run([str(peer_python(env)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           *pins], capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"could not install {' '.join(pins)} into {env} (pip exited {done.returncode}):\n{tail}\n"
                           "The peers need the package registry once; run without --peers to bench the kit alone.")
    marker.write_text(json.dumps({"pins": pins}))
    return peer_python(env)


def run_one(python: Path | str, method: str, seed: int, seconds: float, threads: int, timeout: float) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false",
           "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    cmd = [str(python), "-m", "autograder.bench.peers", method, "--seed", str(seed), "--seconds", str(seconds),
           "--threads", str(threads)]
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"method": method, "seed": seed, "error": f"no result within {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        return {"method": method, "seed": seed, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def kl_at_reward(points: list[dict], level: float) -> float | None:
    """The KL (nats) at which the held-out reward first reaches ``level``, interpolated between evaluations."""
    for a, b in zip(points, points[1:]):
        if b["reward"] >= level > a["reward"]:
            w = (level - a["reward"]) / (b["reward"] - a["reward"])
            return a["kl"] + w * (b["kl"] - a["kl"])
    return None


def summarise(runs: list[dict]) -> dict:
    """Per method, over seeds: median, min and max of each figure, and each median's ratio to the kit's PPO."""
    out: dict = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        good = [r for r in runs if r["method"] == method and "error" not in r]
        if not good:
            out[method] = {"errors": [r["error"] for r in runs if r["method"] == method]}
            continue
        figures = {
            "time_to_target_s": [r["time_to_target_s"] for r in good],
            "share": [r["points"][-1]["share"] for r in good],
            "reward": [r["points"][-1]["reward"] for r in good],
            "kl": [r["points"][-1]["kl"] for r in good],
            "kl_at_reward": [kl_at_reward(r["points"], REWARD_LEVEL) for r in good],
            "batches_per_s": [r["batches"] / r["seconds"] for r in good if r["seconds"] > 0],
            "peak_rss_mb": [r["peak_rss_mb"] for r in good],
        }
        stats = {}
        for name, values in figures.items():
            known = [v for v in values if v is not None]
            stats[name] = {"median": round(statistics.median(known), 3) if known else None,
                           "min": round(min(known), 3) if known else None,
                           "max": round(max(known), 3) if known else None,
                           "missing": len(values) - len(known)}
        out[method] = {"seeds": [r["seed"] for r in good], "target": good[0]["target"], "stats": stats,
                       "versions": good[0]["versions"],
                       "errors": [r["error"] for r in runs if r["method"] == method and "error" in r]}
    kit = out.get("kit_ppo", {}).get("stats")
    for method, s in out.items():
        if kit and "stats" in s and method in RL_METHODS:  # DPO's steps and target differ: no ratio
            s["ratio_to_kit"] = {name: (round(v["median"] / kit[name]["median"], 2)
                                        if v["median"] is not None and kit[name]["median"] else None)
                                 for name, v in s["stats"].items()}
    return out


def run_peers(seeds: int = 3, seconds: float = 60.0, methods: tuple[str, ...] = METHODS, threads: int = 1,
              env: Path | None = None, progress=print) -> dict:
    """Train every method for ``seconds`` on each of ``seeds`` seeds, interleaved; the runs and their summary."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}.")
    pythons = {m: Path(sys.executable) for m in methods}
    if set(methods) & set(PEER_ENV_METHODS):
        env = env or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlhf-course" / "peers-venv"
        python = ensure_peer_env(env, progress)
        pythons.update({m: python for m in methods if m in PEER_ENV_METHODS})
    runs = []
    for seed in range(seeds):
        for method in methods:
            progress(f"peers: {method}, seed {seed}, {seconds:g} s of training ...")
            r = run_one(pythons[method], method, seed, seconds, threads, timeout=10 * seconds + 300)
            progress("  " + (r["error"] if "error" in r else
                             f"{r['batches']} batches in {r['seconds']} s, reached {r['target']} at "
                             f"{r['time_to_target_s']} s, final {r['points'][-1]}"))
            runs.append(r)
    return {"seconds": seconds, "threads": threads, "settings": {
        "beta": BETA, "batch": BATCH, "response_tokens": RESPONSE_TOKENS, "k": K, "ppo_lr": PPO_LR,
        "ppo_epochs": {"kit": KIT_EPOCHS, "trl011": TRL011_EPOCHS}, "trl_lr": TRL_LR, "dpo_lr": DPO_LR, "held_out": HELD_OUT, "eval_every_s": EVAL_EVERY_S},
        "reward_level": REWARD_LEVEL, "runs": runs, "summary": summarise(runs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.bench.peers", description="One method, one seed (a child "
                                     "of rlhf-course bench --peers); prints its result as one JSON line.")
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args(argv)
    print(json.dumps(child(a.method, a.seed, a.seconds, a.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
