"""Hostile answers to lab6_dpo_hf (see tests/corpus/hostile/__init__.py)."""

LAB = "lab6_dpo_hf"

ATTACKS = {
    "lab6 a fake DPOTrainer that names itself trl's": {
        "cells": {"build_dpo_trainer": '''
class DPOTrainer:
    """Not a trainer: an object whose class calls itself trl's DPOTrainer and holds what the tests read.
    It cannot train."""

    __module__ = "trl.trainer.dpo_trainer"
    __qualname__ = "DPOTrainer"

    def __init__(self, model, ref_model, args, train_dataset, eval_dataset, processing_class, peft_config):
        self.model = peft.get_peft_model(model, peft_config) if peft_config is not None else model
        self.ref_model, self.args, self.processing_class = ref_model, args, processing_class

        def ids(row):
            return {"prompt_ids": processing_class(row["prompt"])["input_ids"]}

        self.train_dataset = train_dataset.map(ids)
        self.eval_dataset = None if eval_dataset is None else eval_dataset.map(ids)


def build_dpo_trainer(model, ref_model, tokenizer, args, train_dataset, eval_dataset=None, peft_config=None):
    """A look-alike of trl.DPOTrainer."""
    for ds in (train_dataset, eval_dataset):
        if ds is not None and not {"prompt", "chosen", "rejected"} <= set(ds.column_names):
            raise ValueError("a preference dataset needs prompt, chosen and rejected")
    if ref_model is not None and ref_model is model:
        raise ValueError("ref_model must be a separate copy of the model")
    return DPOTrainer(model, ref_model, args, train_dataset, eval_dataset, tokenizer, peft_config)
'''},
        "targets": ["test_build_dpo_trainer", "test_build_dpo_trainer_errors"],
        "expect": "0 points (a type is decided by names the learner's class can claim)",
    },
}
