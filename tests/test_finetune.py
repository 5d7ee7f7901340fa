"""Tests of rlhf_helpers.finetune (lab 6: DPO with TRL) and its plot.

In TRL's style: tiny models, ``report_to="none"``, a few steps; assert that the
loss was logged and that parameters changed. Runs over ~20 s are marked slow.
"""

from __future__ import annotations

import math
import warnings

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from rlhf_helpers import finetune as ft  # noqa: E402
from rlhf_helpers.data import load_preference_pairs, load_raw_preference_records  # noqa: E402


def record(prefix="the film was", a=" great.", b=" awful.", sa=2.0, sb=-1.0):
    return {"prefix": prefix, "completions": [a, b], "scores": [sa, sb]}


@pytest.fixture(autouse=True)
def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


@pytest.fixture
def tiny_pairs():
    """32 training pairs from the shipped world (ties dropped)."""
    return ft.prepare_datasets(load_raw_preference_records("train")[:40], test_size=0.2, seed=0)


# ----------------------------------------------------------------------------- data
def test_to_preference_format_picks_the_higher_score():
    assert ft.to_preference_format(record()) == {"prompt": "the film was", "chosen": " great.", "rejected": " awful."}
    assert ft.to_preference_format(record(sa=-3, sb=0.5)) == {"prompt": "the film was", "chosen": " awful.",
                                                              "rejected": " great."}


def test_to_preference_format_works_inside_dataset_map():
    """Dataset.map hands the function LazyRow mappings, not dicts."""
    import datasets

    raw = datasets.Dataset.from_list([record(), record(prefix="i saw", sa=-1.0, sb=0.5)])
    seen = []
    pairs = raw.map(lambda row: (seen.append(type(row).__name__), ft.to_preference_format(row))[1],
                    remove_columns=raw.column_names)
    assert "dict" not in seen
    assert pairs.to_list() == [{"prompt": "the film was", "chosen": " great.", "rejected": " awful."},
                               {"prompt": "i saw", "chosen": " awful.", "rejected": " great."}]


@pytest.mark.parametrize("bad", [
    record(sa=1.0, sb=1.0),                                                 # a tie
    {"prefix": "x", "completions": [" a", " b"]},                            # no scores
    {"completions": [" a", " b"], "scores": [1, 2]},                         # no prefix
    {"prefix": "x", "completions": [" a"], "scores": [1]},                   # one completion
    {"prefix": "x", "completions": [" a", " b", " c"], "scores": [1, 2, 3]},  # three
    {"prefix": "x", "completions": [" a", " b"], "scores": [1]},             # scores do not pair up
    {"prefix": "x", "completions": " ab", "scores": [1, 2]},                 # a string, not a list
    {"prefix": "x", "completions": [" a", " b"], "scores": [float("nan"), 1.0]},
    "not a record",
])
def test_to_preference_format_rejects_ties_and_malformed_records(bad):
    with pytest.raises(ValueError):
        ft.to_preference_format(bad)


def test_prepare_datasets_splits_deterministically_and_drops_ties():
    import datasets

    records = [record(prefix=f"p{i}", sa=float(i % 3), sb=1.0) for i in range(30)]  # every third is a tie
    dd = ft.prepare_datasets(records, test_size=0.25, seed=3)
    assert isinstance(dd, datasets.DatasetDict) and set(dd) == {"train", "test"}
    for split in dd.values():
        assert split.column_names == ["prompt", "chosen", "rejected"]
    assert len(dd["train"]) + len(dd["test"]) == 20
    assert len(dd["test"]) == 5
    kept = {r["prefix"] for r in records if r["scores"][0] != r["scores"][1]}
    assert set(dd["train"]["prompt"]) | set(dd["test"]["prompt"]) == kept
    again = ft.prepare_datasets(records, test_size=0.25, seed=3)
    assert again["test"].to_list() == dd["test"].to_list() and again["train"].to_list() == dd["train"].to_list()
    other = ft.prepare_datasets(records, test_size=0.25, seed=4)
    assert other["test"].to_list() != dd["test"].to_list()
    # the split is datasets' own
    ref = datasets.Dataset.from_list([ft.to_preference_format(r) for r in records if r["prefix"] in kept])
    assert dd["test"].to_list() == ref.train_test_split(test_size=0.25, seed=3)["test"].to_list()


def test_prepare_datasets_matches_the_kit_pairs():
    dd = ft.prepare_datasets(load_raw_preference_records("test"), test_size=0.1, seed=0)
    pairs = load_preference_pairs("test")
    got = sorted(tuple(r.values()) for split in ("train", "test") for r in dd[split].to_list())
    want = sorted(tuple(r.values()) for r in pairs.to_list())
    assert got == want


