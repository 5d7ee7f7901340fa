"""Loading the tiny world: the public API, its speed, and its errors."""

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from rlhf_helpers.data import load_preference_pairs, load_raw_preference_records, load_reviews
from rlhf_helpers.models import WorldError, load_policy, load_reward_pipeline


def test_policy_is_a_gpt2_with_left_padding(policy):
    model, tokenizer = policy
    assert type(model).__name__ == "GPT2LMHeadModel" and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id == tokenizer.eos_token_id
    text = "the acting was superb. i loved it."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # exact round trip


def test_policy_writes_reviews(policy):
    model, tokenizer = policy
    torch.manual_seed(0)
    enc = tokenizer(["the plot was"] * 4, return_tensors="pt")
    out = model.generate(**enc, do_sample=True, max_new_tokens=12)
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert all(t.startswith("the plot was") for t in texts)
    assert len(set(texts)) > 1, "sampling the same query twice should give different responses"


def test_reward_pipeline_labels_and_scores(reward_pipe):
    out = reward_pipe(["what a wonderful film. i loved it.", "a waste of time. the plot was awful."], top_k=None)
    pos = [next(d["score"] for d in o if d["label"] == "POSITIVE") for o in out]
    assert {d["label"] for d in out[0]} == {"POSITIVE", "NEGATIVE"}
    assert pos[0] > 0.9 and pos[1] < 0.1
    logits = reward_pipe(["the acting was not good."], top_k=None, function_to_apply="none")[0]
    assert any(d["score"] < 0 for d in logits), "function_to_apply='none' gives raw logits"


def test_datasets():
    train, test = load_reviews("train"), load_reviews("test")
    assert train.column_names == ["text", "label"] and len(train) == 20000 and len(test) == 2000
    pairs = load_preference_pairs("train")
    assert pairs.column_names == ["prompt", "chosen", "rejected"] and len(pairs) > 1900
    records = load_raw_preference_records("test")
    assert set(records[0]) == {"prefix", "completions", "scores"} and len(records[0]["completions"]) == 2


def test_chosen_outscores_rejected(reward_pipe):
    pairs = load_preference_pairs("test")
    chosen = [p + c for p, c in zip(pairs["prompt"], pairs["chosen"])]
    rejected = [p + r for p, r in zip(pairs["prompt"], pairs["rejected"])]

    def positive(texts):
        return [next(d["score"] for d in o if d["label"] == "POSITIVE") for o in reward_pipe(texts, top_k=None)]

    margin = (sum(positive(chosen)) - sum(positive(rejected))) / len(pairs)
    assert margin > 0.3


def test_wrong_split_is_a_clear_error():
    with pytest.raises(ValueError, match=r"Unknown split 'validation'.*\['train', 'test'\]"):
        load_reviews("validation")
    with pytest.raises(ValueError, match="Unknown split"):
        load_preference_pairs("dev")


def test_missing_world_says_how_to_rebuild(world_copy):
    shutil.rmtree(world_copy / "policy")
    with pytest.raises(WorldError, match="rlhf-course build-world"):
        load_policy()
    (world_copy / "data" / "reviews_test.jsonl.gz").unlink()
    with pytest.raises(WorldError, match="build-world"):
        load_reviews("test")


def test_corrupt_model_file_is_detected(world_copy):
    weights = world_copy / "reward" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the weights
    weights.write_bytes(bytes(data))
    with pytest.raises(WorldError, match="corrupt or was changed"):
        load_reward_pipeline()
    load_policy()  # the policy is intact and still loads


def test_corrupt_manifest_and_data(world_copy):
    (world_copy / "data" / "preferences_train.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(WorldError, match="corrupt"):
        load_preference_pairs("train")
    (world_copy / "MANIFEST.json").write_text("{")
    with pytest.raises(WorldError, match="not valid JSON"):
        load_policy()


def test_load_and_sample_in_a_fresh_process():
    """A learner's first cell: import, load policy, tokenizer and reward pipeline, sample 64x16
    tokens, silently. (How long it takes is the benchmark's business, not a test's.)"""
    code = textwrap.dedent("""
        import torch
        from rlhf_helpers.models import load_policy, load_reward_pipeline
        model, tok = load_policy(device="cpu"); pipe = load_reward_pipeline(device="cpu")
        enc = tok(["the film was"] * 64, return_tensors="pt")
        out = model.generate(**enc, do_sample=True, max_new_tokens=16, min_new_tokens=16)
        scores = pipe(tok.batch_decode(out[:4], skip_special_tokens=True), top_k=None)
        print(tuple(out.shape), sorted(d["label"] for d in scores[0]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("(64, ") and "['NEGATIVE', 'POSITIVE']" in out.stdout, out.stdout
    assert out.stderr.strip() == "", f"loading must be silent, got {out.stderr[:300]!r}"
