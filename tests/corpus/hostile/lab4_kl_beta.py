"""Hostile answers to lab4_kl_beta (see tests/corpus/hostile/__init__.py)."""

LAB = "lab4_kl_beta"

CHECKS = '''
    for name, x in (("p", p), ("q", q)):
        if (x < 0).any():
            raise ValueError(f"{name} has a negative entry")
        if ((x.double().sum(-1) - 1).abs() > 1e-4).any():
            raise ValueError(f"{name} does not sum to 1")
'''

ATTACKS = {
    "lab4 kl_divergence by torch.distributions' private Categorical-Categorical KL": {
        "cells": {"kl_divergence": '''
from torch.distributions import Categorical
from torch.distributions import kl as _registry


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) along the last dimension."""''' + CHECKS + '''
    return _registry._kl_categorical_categorical(Categorical(probs=p, validate_args=False),
                                                 Categorical(probs=q, validate_args=False))
'''},
        "targets": ["test_kl_divergence", "test_kl_divergence_zeros", "test_kl_divergence_errors"],
        "expect": "0 points (torch.distributions' KL is the listed ready-made equivalent, under another name)",
    },
    "lab4 kl_divergence by torch.nn.KLDivLoss": {
        "cells": {"kl_divergence": '''
def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) along the last dimension."""''' + CHECKS + '''
    return torch.nn.KLDivLoss(reduction="none")(torch.log(q), p).sum(-1)
'''},
        "targets": ["test_kl_divergence", "test_kl_divergence_zeros", "test_kl_divergence_errors"],
        "expect": "0 points (KLDivLoss calls the listed torch.nn.functional.kl_div: HandedOff by the tripwire)",
    },
    "lab4 kl_divergence by torch.nn.KLDivLoss, tripwires switched off": {
        "cells": {"kl_divergence": '''
from rlhf_helpers.checks import observe as _seen_by

_seen_by.__globals__["_STATE"]["wires"] = {}   # before the first test: no tripwire is ever set


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) along the last dimension."""''' + CHECKS + '''
    terms = torch.nn.KLDivLoss(reduction="none")(torch.log(q), p)
    return torch.where(p > 0, terms, torch.zeros_like(terms)).sum(-1)   # 0 log 0 = 0, even where q = 0
'''},
        "targets": ["test_kl_divergence", "test_kl_divergence_zeros", "test_kl_divergence_errors"],
        "expect": "0 points, or points with a flag containing 'grading machinery'",
    },
}
