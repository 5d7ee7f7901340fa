"""Honest answers to lab3_ppo in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: index_add instead of one-hot, torch.add(alpha=), a loop over rows for the last real token,
    # GAE by recursion over the columns, the kit's masked_mean (handed out by the lab), a torch.where
    # choice of the larger error, and a PPO step split into module-level helpers; locals named like
    # the notebook's globals (probs, rewards, mask, first, rows, adv, ret, out, batch, stats).
    "a": {
        "policy_gradient_estimate": r'''def policy_gradient_estimate(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE estimate of the gradient of E[r] with respect to the logits of a categorical policy.

    Args:
        logits: (K,) float, the policy is softmax(logits).
        actions: (N,) integer, sampled actions in [0, K).
        rewards: (N,) float, the reward of each sampled action.

    Returns:
        (K,), same dtype and device as logits: the mean over samples of r_i * (onehot(a_i) - softmax(logits)).
    """
    rewards = rewards.to(logits.dtype)
    probs = torch.softmax(logits, dim=-1)
    # sum_i r_i onehot(a_i) is each action's total reward; sum_i r_i probs is the total reward times probs
    first = torch.zeros_like(logits).index_add(0, actions.long(), rewards)
    return (first - rewards.sum() * probs) / actions.numel()
''',
        "sga_step": r'''def sga_step(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, lr: float) -> torch.Tensor:
    """One stochastic gradient ascent step on the logits.

    Args:
        logits: (K,) current logits.
        actions: (N,) sampled actions.
        rewards: (N,) their rewards.
        lr: the step size (learning rate).

    Returns:
        (K,) the new logits, logits + lr * policy_gradient_estimate(...), same dtype and device; `logits` is not modified.
    """
    return torch.add(logits, policy_gradient_estimate(logits, actions, rewards), alpha=lr)
''',
        "kl_penalized_rewards": r'''def _last_real(mask_row):
    """Index of the last 1 of a row of the mask."""
    return int(mask_row.nonzero()[-1])


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards: -beta * (logprobs - ref_logprobs) on response tokens, plus the score at the last one.

    Args:
        scores: (B,) reward-model score of each response.
        logprobs: (B, T) float log-probs of the sampled tokens under the policy (float32 or float64).
        ref_logprobs: (B, T) their log-probs under the reference model, same dtype.
        mask: (B, T) 1 on response tokens, 0 on padding (either side); bool, int or float. Every row has at
            least one real token; an end-of-text token that ends a response is a real token.
        beta: the KL coefficient (a float >= 0).
        All tensors are on the same device.

    Returns:
        (B, T), dtype and device of logprobs: 0 where mask is 0. The inputs are not modified.
    """
    mask = mask.bool()
    rewards = torch.where(mask, -beta * (logprobs - ref_logprobs), torch.zeros_like(logprobs))
    for row in range(rewards.shape[0]):
        rewards[row, _last_real(mask[row])] += scores[row].to(rewards.dtype)
    return rewards
''',
        "compute_gae": r'''def _gae_backwards(rewards, values, mask, gamma, lam, t, next_value, next_adv, out):
    """Fill out[:, :t + 1] from column t down to 0, given the value and advantage after column t."""
    if t < 0:
        return out
    delta = rewards[:, t] + gamma * next_value - values[:, t]
    adv = delta + gamma * lam * next_adv
    real = mask[:, t]
    out[:, t] = torch.where(real, adv, torch.zeros_like(adv))
    return _gae_backwards(rewards, values, mask, gamma, lam, t - 1,
                          torch.where(real, values[:, t], next_value), torch.where(real, adv, next_adv), out)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's real tokens.

    Args:
        rewards: (B, T) float per-token rewards.
        values: (B, T) float value of the state before each token (float32 or float64).
        mask: (B, T) 1 on real tokens, 0 on padding (either side); bool, int or float.
        gamma: discount factor in [0, 1].
        lam: GAE lambda in [0, 1].
        All tensors are on the same device.

    Returns:
        (advantages, returns), each (B, T) in the dtype and on the device of values, 0 where mask is 0;
        returns = advantages + values on real tokens. The value after the last real token is 0.
    """
    mask = mask.bool()
    zero = values.new_zeros(values.shape[0])             # the value (and advantage) after the episode
    adv = _gae_backwards(rewards, values, mask, gamma, lam, values.shape[1] - 1, zero, zero,
                         torch.zeros_like(values))
    ret = torch.where(mask, adv + values, torch.zeros_like(values))
    return adv, ret