def test_prepare_datasets_rejects_malformed_and_empty_input():
    with pytest.raises(ValueError):
        ft.prepare_datasets([record(), {"prefix": "x"}])
    with pytest.raises(ValueError):
        ft.prepare_datasets([record(sa=1, sb=1), record(sa=2, sb=2)])
    with pytest.raises(ValueError):
        ft.prepare_datasets("records")


# ----------------------------------------------------------------------------- configuration
def test_make_dpo_config_is_cpu_safe(tmp_path):
    from trl import DPOConfig

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated-alias warning from our defaults
        cfg = ft.make_dpo_config(str(tmp_path))
    assert isinstance(cfg, DPOConfig)
    if not torch.cuda.is_available():
        assert cfg.use_cpu is True
    assert cfg.bf16 is False and cfg.fp16 is False
    assert cfg.activation_checkpointing is False and cfg.gradient_checkpointing is False
    assert cfg.learning_rate >= 1e-4
    assert cfg.logging_steps <= 10
    assert str(cfg.save_strategy.value) == "no"
    assert cfg.report_to in ([], "none", ["none"])
    assert cfg.output_dir == str(tmp_path)


def test_make_dpo_config_overrides(tmp_path):
    cfg = ft.make_dpo_config(str(tmp_path), learning_rate=1e-3, beta=0.3, max_steps=7)
    assert (cfg.learning_rate, cfg.beta, cfg.max_steps) == (1e-3, 0.3, 7)
    assert ft.make_dpo_config(str(tmp_path), gradient_checkpointing=True).activation_checkpointing is True
    for bad in ("no_cuda", "evaluation_strategy", "max_prompt_length", "learnig_rate"):
        with pytest.raises(TypeError, match=bad):
            ft.make_dpo_config(str(tmp_path), **{bad: 1})


# ----------------------------------------------------------------------------- scoring
def test_reward_win_rate_with_a_fake_pipeline():
    pipe = ft.FakeSentimentPipeline({"a": 0.9, "b": 0.2, "c": 0.9}, seed=1)
    assert ft.reward_win_rate(pipe, ["b", "a", "a", "b"], ["a", "b", "c", "b"]) == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert isinstance(ft.reward_win_rate(pipe, ["b"], ["a"]), float)
    # shuffled labels: position 1 is not always POSITIVE
    outs = pipe(["a"] * 20, top_k=None)
    assert {o[1]["label"] for o in outs} == {"POSITIVE", "NEGATIVE"}
    with pytest.raises(ValueError):
        ft.reward_win_rate(pipe, ["a"], ["a", "b"])
    with pytest.raises(ValueError):
        ft.reward_win_rate(pipe, [], [])


def test_reward_win_rate_with_the_real_pipeline(reward_pipe):
    good = ["the acting was superb. i loved it.", "a wonderful film. the plot was brilliant."]
    bad = ["the acting was awful. i hated it.", "a boring film. the plot was lame."]
    assert ft.reward_win_rate(reward_pipe, bad, good) == 1.0
    assert ft.reward_win_rate(reward_pipe, good, bad) == 0.0
    scores = ft.positive_scores(reward_pipe, good + bad)
    assert all(s > 0.5 for s in scores[:2]) and all(s < 0.5 for s in scores[2:])
    assert ft.positive_share(reward_pipe, good + bad) == 0.5


# ----------------------------------------------------------------------------- metrics and plot
LOG_HISTORY = [
    {"loss": 0.69, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/accuracies": 0.0,
     "rewards/margins": 0.0, "epoch": 0.1, "step": 1},
    {"loss": 0.5, "rewards/chosen": -0.1, "rewards/rejected": -0.6, "rewards/accuracies": 0.8,
     "rewards/margins": 0.5, "epoch": 0.2, "step": 2},
    {"eval_loss": 0.55, "eval_rewards/margins": 0.4, "epoch": 0.2, "step": 2},
    {"train_runtime": 1.5, "train_loss": 0.6, "epoch": 0.2, "step": 2},
]


def test_training_metrics_reads_the_log_history():
    m = ft.training_metrics(LOG_HISTORY)
    assert m.steps["loss"] == [1, 2] and m.values["loss"] == [0.69, 0.5]
    assert m.last("rewards/margins") == 0.5 and m.last("eval_loss") == 0.55
    assert "epoch" not in m.values and "eval_loss" in m and "nothing" not in m
    with pytest.raises(KeyError):
        m.last("nothing")
    with pytest.raises(TypeError):
        ft.training_metrics({"loss": 1})


