"""What the grader gave each attack when it was written (see __init__.py): one `rlhf-course grade
--jobs 2` of the built notebooks (a class of attacks; flags naming another attack student are left out).
Generated from the runs' grades.csv and provenance.csv; "flags" are the grades.csv flags the instructor sees."""

MEASURED = {
    ('lab1_sampling', 'lab1 copy of the solution behind a dead raise NotImplementedError'):
        {"points": 18, "of": 18, "flags": []},
    ('lab1_sampling', 'lab1 copy of the solution with no-ops interleaved'):
        {"points": 18, "of": 18, "flags": []},
    ('lab1_sampling', 'lab1 copy of the solution, renamed and reformatted'):
        {"points": 21, "of": 21, "flags": ['similar to (solutions) (0.98)']},
    ('lab1_sampling', 'lab1 copy of the solution, verbatim'):
        {"points": 21, "of": 21, "flags": ['similar to (solutions) (1.00)']},
    ('lab1_sampling', 'lab1 hidden input read out through the name of a raised exception'):
        {"points": 0, "of": 2, "flags": []},
    ('lab1_sampling', 'lab1 kit widget helper explore_generation does the decoding'):
        {"points": 0, "of": 5, "flags": ['beam_search ran rlhf_helpers.sampling.encode_prompt, which the lab does not hand out (reported by the kernel)', 'beam_search ran rlhf_helpers.sampling.next_token_distribution, which the lab does not hand out (reported by the kernel)', 'generate_text ran rlhf_helpers.sampling.encode_prompt, which the lab does not hand out (reported by the kernel)', 'generate_text ran rlhf_helpers.sampling.next_token_distribution, which the lab does not hand out (reported by the kernel)']},
    ('lab1_sampling', 'lab1 listed equivalents by run-time names, tripwires on'):
        {"points": 0, "of": 16, "flags": []},
    ('lab1_sampling', 'lab1 listed equivalents by run-time names, tripwires switched off'):
        {"points": 16, "of": 16, "flags": []},
    ('lab1_sampling', 'lab1 listed equivalents captured before the tests wire them'):
        {"points": 16, "of": 16, "flags": []},
    ('lab1_sampling', 'lab1 listed equivalents named plainly'):
        {"points": 0, "of": 5, "flags": []},
    ('lab1_sampling', 'lab1 search the grading box for hidden tests and the answer key'):
        {"points": 0, "of": 0, "flags": []},
    ('lab1_sampling', 'lab1 stub that always raises ValueError'):
        {"points": 0, "of": 2, "flags": ['similar to (solutions) (1.00)', "similar to (the kit's reference) (1.00)"]},
    ('lab1_sampling', 'lab1 stubs answer the visible examples only'):
        {"points": 0, "of": 4, "flags": []},
    ('lab1_sampling', 'lab1 tripwires switched off through the observation module'):
        {"points": 4, "of": 4, "flags": ['reaches into the grading machinery (cell 5 line 1: imports rlhf_helpers.observations)', 'reaches into the grading machinery (cell 5 line 3: uses ._STATE)']},
    ('lab2_rewards', "lab2 copy of the kit's reference behind a dead raise NotImplementedError"):
        {"points": 6, "of": 6, "flags": []},
    ('lab2_rewards', "lab2 copy of the kit's reference, renamed"):
        {"points": 6, "of": 6, "flags": ["similar to (the kit's reference) (1.00)"]},
    ('lab3_ppo', "lab3 copy of the kit's reference behind a dead raise NotImplementedError"):
        {"points": 5, "of": 5, "flags": ['compute_gae relies on rlhf_helpers._args.same_shape, which the lab does not hand out', 'compute_gae relies on rlhf_helpers._args.tensor, which the lab does not hand out', 'kl_penalized_rewards relies on rlhf_helpers._args.same_shape, which the lab does not hand out', 'kl_penalized_rewards relies on rlhf_helpers._args.tensor, which the lab does not hand out']},
    ('lab3_ppo', "lab3 copy of the kit's reference, renamed"):
        {"points": 5, "of": 5, "flags": ['compute_gae relies on rlhf_helpers._args.same_shape, which the lab does not hand out', 'compute_gae relies on rlhf_helpers._args.tensor, which the lab does not hand out', 'kl_penalized_rewards relies on rlhf_helpers._args.same_shape, which the lab does not hand out', 'kl_penalized_rewards relies on rlhf_helpers._args.tensor, which the lab does not hand out']},
    ('lab3_ppo', "lab3 copy of the kit's reference, renamed, without its argument checks"):
        {"points": 5, "of": 5, "flags": []},
    ('lab3_ppo', 'lab3 no PPO: a logits bonus makes the policy positive'):
        {"points": 2, "of": 2, "flags": []},
    ('lab3_ppo', "lab3 no model at all: the kit's rollout_texts, which the test calls in the kernel, patched"):
        {"points": 2, "of": 2, "flags": []},
    ('lab4_kl_beta', "lab4 kl_divergence by torch.distributions' private Categorical-Categorical KL"):
        {"points": 4, "of": 4, "flags": []},
    ('lab4_kl_beta', 'lab4 kl_divergence by torch.nn.KLDivLoss'):
        {"points": 0, "of": 4, "flags": ['similar to (solutions) (0.81)']},
    ('lab4_kl_beta', 'lab4 kl_divergence by torch.nn.KLDivLoss, tripwires switched off'):
        {"points": 4, "of": 4, "flags": []},
    ('lab5_dpo_derivation', "lab5 sequence_logprobs by TRL's unlisted selective_log_softmax_and_entropy"):
        {"points": 0, "of": 4, "flags": []},
    ('lab5_dpo_derivation', 'lab5 sequence_logprobs by the listed selective_log_softmax, captured at import'):
        {"points": 4, "of": 4, "flags": []},
    ('lab6_dpo_hf', "lab6 a fake DPOTrainer that names itself trl's"):
        {"points": 3, "of": 3, "flags": []},
    ('lab7_beyond_ppo', "lab7 copy of the kit's reference behind a dead raise NotImplementedError"):
        {"points": 6, "of": 6, "flags": ['grpo_advantages relies on rlhf_helpers._args.tensor, which the lab does not hand out', 'pairwise_loss relies on rlhf_helpers._args.same_shape, which the lab does not hand out', 'pairwise_loss relies on rlhf_helpers._args.tensor, which the lab does not hand out', 'rloo_advantages relies on rlhf_helpers._args.tensor, which the lab does not hand out']},
    ('lab7_beyond_ppo', "lab7 copy of the kit's reference, renamed"):
        {"points": 6, "of": 6, "flags": ['grpo_advantages relies on rlhf_helpers._args.tensor, which the lab does not hand out', 'pairwise_loss relies on rlhf_helpers._args.same_shape, which the lab does not hand out', 'pairwise_loss relies on rlhf_helpers._args.tensor, which the lab does not hand out', 'rloo_advantages relies on rlhf_helpers._args.tensor, which the lab does not hand out']},
    ('lab7_beyond_ppo', "lab7 copy of the kit's reference, renamed, without its argument checks"):
        {"points": 6, "of": 6, "flags": []},
    ('lab8_human_feedback', "lab8 copy of the kit's reference behind a dead raise NotImplementedError"):
        {"points": 4, "of": 4, "flags": []},
    ('lab8_human_feedback', "lab8 copy of the kit's reference, renamed"):
        {"points": 4, "of": 4, "flags": ["similar to (the kit's reference) (1.00)"]},
    ('lab8_human_feedback', "lab8 round 1: hidden inputs read out through a visible test's error message"):
        {"points": 0, "of": 4, "flags": []},
    ('lab8_human_feedback', 'lab8 round 2: a lookup table of the inputs round 1 revealed'):
        {"points": 2, "of": 2, "flags": []},
    ('lab9_verifiable_rewards', "lab9 check_completion_only_loss reads the test's expectations from its frame"):
        {"points": 2, "of": 2, "flags": []},
    ('lab9_verifiable_rewards', 'lab9 check_completion_only_loss that always raises ValueError'):
        {"points": 0, "of": 2, "flags": []},
    ('lab9_verifiable_rewards', 'lab9 check_completion_only_loss that never raises'):
        {"points": 0, "of": 2, "flags": []},
    ('lab9_verifiable_rewards', 'lab9 checks, observe and JUDGE patched in the kernel'):
        {"points": 0, "of": 3, "flags": ['reaches into the grading machinery (cell 8 line 2: imports rlhf_helpers.observations)', 'reaches into the grading machinery (cell 8 line 4: changes the kit: _checks.JUDGE)', 'reaches into the grading machinery (cell 8 line 5: changes the kit: _obs.JUDGE)', 'reaches into the grading machinery (cell 8 line 6: changes the kit: _checks.observe)', 'reaches into the grading machinery (cell 8 line 7: changes the kit: _checks.assert_close_float)']},
    ('lab9_verifiable_rewards', "lab9 copy of the kit's reference behind a dead raise NotImplementedError"):
        {"points": 7, "of": 9, "flags": ['pass_at_k relies on rlhf_helpers._args.integer, which the lab does not hand out', "similar to (the kit's reference) (0.83)"]},
    ('lab9_verifiable_rewards', "lab9 copy of the kit's reference, renamed"):
        {"points": 7, "of": 9, "flags": ['pass_at_k relies on rlhf_helpers._args.integer, which the lab does not hand out', "similar to (the kit's reference) (0.99)"]},
    ('lab9_verifiable_rewards', "lab9 copy of the kit's reference, renamed, without its argument checks"):
        {"points": 7, "of": 9, "flags": ["similar to (the kit's reference) (0.99)"]},
    ('lab9_verifiable_rewards', "lab9 pass_at_k by pass_at_k_curve's default estimator"):
        {"points": 0, "of": 2, "flags": []},
    ('lab9_verifiable_rewards', 'lab9 pass_at_k from a lookup table kept in one string'):
        {"points": 0, "of": 2, "flags": []},
    ('lab9_verifiable_rewards', "lab9 round 1: hidden inputs read out through a visible test's error message and printing"):
        {"points": 0, "of": 3, "flags": []},
    ('lab9_verifiable_rewards', 'lab9 round 2: a lookup table of the inputs round 1 revealed'):
        {"points": 2, "of": 2, "flags": ['parse_answer holds a table of 62 literal values (answers looked up, not computed?)']},
    ('lab9_verifiable_rewards', 'lab9 round 2: the lookup table kept in one string'):
        {"points": 2, "of": 2, "flags": []},
    ('lab9_verifiable_rewards', 'lab9 stubs answer the visible examples only'):
        {"points": 0, "of": 3, "flags": []},
    ('lab9_verifiable_rewards', "lab9 the kit's parse_answer by import_module, sys.modules, its source and its bytecode"):
        {"points": 0, "of": 2, "flags": ['reaches into the grading machinery (cell 19 line 2: imports importlib)', 'reaches into the grading machinery (cell 19 line 3: imports marshal)', 'reaches into the grading machinery (cell 19 line 21: calls importlib.import_module())', 'reaches into the grading machinery (cell 19 line 31: calls exec())', 'reaches into the grading machinery (cell 19 line 22: calls getattr() with a name built at run time)', '... and 3 more places that reach into the grading machinery']},
}
