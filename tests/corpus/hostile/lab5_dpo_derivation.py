"""Hostile answers to lab5_dpo_derivation (see tests/corpus/hostile/__init__.py)."""

LAB = "lab5_dpo_derivation"

SEQUENCE = '''
def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probabilities of the masked tokens of each sequence."""
    mask = loss_mask[:, 1:].bool()
    per_token = {call}
    return torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1)
'''

ATTACKS = {
    "lab5 sequence_logprobs by TRL's unlisted selective_log_softmax_and_entropy": {
        "cells": {"sequence_logprobs": "from trl.trainer.utils import selective_log_softmax_and_entropy\n"
                  + SEQUENCE.replace("{call}", "selective_log_softmax_and_entropy(logits[:, :-1], labels[:, 1:])[0]")},
        "targets": ["test_sequence_logprobs", "test_sequence_logprobs_masks"],
        "expect": "0 points (it calls the listed selective_log_softmax: HandedOff by the tripwire)",
    },
    "lab5 sequence_logprobs by the listed selective_log_softmax, captured at import": {
        "cells": {"sequence_logprobs": '''
import importlib

_utils = importlib.import_module("trl.trainer.utils")
_per_token = vars(_utils)["selective_" + "log_softmax"]   # taken now, before a test wires the module
''' + SEQUENCE.replace("{call}", "_per_token(logits[:, :-1], labels[:, 1:])")},
        "targets": ["test_sequence_logprobs", "test_sequence_logprobs_masks"],
        "expect": "0 points, or points with a flag (the listed equivalent did the work)",
    },
}