def test_plot_dpo_training():
    import matplotlib.pyplot as plt

    from rlhf_helpers.plots import plot_dpo_training

    axes = plot_dpo_training(LOG_HISTORY)
    labels = [[line.get_label() for line in ax.lines] for ax in axes]
    assert "loss" in labels[0] and "eval_loss" in labels[0]
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(labels[1])
    assert "rewards/accuracies" in labels[2]
    with pytest.raises(ValueError):
        plot_dpo_training([{"step": 1, "train_runtime": 1.0}])
    plt.close("all")


# ----------------------------------------------------------------------------- training
def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_full_dpo_training_logs_and_moves_the_policy(tmp_path, tiny_pairs):
    model, ref, tok = ft.load_dpo_models("tiny", device="cpu")
    before, ref_before = _snapshot(model), _snapshot(ref)
    args = ft.make_dpo_config(str(tmp_path / "run"), max_steps=4, per_device_train_batch_size=8, logging_steps=1,
                              learning_rate=1e-3, disable_tqdm=True)
    trainer = ft.build_dpo_trainer(model, tok, tiny_pairs["train"], tiny_pairs["test"], args, ref_model=ref)
    trainer.train()
    trainer.evaluate()
    m = ft.training_metrics(trainer.state.log_history)
    assert len(m.values["loss"]) == 4 and all(math.isfinite(v) for v in m.values["loss"])
    for key in ft.REWARD_METRICS:
        assert key in m and "eval_" + key in m
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters()), "no parameter changed"
    assert all(torch.equal(ref_before[n], p) for n, p in ref.named_parameters()), "the reference moved"
    assert not any((tmp_path / "run").glob("checkpoint-*")), "a checkpoint was saved"

    saved = ft.save_tuned_model(trainer.model, tok, tmp_path / "tuned")
    loaded, loaded_tok = ft.load_tuned_model(saved, device="cpu")
    assert loaded_tok.padding_side == "left"
    ids = tok(["the film was"], return_tensors="pt").input_ids
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_lora_dpo_training_moves_only_the_adapter_and_merges(tmp_path, tiny_pairs):
    from peft import PeftModel

    model, _, tok = ft.load_dpo_models("tiny", device="cpu")
    base_before = _snapshot(model)
    args = ft.make_dpo_config(str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=8, logging_steps=1,
                              learning_rate=5e-3, disable_tqdm=True)
    trainer = ft.build_dpo_trainer(model, tok, tiny_pairs["train"], args=args, peft_config=ft.make_lora_config(r=4))
    peft_model = trainer.model
    assert isinstance(peft_model, PeftModel)
    lora_before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_B" in n}
    trainable, total = ft.count_parameters(peft_model)
    assert 0 < trainable < total
    trainer.train()
    assert "loss" in ft.training_metrics(trainer.state.log_history)
    named = dict(peft_model.named_parameters())
    assert any(not torch.equal(v, named[n]) for n, v in lora_before.items()), "the adapter did not move"
    base_after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                  for n, p in named.items() if "lora_" not in n}
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before), "a base weight changed"

    saved = ft.save_tuned_model(peft_model, tok, tmp_path / "merged")
    assert not (saved / "adapter_config.json").exists()
    assert isinstance(trainer.model, PeftModel)  # merging worked on a copy
    loaded, _ = ft.load_tuned_model(saved, device="cpu")
    ids = tok(["the film was"], return_tensors="pt").input_ids
    peft_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, peft_model(ids).logits, atol=1e-4, rtol=1e-4)


def test_build_dpo_trainer_refuses_bad_input(tiny_pairs, tmp_path):
    model, ref, tok = ft.load_dpo_models("tiny", device="cpu")
    args = ft.make_dpo_config(str(tmp_path), max_steps=1)
    with pytest.raises(ValueError, match="prompt"):
        ft.build_dpo_trainer(model, tok, tiny_pairs["train"].rename_column("prompt", "query"), args=args,
                             ref_model=ref)
    with pytest.raises(ValueError):
        ft.build_dpo_trainer(model, tok, tiny_pairs["train"], args=args, ref_model=model)
    with pytest.raises(ValueError):
        ft.build_dpo_trainer(model, tok, tiny_pairs["train"], args=args, ref_model=ref,
                             peft_config=ft.make_lora_config())
    with pytest.raises(TypeError):
        ft.build_dpo_trainer(model, tok, tiny_pairs["train"].to_list(), args=args, ref_model=ref)