''',
        "ppo_policy_loss": r'''def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float) -> torch.Tensor:
    """PPO's clipped surrogate loss, to minimise.

    Args (float tensors of one dtype, on one device):
        logprobs: (B, T) log-probs of the sampled tokens under the current policy (with gradient).
        old_logprobs: (B, T) their log-probs when they were sampled.
        advantages: (B, T) advantage estimates.
        mask: (B, T) 1 on real tokens, 0 on padding.
        clip_range: epsilon; the ratio is clipped to [1 - epsilon, 1 + epsilon].

    Returns:
        A scalar tensor (dtype of logprobs) through which gradients reach logprobs: minus the mean over all
        real tokens of min(ratio * A, clip(ratio) * A).
    """
    ratio = (logprobs - old_logprobs).exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    return masked_mean(torch.maximum(unclipped, clipped), mask)       # -min(a, b) = max(-a, -b)
''',
        "ppo_value_loss": r'''def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip_range_value: float) -> torch.Tensor:
    """PPO's clipped value loss, to minimise.

    Args (float tensors of one dtype, on one device):
        values: (B, T) current value predictions (with gradient).
        old_values: (B, T) value predictions at rollout time.
        returns: (B, T) regression targets.
        mask: (B, T) 1 on real tokens, 0 on padding.
        clip_range_value: epsilon_v; values are clipped to [old_values - eps_v, old_values + eps_v].

    Returns:
        A scalar tensor (dtype of values) through which gradients reach values: half the mean over
        real tokens of max((v - R)^2, (clip(v) - R)^2).
    """
    clipped = torch.clamp(values, old_values - clip_range_value, old_values + clip_range_value)
    err, err_clipped = (values - returns) ** 2, (clipped - returns) ** 2
    larger = torch.where(err >= err_clipped, err, err_clipped)
    return masked_mean(larger, mask) / 2
''',
        "ppo_step": r'''def _joined_texts(tokenizer, queries, responses):
    return [tokenizer.decode(q, skip_special_tokens=True) + tokenizer.decode(r, skip_special_tokens=True)
            for q, r in zip(queries, responses)]


def _forward(policy, input_ids, attention_mask, rows, R):
    """Log-probs of the response tokens and values of the states before them, (len(rows), R)."""
    logits, values = policy(input_ids[rows], attention_mask[rows])
    return logprobs_from_logits(logits[:, -R - 1:-1], input_ids[rows, -R:]), values[:, -R - 1:-1]


def _clip_fraction(logprobs, old_logprobs, mask, cliprange):
    ratio = torch.exp(logprobs.detach() - old_logprobs)
    return masked_mean(((ratio - 1).abs() > cliprange).float(), mask).item()


def _mean(values):
    return sum(values) / len(values)


