"""rlhf_helpers.rewards: the text the reward model reads is one text, from rollouts or from token ids."""

import torch

from rlhf_helpers.rewards import LengthSampler, decoded_texts, rollout, rollout_texts


def test_decoded_texts_of_a_rollouts_ids_are_its_rollout_texts(policy):
    """PPOTrainer.train scores decoded_texts of its ids, ppo_step rollout_texts of its rollouts: the same strings,
    end-of-sequence tokens (skipped) included."""
    model, tok = policy
    queries = [torch.tensor(tok(t)["input_ids"]) for t in ["the film", "this horror film is about a", "i"]]
    torch.manual_seed(0)
    outs = rollout(model, tok, queries, LengthSampler(4, 12), {"do_sample": True, "top_k": 0, "top_p": 1.0})
    ids = ([o["query_ids"] for o in outs], [o["response_ids"] for o in outs])
    assert decoded_texts(tok, *ids) == rollout_texts(outs)
    with_eos = ([queries[0]], [torch.tensor([tok("good")["input_ids"][0], tok.eos_token_id])])
    assert decoded_texts(tok, *with_eos) == [tok.decode(queries[0]) + tok.decode(with_eos[1][0][:1])]