def test_compare_generations_same_model_is_a_draw(policy, reward_pipe):
    model, tok = policy
    prompts = ["the film was", "i watched this"]
    c = ft.compare_generations(model, model, tok, reward_pipe, prompts, max_new_tokens=8)
    assert c.reference == c.tuned and len(c.tuned) == 2
    assert c.win_rate == 0.5 and c.reference_share == c.tuned_share
    assert "the film was" in c.table(1)
    with pytest.raises(ValueError):
        ft.compare_generations(model, model, tok, reward_pipe, [])


def test_compare_generations_uses_the_given_win_rate_fn_without_rescoring(policy):
    """The win rate comes from the function passed in (the learner's, in lab 6), which reads the
    scores already computed through a pipeline of the real pipeline's format."""
    model, tok = policy
    prompts = ["the film was", "i watched this", "a movie"]
    fake = ft.FakeSentimentPipeline({}, seed=0)
    seen = {}

    def my_win_rate(pipe, texts_a, texts_b):
        seen["a"], seen["b"] = texts_a, texts_b
        calls = fake.calls
        seen["all"] = pipe(texts_a + texts_b, top_k=None)
        seen["one"] = pipe(texts_a[0], top_k=None)
        seen["rescored"] = fake.calls - calls
        seen["top1"] = pipe(texts_a, batch_size=2)          # not cached: handed to the pipeline itself
        return 0.25

    c = ft.compare_generations(model, model, tok, fake, prompts, max_new_tokens=6, win_rate_fn=my_win_rate)
    assert c.win_rate == 0.25
    assert seen["a"] == [p + t for p, t in zip(prompts, c.reference)] and seen["b"] == [p + t for p, t in zip(prompts, c.tuned)]
    assert seen["rescored"] == 0
    assert [next(d["score"] for d in out if d["label"] == "POSITIVE") for out in seen["all"]] == \
        c.reference_scores + c.tuned_scores
    assert isinstance(seen["one"], list) and {d["label"] for d in seen["one"]} == {"POSITIVE", "NEGATIVE"}
    assert len(seen["top1"]) == 3 and all(isinstance(d, dict) for d in seen["top1"])


def test_lab6_box_hides_the_answers_and_what_carries_them(monkeypatch):
    """In lab 6's grading sandbox the four answers and the helpers in CARRIES are stubs; the rest works."""
    import inspect
    import sys
    import types

    from autograder.answer_key import stub_module

    graded = {"to_preference_format", "prepare_datasets", "make_dpo_config", "reward_win_rate"}
    source = inspect.getsource(ft)
    boxed, replaced = stub_module(source, graded, "lab6_dpo_hf", "rlhf_helpers.finetune")
    assert set(replaced) == graded | set(ft.CARRIES)
    module = types.ModuleType("boxed_finetune")
    monkeypatch.setitem(sys.modules, "boxed_finetune", module)
    exec(compile(boxed, "boxed_finetune", "exec"), module.__dict__)  # noqa: S102 - the kit's own source
    namespace = module.__dict__
    for name in replaced:
        with pytest.raises(RuntimeError, match="not available while lab6_dpo_hf is graded"):
            namespace[name]({"prefix": "x", "completions": [" a", " b"], "scores": [1.0, 0.0]})
    assert "record_to_pair" not in namespace  # the pairing is not imported from the data module
    assert not any(callable(v) and getattr(v, "__name__", "").startswith("_dpo_defaults") for v in namespace.values())


@pytest.mark.slow
def test_full_recipe_lifts_the_positive_share(tmp_path):
    """The lab's run: 150 steps of full fine-tuning lift the positive share clearly."""
    from rlhf_helpers.models import load_reward_pipeline

    dd = ft.prepare_datasets(load_raw_preference_records("train"), test_size=0.1, seed=0)
    model, ref, tok = ft.load_dpo_models("tiny", device="cpu")
    trainer = ft.build_dpo_trainer(model, tok, dd["train"], args=ft.make_dpo_config(str(tmp_path), disable_tqdm=True),
                                   ref_model=ref)
    trainer.train()
    prompts = [r["prefix"] for r in load_raw_preference_records("test")]
    c = ft.compare_generations(ref, trainer.model, tok, load_reward_pipeline("tiny", device="cpu"), prompts)
    assert c.reference_share < 0.6 and c.tuned_share > 0.85, (c.reference_share, c.tuned_share)
    assert c.win_rate > 0.65
