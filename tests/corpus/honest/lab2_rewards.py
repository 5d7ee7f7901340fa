"""Honest answers to lab2_rewards in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: helpers and helpers of helpers, next() over a generator, a 0-d randint, one batched tokenizer
    # call, generation settings built by a helper, Welford's running variance with an lru_cache'd root;
    # locals named like the notebook's globals (out, mean, se, rewards, batch, q).
    "a": {
        "scores_from_pipe_outputs": r'''def _missing(label, i, per_text):
    return KeyError(f"no {label!r} among the labels of text {i}: {[d['label'] for d in per_text]}")


def _score_of(per_text, label, i):
    """The score of `label` in one text's list of {label, score} dicts, whatever their order."""
    found = next((d["score"] for d in per_text if d["label"] == label), None)
    if found is None:
        raise _missing(label, i, per_text)
    return float(found)


def scores_from_pipe_outputs(pipe_outputs: list[list[dict]], label: str = "POSITIVE") -> torch.Tensor:
    """The score of `label` for each text, from a sentiment pipeline's output.

    Args:
        pipe_outputs: what `pipe(texts, top_k=None, ...)` returns: for each of the N
            texts, a list of {"label": str, "score": float} dicts, in any order.
        label: the label whose score to return, e.g. "POSITIVE".

    Returns:
        A float32 tensor of shape (N,).

    Raises:
        ValueError (or KeyError) whose message names `label` when it is missing.
    """
    out = [_score_of(per_text, label, i) for i, per_text in enumerate(pipe_outputs)]
    return torch.as_tensor(out, dtype=torch.float32)
''',
        "length_sampler": r'''def _validated_bounds(min_value, max_value):
    if min_value < 1:
        raise ValueError(f"lengths start at 1, got min_value={min_value}")
    if max_value <= min_value:
        raise ValueError(f"[{min_value}, {max_value}) holds no length")
    return int(min_value), int(max_value)


class LengthSampler:
    """Draws integer lengths uniformly from [min_value, max_value) (max_value excluded).

    Args:
        min_value: the smallest length, at least 1.
        max_value: one past the largest length; greater than min_value.
        generator: a torch.Generator for reproducible draws; None uses torch's global one.

    Raises:
        ValueError: if min_value < 1 or min_value >= max_value.
    """

    def __init__(self, min_value: int, max_value: int, generator: torch.Generator | None = None):
        self.low, self.high = _validated_bounds(min_value, max_value)
        self.generator = generator

    def __call__(self) -> int:
        """One length: a Python int in [min_value, max_value)."""
        draw = torch.randint(self.low, self.high, size=(), generator=self.generator)   # a 0-d tensor
        return int(draw)
''',
        "build_queries": r'''def build_queries(texts: list[str], tokenizer, length_sampler: LengthSampler) -> list[torch.Tensor]:
    """The first n tokens of each text, with n = length_sampler() drawn once per text.

    Returns:
        A list of N one-dimensional torch.long tensors; the i-th has
        min(n_i, number of tokens of texts[i]) tokens.
    """
    if not texts:
        return []
    batch = tokenizer(list(texts))["input_ids"]          # one list of ids per text, no padding
    return [torch.tensor(ids[:length_sampler()], dtype=torch.long) for ids in batch]
''',
        "rollout": r'''def _generation_settings(tokenizer, generation_kwargs, n):
    """What generate() gets: the tokenizer's pad id unless the caller says otherwise, and n new tokens."""
    settings = dict(pad_token_id=tokenizer.pad_token_id)
    settings.update(generation_kwargs)
    settings["max_new_tokens"] = n
    return settings


def _sample_response(model, tokenizer, q, n, generation_kwargs):
    """The new token ids of one sampled response to the 1-D query q, on the CPU."""
    device = next(model.parameters()).device
    ids = q.to(device).unsqueeze(0)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids),
                             **_generation_settings(tokenizer, generation_kwargs, n))
    return out[0, ids.shape[-1]:].cpu()


def rollout(model, tokenizer, query_tensors: list[torch.Tensor], length_sampler: LengthSampler,
            generation_kwargs: dict) -> list[dict]:
    """Sample one response per query from the policy, one query at a time.

    For each query (in order) a response length n is drawn from length_sampler, and the
    model generates at most n new tokens with generation_kwargs (e.g. do_sample=True).

    Args:
        query_tensors: N one-dimensional torch.long tensors of token ids (on any device).
        generation_kwargs: passed on to model.generate unchanged (not max_new_tokens).

    Returns:
        One dict per query: "query" (the query decoded with skip_special_tokens=True),
        "response" (response_ids decoded with skip_special_tokens=True), "query_ids" (the
        query tensor itself) and "response_ids" (1-D torch.long on the CPU: the new tokens
        exactly as generate produced them, at most n, no padding; when the model ends the
        review, the end-of-text token is kept as the last id, but not in the text).
    """
    rollouts = []
    for q in query_tensors:
        response = _sample_response(model, tokenizer, q, length_sampler(), generation_kwargs)
        rollouts.append({"query": tokenizer.decode(q, skip_special_tokens=True),
                         "response": tokenizer.decode(response, skip_special_tokens=True),
                         "query_ids": q, "response_ids": response})
    return rollouts
''',
        "expected_reward": r'''import functools


@functools.lru_cache(maxsize=None)
def _root(n):
    return math.sqrt(n)


