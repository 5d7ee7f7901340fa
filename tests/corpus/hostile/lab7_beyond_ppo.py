"""Hostile answers to lab7_beyond_ppo (see tests/corpus/hostile/__init__.py)."""

from ._sources import dead_raise, kit_function, renamed, without_arg_checks

LAB = "lab7_beyond_ppo"

GROUPS = renamed(kit_function("rloo_grpo", "_groups"), {"_groups": "_by_prompt", "r": "flat"})
KIT_COPY = {
    "pairwise_loss": "from typing import Any\n\nimport torch.nn.functional as F\nfrom rlhf_helpers import _args\n\n" + renamed(
        kit_function("reward_model", "_pair_tensors") + "\n\n" + kit_function("reward_model", "pairwise_loss"),
        {"_pair_tensors": "_as_pairs", "c": "good", "r": "bad"}),
    "rloo_advantages": "from typing import Any\n\nfrom rlhf_helpers import _args\n\n" + GROUPS + "\n\n" + renamed(
        kit_function("rloo_grpo", "rloo_advantages"), {"_groups": "_by_prompt", "grouped": "table", "baseline": "others"}),
    "grpo_advantages": 'SCALES = ("group", "batch", "none")\n\n' + renamed(
        kit_function("rloo_grpo", "grpo_advantages"), {"_groups": "_by_prompt", "grouped": "table", "centred": "shifted"}),
}
TARGETS = ["test_pairwise_loss", "test_rloo_advantages", "test_grpo_advantages"]

ATTACKS = {
    "lab7 copy of the kit's reference, renamed": {
        "cells": KIT_COPY,
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab7 copy of the kit's reference behind a dead raise NotImplementedError": {
        "cells": {gid: dead_raise(src, gid) for gid, src in KIT_COPY.items()},
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab7 copy of the kit's reference, renamed, without its argument checks": {
        "cells": {gid: without_arg_checks(src).replace("from rlhf_helpers import _args\n", "")
                  for gid, src in KIT_COPY.items()},
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
}
