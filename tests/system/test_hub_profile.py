"""The hub profile's loading path, exercised offline.

A tiny model is placed in a temporary Hugging Face cache under the real repo
ids (``lvwerra/gpt2-imdb``, ``lvwerra/distilbert-imdb``) and loaded with
``HF_HUB_OFFLINE=1`` through the very same ``load_policy`` /
``load_reward_pipeline`` calls the labs make.
"""

import os
import shutil
import subprocess
import sys
import textwrap

COMMIT = "0" * 40


def _fake_hub_cache(root, world_dir):
    for repo, part in [("lvwerra/gpt2-imdb", "policy"), ("lvwerra/distilbert-imdb", "reward")]:
        base = root / ("models--" + repo.replace("/", "--"))
        (base / "refs").mkdir(parents=True)
        (base / "refs" / "main").write_text(COMMIT)
        shutil.copytree(world_dir / part, base / "snapshots" / COMMIT)
        if part == "policy":  # the real gpt2-imdb tokenizer has no pad token and pads right
            cfg = base / "snapshots" / COMMIT / "tokenizer_config.json"
            cfg.write_text(cfg.read_text().replace('"padding_side": "left"', '"padding_side": "right"'))


def _run(code, cache):
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", RLHF_COURSE_PROFILE="hub")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_hub_ids_load_from_the_cache_offline(tmp_path, world_dir):
    _fake_hub_cache(tmp_path, world_dir)
    out = _run("""
        from rlhf_helpers.models import load_policy, load_reward_pipeline
        model, tok = load_policy()
        pipe = load_reward_pipeline()
        assert model.config._name_or_path == "lvwerra/gpt2-imdb", model.config._name_or_path
        assert tok.padding_side == "left" and tok.pad_token is not None
        res = pipe("what a wonderful film", top_k=None)
        assert {d["label"] for d in res} == {"POSITIVE", "NEGATIVE"}
        print("ok")
    """, tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_hub_profile_without_cache_says_what_to_do(tmp_path):
    out = _run("""
        from rlhf_helpers.models import load_policy
        load_policy()
    """, tmp_path)
    assert out.returncode != 0
    assert "hub profile needs access to the Hugging Face Hub" in out.stderr and "'tiny'" in out.stderr


def test_lab9_hub_model_loads_through_the_same_call(tmp_path, world_dir):
    """Lab 9's ``load_math_policy`` under the hub profile asks for the small instruct model by its repo id."""
    base = tmp_path / "models--Qwen--Qwen2.5-0.5B-Instruct"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    shutil.copytree(world_dir / "math" / "policy", base / "snapshots" / COMMIT)  # the tiny one, under the real id
    out = _run("""
        from rlhf_helpers.config import get_profile
        from rlhf_helpers.models import load_math_policy
        model, tok = load_math_policy()
        assert model.config._name_or_path == "Qwen/Qwen2.5-0.5B-Instruct", model.config._name_or_path
        assert tok.padding_side == "left" and tok.pad_token is not None
        print(get_profile().math_problems)
    """, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "gsm8k" in out.stdout.lower()
