"""The device path on CUDA (skipped without a GPU; see conftest)."""

import pytest


@pytest.mark.gpu
def test_models_load_on_the_gpu_automatically():
    from rlhf_helpers.models import load_policy, load_reward_pipeline

    model, tokenizer = load_policy()  # device chosen automatically
    assert model.device.type == "cuda"
    enc = tokenizer(["the plot was"] * 8, return_tensors="pt").to(model.device)
    out = model.generate(**enc, do_sample=True, max_new_tokens=8)
    pipe = load_reward_pipeline()
    assert pipe.device.type == "cuda"
    scores = pipe(tokenizer.batch_decode(out, skip_special_tokens=True), top_k=None)
    assert len(scores) == 8 and all({d["label"] for d in row} == {"POSITIVE", "NEGATIVE"} for row in scores)
