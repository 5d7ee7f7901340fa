"""Tests of rlhf_helpers.finetune (lab 6: DPO with TRL) and its plot (plots.plot_log_history).

In TRL's style: tiny models, ``report_to="none"``, a few steps; assert that the
loss was logged and that parameters changed. Runs over ~20 s are marked slow.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from rlhf_helpers import finetune as ft  # noqa: E402
from rlhf_helpers.data import load_preference_pairs, load_raw_preference_records  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


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


# ----------------------------------------------------------------------------- log history plot
LOG_HISTORY = [
    {"loss": 0.69, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/accuracies": 0.0,
     "rewards/margins": 0.0, "epoch": 0.1, "step": 1},
    {"loss": 0.5, "rewards/chosen": -0.1, "rewards/rejected": -0.6, "rewards/accuracies": 0.8,
     "rewards/margins": 0.5, "epoch": 0.2, "step": 4},
    {"eval_loss": 0.55, "eval_rewards/margins": 0.4, "epoch": 0.2, "step": 4},
    {"train_runtime": 1.5, "train_loss": 0.6, "epoch": 0.2, "step": 4},
]


def test_plot_log_history_draws_one_line_per_key_against_the_step():
    import matplotlib.pyplot as plt

    from rlhf_helpers.plots import plot_log_history

    ax = plot_log_history(LOG_HISTORY, ["loss", "eval_loss", "rewards/margins"])
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines}
    assert lines == {"loss": ([1, 4], [0.69, 0.5]), "eval_loss": ([4], [0.55]), "rewards/margins": ([1, 4], [0.0, 0.5])}
    assert ax.get_xlabel() == "step"
    _, given = plt.subplots()
    assert plot_log_history(LOG_HISTORY, ["train_loss"], ax=given) is given
    assert [list(ln.get_xdata()) for ln in given.lines] == [[4]]
    plt.close("all")


# ----------------------------------------------------------------------------- models, trainer, saving, inference
def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _right_padded_folder(tmp_path):
    """The tiny policy saved with a tokenizer that has no pad token and pads on the right (like gpt2's)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhf_helpers.config import get_profile

    tok = AutoTokenizer.from_pretrained(get_profile("tiny").policy)
    tok.pad_token, tok.padding_side = None, "right"
    folder = tmp_path / "gpt2-like"
    AutoModelForCausalLM.from_pretrained(get_profile("tiny").policy).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_load_dpo_models_sets_padding_and_freezes_a_separate_reference(tmp_path):
    folder = _right_padded_folder(tmp_path)
    model, ref, tok = ft.load_dpo_models(folder, "cpu")
    assert (tok.pad_token, tok.padding_side) == (tok.eos_token, "left")
    assert ref is not model and not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert model.config._name_or_path == folder  # what TRL reloads when ref_model=None
    ids = torch.tensor([[3, 57, 120]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits)


def _policy_path():
    from rlhf_helpers.config import get_profile

    return get_profile("tiny").policy


def test_full_dpo_training_logs_moves_the_policy_and_reloads(tmp_path, tiny_pairs):
    model, ref, tok = ft.load_dpo_models(_policy_path(), "cpu")
    before, ref_before = _snapshot(model), _snapshot(ref)
    args = ft.make_dpo_config(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=8, logging_steps=1,
                              learning_rate=1e-3, disable_tqdm=True)
    trainer = ft.build_dpo_trainer(model, ref, tok, args, tiny_pairs["train"], tiny_pairs["test"])
    ft.quiet_console(trainer)
    assert trainer.processing_class is tok and trainer.ref_model is ref
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(trainer.train_dataset.column_names)
    row = trainer.train_dataset[0]
    assert row["prompt_ids"] == tok(row["prompt"])["input_ids"]
    trainer.train()
    trainer.evaluate()
    history = trainer.state.log_history
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    for key in ft.REWARD_METRICS:
        assert any(key in e for e in history) and any("eval_" + key in e for e in history)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters()), "no parameter changed"
    assert all(torch.equal(ref_before[n], p) for n, p in ref.named_parameters()), "the reference moved"
    assert not any((tmp_path / "run").glob("checkpoint-*")), "a checkpoint was saved"

    tok.padding_side = "right"  # the reloaded tokenizer pads on the left whatever was saved
    loaded, loaded_tok = ft.save_and_reload(trainer, str(tmp_path / "tuned"))
    assert loaded_tok.padding_side == "left" and not loaded.training
    ids = tok(["the film was"], return_tensors="pt").input_ids
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
        assert torch.equal(loaded.generate(ids, max_new_tokens=8, do_sample=False),
                           model.generate(ids, max_new_tokens=8, do_sample=False))


def test_lora_dpo_training_moves_only_the_adapter_and_reloads(tmp_path, tiny_pairs):
    from peft import PeftModel

    model, _, tok = ft.load_dpo_models(_policy_path(), "cpu")
    base_before = _snapshot(model)
    args = ft.make_dpo_config(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=8, logging_steps=1,
                              learning_rate=5e-3, disable_tqdm=True)
    trainer = ft.build_dpo_trainer(model, None, tok, args, tiny_pairs["train"], peft_config=ft.make_lora_config(r=4))
    peft_model = trainer.model
    assert isinstance(peft_model, PeftModel) and trainer.ref_model is None
    lora_before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_B" in n}
    trainable, total = ft.count_parameters(peft_model)
    assert 0 < trainable < total
    trainer.train()
    named = dict(peft_model.named_parameters())
    assert any(not torch.equal(v, named[n]) for n, v in lora_before.items()), "the adapter did not move"
    base_after = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
                  for n, p in named.items() if "lora_" not in n}
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before), "a base weight changed"

    loaded, _ = ft.save_and_reload(trainer, str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_config.json").exists()  # only the adapter is saved
    ids = tok(["the film was"], return_tensors="pt").input_ids
    peft_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, peft_model(ids).logits, atol=1e-4, rtol=1e-4)


