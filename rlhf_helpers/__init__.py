"""Helpers for the RLHF course kit, one module per concept.

================  ============================================================
``config``        profiles: the offline "tiny" world (default) or the real "hub"
                  course models, chosen by ``RLHF_COURSE_PROFILE``
``reviews``       the seeded probabilistic grammar of movie reviews
``build_world``   builds the tiny world (tokenizer, policy, reward model, pairs);
                  runtime code never imports it
``models``        ``load_policy``, ``load_reward_pipeline``, frozen copies
``data``          ``load_reviews``, ``load_preference_pairs``, raw records and their files
``sequences``     the ground floor: padding, position ids, token and response
                  log-probs, entropy, masked statistics
``sampling``      lab 1: temperature, top-k, top-p, repetition penalty, decoding
``rewards``       lab 2: pipeline outputs to rewards, lengths, queries, rollouts
``ppo``           lab 3: policy gradient, GAE, PPO losses, the PPO step and ``PPOTrainer``
``kl``            lab 4: KL divergence, estimators, the regularised optimum
``dpo``           lab 5: implied reward, Bradley-Terry, the DPO loss
``finetune``      lab 6: the Hugging Face DPO recipe (data, models, DPOTrainer, saving, generating)
``labelling``     lab 8: pairs to label, the append-only label file, the labelling panel
``agreement``     lab 8: kappas, bootstrap and Wilson intervals, blind win rates
``class_merge``   lab 8: a class's label files merged into one preference set
``widgets``       the generation and beta explorers (ipywidgets)
``plots``         the labs' figures
``checks``        the checks test cells are made of (type, shape, value, hint)
``observations``  ``observe``/``attempt``: what a test sees of the learner's code
``cli``           the ``build-world`` and ``info`` subcommands of ``rlhf-course``
``_args``         the argument checks every module shares (one error and message per mistake)
================  ============================================================

Each lab module also holds the kit's own version of that lab's graded
functions (for demos, later labs and the grader); the grading sandbox hides
them while that lab is graded.

Importing this package has no side effects: it does not seed, download or
change global state.
"""

__version__ = "0.1.0"