def _welford(values):
    """Mean and sum of squared deviations, updated one value at a time (Welford, 1962)."""
    mean, m2 = 0.0, 0.0
    for count, x in enumerate(values, start=1):
        delta = x - mean
        mean += delta / count
        m2 += delta * (x - mean)
    return mean, m2


def expected_reward(rewards: torch.Tensor) -> tuple[float, float]:
    """The empirical expected reward and its standard error.

    Args:
        rewards: a 1-D float tensor (float32 or float64, any device) of n rewards, one per rollout.

    Returns:
        (mean, standard_error) as Python floats, with the sample standard deviation
        (divided by n - 1) over sqrt(n).

    Raises:
        ValueError: if there are fewer than 2 rewards.
    """
    rewards = rewards.detach().double().cpu().tolist()
    n = len(rewards)
    if n < 2:
        raise ValueError(f"a standard error needs 2 rewards or more, got {n}")
    mean, m2 = _welford(rewards)
    se = math.sqrt(m2 / (n - 1)) / _root(n)
    return mean, se
''',
    },
    # b: a lambda and functools.partial, a base class with a static method and another formula for the
    # draw, recursion over the queries, a custom decorator, torch.var_mean and sqrt(var / n).
    "b": {
        "scores_from_pipe_outputs": r'''import functools

_by_label = lambda per_text: {d["label"]: d["score"] for d in per_text}


def _select(label, per_text):
    table = _by_label(per_text)
    if label not in table:
        raise ValueError(f"label {label!r} is not in this output; it has {sorted(table)}")
    return table[label]


def scores_from_pipe_outputs(pipe_outputs: list[list[dict]], label: str = "POSITIVE") -> torch.Tensor:
    """The score of `label` for each text, from a sentiment pipeline's output."""
    pick = functools.partial(_select, label)
    return torch.tensor(list(map(pick, pipe_outputs)), dtype=torch.float32)
''',
        "length_sampler": r'''from dataclasses import dataclass


class _UniformInts:
    """Uniform integers on [low, high) from torch's uniform floats."""

    @staticmethod
    def scale(u, low, high):
        # u in [0, 1) (a double here) -> low + floor(u * (high - low)), never high
        return min(low + math.floor(u * (high - low)), high - 1)


@dataclass
class LengthSampler(_UniformInts):
    """Draws integer lengths uniformly from [min_value, max_value) (max_value excluded)."""

    min_value: int
    max_value: int
    generator: torch.Generator | None = None

    def __post_init__(self):
        if not 1 <= self.min_value < self.max_value:
            raise ValueError(f"need 1 <= min_value < max_value, got [{self.min_value}, {self.max_value})")

    def __call__(self) -> int:
        """One length: a Python int in [min_value, max_value)."""
        u = torch.rand(1, generator=self.generator).item()
        return int(self.scale(u, self.min_value, self.max_value))
''',
        "rollout": r'''_cpu = lambda t: t.detach().to("cpu")


def rollout(model, tokenizer, query_tensors: list[torch.Tensor], length_sampler: LengthSampler,
            generation_kwargs: dict) -> list[dict]:
    """Sample one response per query from the policy, one query at a time."""
    if len(query_tensors) == 0:
        return []
    first, rest = query_tensors[0], list(query_tensors[1:])
    n = length_sampler()                                  # drawn before the rest's lengths: in order
    device = next(model.parameters()).device
    batch = first.to(device).reshape(1, -1)
    with torch.no_grad():
        out = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch),
                             **{"pad_token_id": tokenizer.pad_token_id, **generation_kwargs, "max_new_tokens": n})
    response = _cpu(out[0][batch.shape[1]:])
    head = {"query": tokenizer.decode(first, skip_special_tokens=True), "query_ids": first,
            "response": tokenizer.decode(response, skip_special_tokens=True), "response_ids": response}
    return [head] + rollout(model, tokenizer, rest, length_sampler, generation_kwargs)
''',
        "expected_reward": r'''import functools


def _needs_at_least(n_min):
    """Decorator: the wrapped estimator refuses fewer than n_min values."""
    def decorate(estimator):
        @functools.wraps(estimator)
        def checked(rewards):
            if rewards.numel() < n_min:
                raise ValueError(f"{estimator.__name__} needs at least {n_min} values, got {rewards.numel()}")
            return estimator(rewards)
        return checked
    return decorate


@_needs_at_least(2)
def expected_reward(rewards: torch.Tensor) -> tuple[float, float]:
    """The empirical expected reward and its standard error."""
    var, mean = torch.var_mean(rewards.double(), correction=1)
    return mean.item(), torch.sqrt(var / rewards.numel()).item()
''',
    },
    # c (finding): the mean and the standard error kept in the learner's own NamedTuple, read back as
    # est.mean and est.sem; `sem` is the last component of the equivalent scipy.stats.sem, so the
    # attribute of the learner's own class is taken for the library's function.
    "c": {
        "expected_reward": r'''from typing import NamedTuple


class Estimate(NamedTuple):
    """An estimate and its standard error of the mean."""

    mean: float
    sem: float


def _estimate(rewards):
    r = rewards.double()
    return Estimate(r.mean().item(), r.std(correction=1).item() / math.sqrt(r.numel()))


def expected_reward(rewards: torch.Tensor) -> tuple[float, float]:
    """The empirical expected reward and its standard error."""
    if rewards.numel() < 2:
        raise ValueError(f"need at least 2 rewards for a standard error, got {rewards.numel()}")
    est = _estimate(rewards)
    return est.mean, est.sem
''',
    },
}