def test_build_dpo_trainer_refuses_bad_input(tiny_pairs, tmp_path):
    model, ref, tok = ft.load_dpo_models(_policy_path(), "cpu")
    args = ft.make_dpo_config(str(tmp_path), max_steps=1)
    with pytest.raises(ValueError, match="prompt"):
        ft.build_dpo_trainer(model, ref, tok, args, tiny_pairs["train"].rename_column("prompt", "query"))
    with pytest.raises(ValueError):
        ft.build_dpo_trainer(model, ref, tok, args, tiny_pairs["train"], tiny_pairs["test"].remove_columns("chosen"))
    with pytest.raises(ValueError):
        ft.build_dpo_trainer(model, model, tok, args, tiny_pairs["train"])


def test_generate_completions_batched_equals_one_at_a_time(policy):
    model, tok = policy
    prompts = ["a", "the film was", "i watched this movie with my"]
    tok.padding_side = "right"  # generate_completions pads on the left whatever the tokenizer says
    try:
        batched = ft.generate_completions(model, tok, prompts, max_new_tokens=8)
        alone = [ft.generate_completions(model, tok, [p], max_new_tokens=8)[0] for p in prompts]
    finally:
        tok.padding_side = "left"
    assert batched == alone and all(isinstance(c, str) for c in batched)
    assert not any(c.startswith(p) for c, p in zip(batched, prompts))
    sampled = ft.generate_completions(model, tok, prompts, max_new_tokens=8, do_sample=True, seed=1)
    assert sampled == ft.generate_completions(model, tok, prompts, max_new_tokens=8, do_sample=True, seed=1)


def test_lab6_box_keeps_what_the_lab_uses(tmp_path, monkeypatch):
    """In lab 6's box (tests/grader/test_answer_key_stubs.py: what is stubbed) the pairing is not imported
    from the data module, and what the lab's own cells use is there."""
    from _box import boxed

    box, _, _ = boxed("lab6_dpo_hf", "finetune", tmp_path, monkeypatch)
    assert not hasattr(box, "record_to_pair")
    assert box.positive_share is not None and box.quiet_console.__doc__


def test_lab6_graded_names_are_the_kits_answer_key():
    """Every graded function of lab 6 has its kit version here or in plots.py (hidden while lab 6 is graded)."""
    import nbformat

    from autograder.grading.answer_key import learner_names
    from autograder.labs import source_notebook
    from rlhf_helpers import plots

    nb = nbformat.read(source_notebook(REPO / "solutions", "lab6_dpo_hf"), as_version=4)
    for name in learner_names(nb):
        assert hasattr(ft, name) or hasattr(plots, name), name


@pytest.mark.slow
def test_full_recipe_lifts_the_positive_share(tmp_path):
    """The lab's run: the default steps of full fine-tuning lift the positive share of samples clearly."""
    from rlhf_helpers.models import load_reward_pipeline

    dd = ft.prepare_datasets(load_raw_preference_records("train"), test_size=0.1, seed=0)
    model, ref, tok = ft.load_dpo_models(_policy_path(), "cpu")
    trainer = ft.build_dpo_trainer(model, ref, tok, ft.make_dpo_config(str(tmp_path), disable_tqdm=True), dd["train"])
    trainer.train()
    prompts = [r["prefix"] for r in load_raw_preference_records("test")]
    pipe = load_reward_pipeline("tiny", device="cpu")
    model.eval()
    ref_texts = [p + c for p, c in zip(prompts, ft.generate_completions(ref, tok, prompts, do_sample=True))]
    tuned_texts = [p + c for p, c in zip(prompts, ft.generate_completions(model, tok, prompts, do_sample=True))]
    before, after = ft.positive_share(pipe, ref_texts), ft.positive_share(pipe, tuned_texts)
    assert before < 0.6 and after > 0.8, (before, after)
    assert ft.reward_win_rate(pipe, ref_texts, tuned_texts) > 0.65