def ppo_step(policy, ref_model, tokenizer, reward_fn, queries, optimizer, config, length_sampler,
             generation_kwargs, generator=None):
    """One PPO iteration: sample a response to each query, score it, and update the policy on these samples.

    Args:
        policy: a ValueHeadModel (the causal LM is policy.pretrained_model); trained in place. Keep it in
            eval mode (policy.eval(), no dropout) so that rollout-time and update-time log-probs agree.
            Every tensor you build goes to policy.device.
        ref_model: the frozen reference causal LM (no value head).
        tokenizer: the policy's tokenizer; pad with pad_token_id(tokenizer).
        reward_fn: a list of N texts -> (N,) float tensor of scores.
        queries: N one-dimensional torch.long tensors (token ids, on the CPU).
        optimizer: a torch optimizer over policy's parameters.
        config: a PPOConfig. Uses ppo_epochs, mini_batch_size, kl_coef (beta), gamma, lam,
            whiten_advantages, cliprange, cliprange_value, vf_coef and max_grad_norm (None: no clipping;
            else torch.nn.utils.clip_grad_norm_ on policy.parameters() before each optimizer step).
        length_sampler, generation_kwargs: passed to rollout(policy.pretrained_model, tokenizer, queries, ...).
        generator: a torch.Generator for the minibatch order. In each epoch the minibatches are
            torch.randperm(N, generator=generator).split(config.mini_batch_size), in that order.

    Returns:
        (stats, batch).
        stats: a dict of Python floats,
            "reward_mean": the mean score;
            "kl": the mean over responses of sum_t (logprob - ref_logprob) over its real tokens, at rollout time;
            "policy_loss", "value_loss": the two losses, averaged over the minibatch updates;
            "clip_fraction": the share of real tokens whose ratio lies outside [1 - cliprange, 1 + cliprange],
                measured in each minibatch before its update and averaged over the minibatch updates.
        batch: a dict with "queries" (the N queries), "responses" (N 1-D torch.long CPU tensors, as rollout
            returns them: a response that ended keeps its end-of-text token, a real token like any other),
            "texts" (decode(query) + decode(response), both with skip_special_tokens=True) and
            "scores" (reward_fn(texts) as an (N,) float32 CPU tensor).
    """
    out = rollout(policy.pretrained_model, tokenizer, queries, length_sampler, generation_kwargs)
    responses = [r["response_ids"] for r in out]
    texts = _joined_texts(tokenizer, queries, responses)
    scores = torch.as_tensor(reward_fn(texts)).detach().float().cpu().reshape(-1)

    device = policy.device
    input_ids, attention_mask, mask = pad_rollouts(queries, responses, pad_token_id(tokenizer), device)
    R, N = mask.shape[1], len(queries)
    policy.eval()
    with torch.no_grad():
        old_logprobs, old_values = _forward(policy, input_ids, attention_mask, torch.arange(N, device=device), R)
        ref_logprobs = causal_lm_logprobs(ref_model, input_ids, attention_mask, R)
        rewards = kl_penalized_rewards(scores.to(device), old_logprobs, ref_logprobs, mask, config.kl_coef)
        adv, ret = compute_gae(rewards, old_values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            adv = masked_whiten(adv, mask)

    stats = {"policy_loss": [], "value_loss": [], "clip_fraction": []}
    for _ in range(config.ppo_epochs):
        for rows in torch.randperm(N, generator=generator).split(config.mini_batch_size):
            rows = rows.to(device)
            logprobs, values = _forward(policy, input_ids, attention_mask, rows, R)
            policy_loss = ppo_policy_loss(logprobs, old_logprobs[rows], adv[rows], mask[rows], config.cliprange)
            value_loss = ppo_value_loss(values, old_values[rows], ret[rows], mask[rows], config.cliprange_value)
            optimizer.zero_grad()
            (policy_loss + config.vf_coef * value_loss).backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
            stats["policy_loss"].append(policy_loss.item())
            stats["value_loss"].append(value_loss.item())
            stats["clip_fraction"].append(_clip_fraction(logprobs, old_logprobs[rows], mask[rows], config.cliprange))

    kl = ((old_logprobs - ref_logprobs) * mask).sum(dim=1).mean().item()
    stats = {"reward_mean": scores.mean().item(), "kl": kl, **{k: _mean(v) for k, v in stats.items()}}
    batch = {"queries": list(queries), "responses": responses, "texts": texts, "scores": scores}
    return stats, batch
''',
    },
    # b: autograd of the surrogate, a module-level alias of another graded function, flip + argmax with
    # one_hot, a Python loop over each row's real tokens, a callable loss object, F.mse_loss(reduction=
    # "none"), and the PPO iteration as a class whose methods the graded function calls.
    "b": {
        "policy_gradient_estimate": r'''import torch.nn.functional as F


def policy_gradient_estimate(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE estimate of the gradient of E[r] with respect to the logits of a categorical policy."""
    with torch.enable_grad():
        theta = logits.detach().clone().requires_grad_(True)
        log_pi = F.log_softmax(theta, dim=-1)[actions.long()]             # (N,) log pi(a_i)
        surrogate = (rewards.to(logits.dtype) * log_pi).mean()           # its gradient is the estimate
        (grad,) = torch.autograd.grad(surrogate, theta)
    return grad
''',
        "sga_step": r'''gradient = policy_gradient_estimate


def sga_step(logits: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, lr: float) -> torch.Tensor:
    """One stochastic gradient ascent step on the logits."""
    step = lr * gradient(logits, actions, rewards)
    return logits + step
''',
        "kl_penalized_rewards": r'''import torch.nn.functional as F


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-token rewards: -beta * (logprobs - ref_logprobs) on response tokens, plus the score at the last one."""
    real = mask != 0
    T = real.shape[-1]
    last = T - 1 - real.flip(-1).int().argmax(-1)                         # (B,) the last real column
    at_last = F.one_hot(last, T).to(logprobs.dtype) * scores.to(logprobs.dtype)[:, None]
    penalty = (ref_logprobs - logprobs) * beta
    return torch.where(real, penalty, torch.zeros_like(penalty)) + at_last
''',
        "compute_gae": r'''def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's real tokens."""
    advantages = values.new_zeros(values.shape)
    returns = values.new_zeros(values.shape)
    for b in range(values.shape[0]):
        real = mask[b].nonzero().flatten().tolist()
        following_value, following_adv = 0.0, 0.0
        for t in reversed(real):
            delta = rewards[b, t] + gamma * following_value - values[b, t]
            following_adv = delta + gamma * lam * following_adv
            following_value = values[b, t]
            advantages[b, t] = following_adv
            returns[b, t] = following_adv + values[b, t]
    return advantages, returns
''',
        "ppo_policy_loss": r'''class _ClippedSurrogate:
    """-mean over real tokens of min(rho A, clip(rho) A), as a callable object."""

    def __init__(self, clip_range):
        self.low, self.high = 1 - clip_range, 1 + clip_range

    def __call__(self, logprobs, old_logprobs, advantages, mask):
        rho = torch.exp(logprobs - old_logprobs)
        objective = torch.min(rho * advantages, torch.clamp(rho, self.low, self.high) * advantages)
        real = mask.to(objective.dtype)
        return -(torch.where(real > 0, objective, torch.zeros_like(objective))).sum() / real.sum()


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float) -> torch.Tensor:
    """PPO's clipped surrogate loss, to minimise."""
    return _ClippedSurrogate(clip_range)(logprobs, old_logprobs, advantages, mask)
''',
        "ppo_value_loss": r'''import torch.nn.functional as F


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip_range_value: float) -> torch.Tensor:
    """PPO's clipped value loss, to minimise."""
    moved = (values - old_values).clamp(-clip_range_value, clip_range_value)
    squared = torch.maximum(F.mse_loss(values, returns, reduction="none"),
                            F.mse_loss(old_values + moved, returns, reduction="none"))
    real = mask.bool()
    return 0.5 * squared[real].sum() / real.sum()
