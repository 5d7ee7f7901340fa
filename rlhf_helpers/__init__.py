"""Helpers for the RLHF course kit, one module per concept.

==============  ==============================================================
``config``      profiles: the offline "tiny" world (default) or the real "hub"
                course models, chosen by ``RLHF_COURSE_PROFILE``
``reviews``     the seeded probabilistic grammar of movie reviews
``world``       builds the tiny world: tokenizer, policy, reward model, pairs
``models``      ``load_policy`` and ``load_reward_pipeline``
``data``        ``load_reviews``, ``load_preference_pairs`` and raw records
``checks``      comparison helpers used by the labs' tests (type, shape, value)
``cli``         the ``rlhf-course`` command
==============  ==============================================================

Later modules (sampling, rewards, ppo, kl, dpo, widgets, plots) follow the
same rule: the file is named after the concept it holds.

Importing this package has no side effects: it does not seed, download or
change global state.
"""

__version__ = "0.1.0"
