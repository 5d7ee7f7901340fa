"""Hostile answers to lab3_ppo (see tests/corpus/hostile/__init__.py)."""

from ._sources import dead_raise, kit_function, renamed, without_arg_checks

LAB = "lab3_ppo"

POSITIVE_HOOK = '''
# No PPO at all: the policy's output layer gets a fixed bonus on a few positive words. `policy` (built
# from `model` below) is what test_ppo_training samples from, and nothing checks how it got that way.
_bonus = torch.zeros(model.config.vocab_size)
for _word in (" superb", " loved", " great", " wonderful", " gem", " brilliant", " best", " fun", " beautiful"):
    _bonus[tokenizer.encode(_word)] = 10.0
model.lm_head.register_forward_hook(lambda module, inputs, output: output + _bonus.to(output.device))
'''

KIT_GAE = renamed(kit_function("ppo", "_last_token_index") + "\n\n" + kit_function("ppo", "kl_penalized_rewards"),
                  {"_last_token_index": "_final_position", "kl": "log_ratio", "rows": "row_ids", "last": "final"})

ATTACKS = {
    "lab3 no PPO: a logits bonus makes the policy positive": {
        "extra_cells": [("test_ppo_step_minibatches", POSITIVE_HOOK)],
        "targets": ["test_ppo_training"],
        "expect": "0 points, or points with a flag (the policy was never trained with ppo_step)",
    },
    "lab3 no model at all: the kit's rollout_texts, which the test calls in the kernel, patched": {
        "extra_cells": [("test_ppo_step_minibatches", '''
import rlhf_helpers.rewards

# test_ppo_training samples from `policy` with the kit's rollout and rollout_texts, in this kernel; the
# judge only classifies the texts it is sent. Whatever the policy is, send it happy endings.
rlhf_helpers.rewards.rollout_texts = lambda rolls: [r["query"] + " i loved it. a real gem." for r in rolls]
''')],
        "targets": ["test_ppo_training"],
        "expect": "0 points, or points with a flag (the test's own helper was replaced)",
    },
    "lab3 copy of the kit's reference, renamed": {
        "cells": {
            "kl_penalized_rewards": "from rlhf_helpers import _args\n\n" + KIT_GAE,
            "compute_gae": "from rlhf_helpers import _args\n\n" + renamed(kit_function("ppo", "compute_gae"), {
                "next_value": "v_next", "next_adv": "a_next", "real": "is_real", "delta": "td", "adv": "a_t"}),
        },
        "targets": ["test_kl_penalized_rewards", "test_compute_gae", "test_compute_gae_padding"],
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab3 copy of the kit's reference behind a dead raise NotImplementedError": {
        "cells": {
            "kl_penalized_rewards": "from rlhf_helpers import _args\n\n" + dead_raise(KIT_GAE, "kl_penalized_rewards"),
            "compute_gae": "from rlhf_helpers import _args\n\n" + dead_raise(kit_function("ppo", "compute_gae"),
                                                                            "compute_gae"),
        },
        "targets": ["test_kl_penalized_rewards", "test_compute_gae", "test_compute_gae_padding"],
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab3 copy of the kit's reference, renamed, without its argument checks": {
        "cells": {
            "kl_penalized_rewards": without_arg_checks(KIT_GAE),
            "compute_gae": without_arg_checks(renamed(kit_function("ppo", "compute_gae"), {
                "next_value": "v_next", "next_adv": "a_next", "real": "is_real", "delta": "td", "adv": "a_t"})),
        },
        "targets": ["test_kl_penalized_rewards", "test_compute_gae", "test_compute_gae_padding"],
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
}