''',
        "ppo_step": r'''class _PPOIteration:
    """One PPO iteration, a method per stage; the graded function runs them in order."""

    def __init__(self, policy, ref_model, tokenizer, config):
        self.policy, self.ref_model, self.tokenizer, self.config = policy, ref_model, tokenizer, config
        self.device = policy.device

    def sample(self, queries, length_sampler, generation_kwargs, reward_fn):
        rollouts = rollout(self.policy.pretrained_model, self.tokenizer, queries, length_sampler, generation_kwargs)
        responses = [r["response_ids"] for r in rollouts]
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)
        texts = [decode(q) + decode(r) for q, r in zip(queries, responses)]
        scores = reward_fn(texts).detach().to("cpu", torch.float32).reshape(-1)
        return responses, texts, scores

    def forward(self, rows):
        logits, values = self.policy(self.input_ids[rows], self.attention_mask[rows])
        R = self.mask.shape[1]
        return logprobs_from_logits(logits[:, -R - 1:-1], self.input_ids[rows][:, -R:]), values[:, -R - 1:-1]

    @torch.no_grad()
    def rollout_pass(self, queries, responses, scores):
        cfg = self.config
        self.input_ids, self.attention_mask, self.mask = pad_rollouts(queries, responses, pad_token_id(self.tokenizer),
                                                                      self.device)
        self.policy.eval()
        everyone = torch.arange(len(queries), device=self.device)
        self.old_logprobs, self.old_values = self.forward(everyone)
        self.ref_logprobs = causal_lm_logprobs(self.ref_model, self.input_ids, self.attention_mask, self.mask.shape[1])
        rewards = kl_penalized_rewards(scores.to(self.device), self.old_logprobs, self.ref_logprobs, self.mask,
                                       cfg.kl_coef)
        self.advantages, self.returns = compute_gae(rewards, self.old_values, self.mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            self.advantages = masked_whiten(self.advantages, self.mask)

    def update(self, rows, optimizer):
        cfg, m = self.config, self.mask[rows]
        logprobs, values = self.forward(rows)
        pg = ppo_policy_loss(logprobs, self.old_logprobs[rows], self.advantages[rows], m, cfg.cliprange)
        vf = ppo_value_loss(values, self.old_values[rows], self.returns[rows], m, cfg.cliprange_value)
        optimizer.zero_grad()
        (pg + cfg.vf_coef * vf).backward()
        if cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
        optimizer.step()
        outside = ((logprobs.detach() - self.old_logprobs[rows]).exp() - 1).abs() > cfg.cliprange
        return pg.item(), vf.item(), (outside & m.bool()).sum().item() / m.bool().sum().item()


def ppo_step(policy, ref_model, tokenizer, reward_fn, queries, optimizer, config, length_sampler,
             generation_kwargs, generator=None):
    """One PPO iteration: sample a response to each query, score it, and update the policy on these samples."""
    it = _PPOIteration(policy, ref_model, tokenizer, config)
    responses, texts, scores = it.sample(queries, length_sampler, generation_kwargs, reward_fn)
    it.rollout_pass(queries, responses, scores)
    done = [it.update(rows.to(it.device), optimizer)
            for _ in range(config.ppo_epochs)
            for rows in torch.randperm(len(queries), generator=generator).split(config.mini_batch_size)]
    policy_losses, value_losses, clipped = zip(*done)
    kl = (torch.where(it.mask.bool(), it.old_logprobs - it.ref_logprobs, torch.zeros_like(it.old_logprobs))
          .sum(-1).mean().item())
    stats = {"reward_mean": scores.mean().item(), "kl": kl, "policy_loss": sum(policy_losses) / len(done),
             "value_loss": sum(value_losses) / len(done), "clip_fraction": sum(clipped) / len(done)}
    return stats, {"queries": list(queries), "responses": responses, "texts": texts, "scores": scores}
''',
    },
    # c (finding): the clipped surrogate as a static method that shares the graded function's name, with
    # the kit's masked_mean (which the lab imports and hands out); the graded function delegates to it.
    # The hand-off check reads "its name is an attribute in its reach, and the kit is in its reach" as
    # "taken from an import".
    "c": {
        "ppo_policy_loss": r'''class ClippedObjective:
    """PPO's clipped surrogate, kept together: ratio, clip, pessimistic minimum."""

    @staticmethod
    def ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range):
        ratio = torch.exp(logprobs - old_logprobs)
        clipped = ratio.clamp(1 - clip_range, 1 + clip_range)
        return -masked_mean(torch.minimum(ratio * advantages, clipped * advantages), mask)


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float) -> torch.Tensor:
    """PPO's clipped surrogate loss, to minimise."""
    return ClippedObjective.ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)
''',
    },
}
