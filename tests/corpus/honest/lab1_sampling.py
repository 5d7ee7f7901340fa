"""Honest answers to lab1_sampling in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: log-sum-exp, torch.sort, a custom functools.wraps decorator, an inverse permutation instead of
    # scatter, a presence mask, a bias row, a decoder class, recursive beam search; locals named like
    # the notebook's globals (logits, probs, out, first, ref).
    "a": {
        "softmax_with_temperature": r'''def _check_temperature(temperature):
    """The temperature as a float; T <= 0 (or nan) has no meaning."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(temperature)


def _log_normaliser(scaled):
    """log sum_j exp(scaled_j) over the last dimension (kept for broadcasting)."""
    return torch.logsumexp(scaled, dim=-1, keepdim=True)


def softmax_with_temperature(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Next-token probabilities p_i = exp(z_i / T) / sum_j exp(z_j / T), over the last dimension.

    Args:
        logits: float tensor of shape (V,) or (B, V). Entries equal to -inf get probability 0.
        temperature: T > 0. T < 1 sharpens the distribution, T > 1 flattens it.

    Returns:
        A tensor with the shape and dtype of `logits`; its last dimension sums to 1.

    Raises:
        ValueError: if temperature <= 0.
    """
    logits = logits / _check_temperature(temperature)      # log p = z / T - log Z
    probs = torch.exp(logits - _log_normaliser(logits))
    out = probs
    return out
''',
        "top_k_filter": r'''import functools


def _keeps_everything_when_k_covers_the_row(filter_fn):
    """Decorator: k == 0 or k >= V keeps every logit (as a copy), transformers' convention."""
    @functools.wraps(filter_fn)
    def wrapper(logits, k):
        if k == 0 or k >= logits.shape[-1]:
            return logits.clone()
        return filter_fn(logits, k)
    return wrapper


@_keeps_everything_when_k_covers_the_row
def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits along the last dimension and set the others to -inf.

    A logit is removed when it is strictly smaller than the k-th largest logit of its row,
    so ties with the k-th largest are kept. k == 0 or k >= vocabulary size keeps all logits.

    Args:
        logits: float tensor of shape (V,) or (B, V).
        k: how many tokens to keep (0 means no filtering).

    Returns:
        A new tensor with the shape and dtype of `logits` (the input is left unchanged).
    """
    ref, _ = torch.sort(logits, dim=-1, descending=True)
    first = ref[..., k - 1:k]                                   # the k-th largest of each row, (..., 1)
    out = torch.where(logits >= first, logits, torch.full_like(logits, float("-inf")))
    return out
''',
        "top_p_filter": r'''import torch.nn.functional as F


def _ascending(logits):
    """The logits sorted in ascending order, and the vocabulary index of each sorted entry."""
    return torch.sort(logits, dim=-1, descending=False)


def _tail(sorted_logits, p):
    """True where a sorted token lies in the tail: ascending cumulative probability <= 1 - p.
    The most probable token (the last one) is never in the tail."""
    probs = F.softmax(sorted_logits, dim=-1)
    tail = probs.cumsum(dim=-1) <= 1 - p
    tail[..., -1] = False
    return tail


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probabilities sum to >= p.

    Same result as transformers' TopPLogitsWarper(top_p=p, min_tokens_to_keep=1): with the
    probabilities sorted in ascending order, a token is removed when the cumulative sum up to
    and including it is <= 1 - p; the most probable token is always kept.

    Args:
        logits: float tensor of shape (V,) or (B, V).
        p: a number in [0, 1].

    Returns:
        A new tensor with the shape and dtype of `logits`, removed tokens set to -inf.
    """
    sorted_logits, order = _ascending(logits)
    rank = torch.argsort(order, dim=-1)                 # where each vocabulary entry sits in the sorted order
    out = logits.masked_fill(torch.gather(_tail(sorted_logits, p), -1, rank), float("-inf"))
    return out
''',
        "apply_repetition_penalty": r'''def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise the logits of every token that occurs in input_ids (transformers' rule).

    For each token id present in input_ids (once, however often it occurs):
    logit / penalty if the logit is > 0, logit * penalty otherwise. Other logits are unchanged.

    Args:
        logits: float tensor of shape (V,), or (B, V) for a batch.
        input_ids: long tensor of the tokens so far: shape (T,) with logits (V,), or (B, T)
            with logits (B, V), row b of input_ids penalising row b of logits. A single
            logits vector with a batch of ids is not a valid input (the shapes must pair up).
        penalty: theta > 0; 1.0 changes nothing, > 1 discourages repeats, < 1 encourages them.

    Returns:
        A new tensor with the shape and dtype of `logits` (the input is left unchanged).
    """
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, input_ids, True)   # which tokens occurred
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    out = torch.where(seen, penalised, logits)
    return out
''',
        "token_bias_processor": r'''from collections.abc import Iterable


class TokenBiasProcessor(LogitsProcessor):
    """Add a bias to chosen tokens' logits at chosen generation steps.

    Args:
        token_bias: {token_id: bias}; bias is added to that token's logit in every row. A large
            finite bias (e.g. 100.0) forces the token, -inf bans it; +inf would make sampling
            fail (the softmax of a row holding +inf is NaN).
        steps: any iterable of generation steps at which to add the bias, 0 being the first
            new token; None means every step.
        prompt_length: the prompt's length in tokens; the step is input_ids.shape[-1] - prompt_length.

    Called as processor(input_ids, scores) with input_ids (B, t) long and float scores (B, V);
    returns a new (B, V) tensor (the scores unchanged at other steps).
    Usable inside model.generate(logits_processor=LogitsProcessorList([processor])).
    """

    def __init__(self, token_bias: dict[int, float], steps: Iterable[int] | None = None, prompt_length: int = 0):
        self.token_bias = {int(token): float(bias) for token, bias in token_bias.items()}
        self.steps = None if steps is None else frozenset(int(s) for s in steps)
        self.prompt_length = prompt_length

    def _active(self, input_ids):
        step = input_ids.shape[-1] - self.prompt_length
        return self.steps is None or step in self.steps

    def _bias_row(self, scores):
        """(V,) with each chosen token's bias and 0 elsewhere."""
        row = torch.zeros(scores.shape[-1], dtype=scores.dtype, device=scores.device)
        for token, bias in self.token_bias.items():
            row[token] = bias
        return row

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if not self._active(input_ids):
            return scores
        return scores + self._bias_row(scores)        # broadcast over the rows: a new tensor
''',
        "generate_text": r'''class _Decoder:
    """The decoding loop as an object: settings kept once, one method per step of the recipe."""

    def __init__(self, model, tokenizer, min_new_tokens, do_sample, temperature, top_k, top_p,
                 repetition_penalty, generator):
        self.model, self.tokenizer = model, tokenizer
        self.eos = tokenizer.eos_token_id
        self.min_new_tokens, self.do_sample = min_new_tokens, do_sample
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.repetition_penalty, self.generator = repetition_penalty, generator

    def last_logits(self, ids):
        with torch.no_grad():
            out = self.model(ids)
        return out.logits[:, -1, :]                      # (1, V)

    def processed(self, logits, ids, step):
        if self.repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, ids, self.repetition_penalty)
        if step < self.min_new_tokens:
            logits = logits.clone()
            logits[:, self.eos] = float("-inf")
        return logits

    def pick(self, logits):
        if not self.do_sample:
            return logits.argmax(dim=-1, keepdim=True)
        logits = top_p_filter(top_k_filter(logits / self.temperature, self.top_k), self.top_p)
        probs = softmax_with_temperature(logits, 1.0)
        return torch.multinomial(probs, num_samples=1, generator=self.generator)

    def __call__(self, prompt, max_new_tokens):
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(self.model.device)
        first = ids.shape[-1]                            # where the new tokens start
        for step in range(max_new_tokens):
            token = self.pick(self.processed(self.last_logits(ids), ids, step))
            ids = torch.cat([ids, token], dim=-1)
            if token.item() == self.eos:
                break
        return self.tokenizer.decode(ids[0, first:], skip_special_tokens=True)


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 20, min_new_tokens: int = 0,
                  do_sample: bool = True, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  repetition_penalty: float = 1.0, generator: torch.Generator | None = None) -> str:
    """Continue `prompt` with a hand-written decoding loop and return only the new text.

    Per step: last-position logits -> repetition penalty (over all ids so far) -> EOS banned
    while fewer than min_new_tokens tokens are new -> if do_sample: / temperature, top-k,
    top-p, softmax, torch.multinomial(probs, 1, generator=generator); else argmax.
    Stops after max_new_tokens tokens or right after EOS.

    With do_sample=False the result equals the new text of
    model.generate(..., do_sample=False, max_new_tokens=..., min_new_tokens=..., repetition_penalty=...);
    temperature, top_k and top_p then play no part.

    Args:
        model, tokenizer: a causal LM and its tokenizer (the prompt ids go on model.device).
        prompt: one prompt (a str; no batch).
        generator: a torch.Generator for torch.multinomial (None: the global random state).

    Returns:
        The generated text after the prompt only, decoded with skip_special_tokens=True
        (EOS, if generated, is the last token but does not appear in the text).

    Raises:
        ValueError: if do_sample and temperature <= 0.
    """
    if do_sample and not temperature > 0:
        raise ValueError(f"sampling needs a temperature > 0, got {temperature}")
    decoder = _Decoder(model, tokenizer, min_new_tokens, do_sample, temperature, top_k, top_p,
                       repetition_penalty, generator)
    return decoder(prompt, max_new_tokens)
''',
        "beam_search": r'''import torch.nn.functional as F


def _extend(model, beams, scores, steps_left, num_beams, eos_token_id):
    """Beam search, one token per call: the beams after `steps_left` more steps (recursive)."""
    if steps_left == 0:
        return beams, scores
    with torch.no_grad():
        logp = F.log_softmax(model(beams).logits[:, -1, :].float(), dim=-1)     # (b, V)
    if eos_token_id is not None:
        logp[:, eos_token_id] = float("-inf")
    vocab = logp.shape[-1]
    out = torch.topk((scores[:, None] + logp).reshape(-1), min(num_beams, logp.numel()))
    first = torch.div(out.indices, vocab, rounding_mode="floor")              # the beam each candidate extends
    beams = torch.cat([beams[first], (out.indices % vocab).unsqueeze(-1)], dim=-1)
    return _extend(model, beams, out.values, steps_left - 1, num_beams, eos_token_id)


def beam_search(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int,
                eos_token_id: int | None = None) -> tuple[torch.Tensor, float]:
    """The most probable response of exactly max_new_tokens tokens that beam search finds.

    Keeps the num_beams partial responses with the highest total log-probability (log_softmax
    of the raw last-position logits, summed over the response); EOS (if eos_token_id is given)
    is never chosen, its log-probability being set to -inf after the log_softmax.

    Args:
        model: a causal LM, called as model(ids).logits -> float (b, t, V) for ids (b, t).
        input_ids: (1, T) long tensor of prompt ids, on the model's device.
        num_beams: >= 1 (1 is greedy decoding).
        max_new_tokens: N >= 1, the response length.
        eos_token_id: the token never to choose, or None.

    Returns:
        (new_ids, score): the best beam's new ids, a (N,) long tensor on the device of
        input_ids (prompt not included), and its total log-probability as a Python float.
    """
    start = torch.zeros(1, device=input_ids.device)
    beams, scores = _extend(model, input_ids, start, max_new_tokens, num_beams, eos_token_id)
    return beams[0, input_ids.shape[-1]:], scores[0].item()
''',
    },
    # b: a class with static and class methods, another order of operations, a rank formula for top-k,
    # recursion over rows, Python loops, f = f and f = g(f) aliases, assigned lambdas, functools.partial,
    # torch.no_grad as a decorator, recursive decoding, a beam-state class with torch.sort.
    "b": {
        "softmax_with_temperature": r'''class _TemperatureSoftmax:
    """softmax(z / T) as a callable object; the steps are static methods."""

    @staticmethod
    def centred(z):
        return z - z.amax(dim=-1, keepdim=True)          # max first: every exponent <= 0

    @classmethod
    def probabilities(cls, z, t):
        weights = torch.exp(cls.centred(z) / t)          # (z - max) / T = z / T - max / T
        return weights / weights.sum(dim=-1, keepdim=True)

    def __call__(self, logits, temperature):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        return self.probabilities(logits, temperature)


_softmax_at = _TemperatureSoftmax()


def softmax_with_temperature(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Next-token probabilities p_i = exp(z_i / T) / sum_j exp(z_j / T), over the last dimension."""
    return _softmax_at(logits, temperature)
''',
        "top_k_filter": r'''def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits along the last dimension and set the others to -inf."""
    if k == 0 or k >= logits.shape[-1]:
        return logits.clone()
    # a logit survives when fewer than k logits of its row are strictly larger (ties with the k-th stay)
    larger = (logits.unsqueeze(-2) > logits.unsqueeze(-1)).sum(dim=-1)     # (..., V)
    return logits.masked_fill(larger >= k, float("-inf"))


top_k_filter = top_k_filter
''',
        "top_p_filter": r'''def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probabilities sum to >= p."""
    if logits.dim() > 1:                                 # one row at a time
        return torch.stack([top_p_filter(row, p) for row in logits])
    values, order = logits.sort()                        # ascending
    cumulative = values.softmax(-1).cumsum(-1)
    out = logits.clone()
    for position in range(len(values) - 1):              # the last (most probable) one always stays
        if cumulative[position] <= 1 - p:
            out[order[position]] = float("-inf")
    return out
''',
        "apply_repetition_penalty": r'''def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise the logits of every token that occurs in input_ids (transformers' rule)."""
    if logits.dim() == 1:
        return apply_repetition_penalty(logits[None], input_ids[None], penalty)[0]
    out = logits.clone()
    for row, ids in enumerate(input_ids.tolist()):
        for token in set(ids):
            z = out[row, token]
            out[row, token] = z / penalty if z > 0 else z * penalty
    return out


apply_repetition_penalty = apply_repetition_penalty
''',
        "token_bias_processor": r'''from collections.abc import Iterable


class _StepGated(LogitsProcessor):
    """A logits processor that acts only at chosen generation steps; subclasses say how (adjust)."""

    def __init__(self, steps, prompt_length):
        self.steps = None if steps is None else set(steps)
        self.prompt_length = prompt_length

    def adjust(self, scores):
        raise NotImplementedError

    def __call__(self, input_ids, scores):
        step = input_ids.shape[-1] - self.prompt_length
        return scores if self.steps is not None and step not in self.steps else self.adjust(scores)


class TokenBiasProcessor(_StepGated):
    """Add a bias to chosen tokens' logits at chosen generation steps."""

    def __init__(self, token_bias: dict[int, float], steps: Iterable[int] | None = None, prompt_length: int = 0):
        super().__init__(steps, prompt_length)
        self.ids = torch.tensor(list(token_bias), dtype=torch.long)
        self.biases = torch.tensor([float(b) for b in token_bias.values()])

    def adjust(self, scores):
        # index_add adds each bias to its token's column, in every row, into a new tensor
        return scores.index_add(-1, self.ids.to(scores.device), self.biases.to(scores)[None].expand(len(scores), -1))
''',
        "generate_text": r'''import functools

_greedy = lambda logits: logits.argmax(dim=-1, keepdim=True)            # (1, 1)
_draw = functools.partial(torch.multinomial, num_samples=1)


@torch.no_grad()
def _last_logits(model, ids):
    return model(ids).logits[:, -1, :]


def _decode_from(model, ids, steps_left, step, eos, settings):
    """The ids after decoding up to steps_left more tokens from ids (recursive, one token per call)."""
    if steps_left == 0:
        return ids
    logits = _last_logits(model, ids)
    if settings["repetition_penalty"] != 1.0:
        logits = apply_repetition_penalty(logits, ids, settings["repetition_penalty"])
    if step < settings["min_new_tokens"]:
        logits = logits.index_fill(-1, torch.tensor([eos], device=logits.device), float("-inf"))
    if settings["do_sample"]:
        scaled = logits / settings["temperature"]
        probs = softmax_with_temperature(top_p_filter(top_k_filter(scaled, settings["top_k"]), settings["top_p"]))
        token = _draw(probs, generator=settings["generator"])
    else:
        token = _greedy(logits)
    ids = torch.cat([ids, token], dim=-1)
    if token.item() == eos:
        return ids
    return _decode_from(model, ids, steps_left - 1, step + 1, eos, settings)


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 20, min_new_tokens: int = 0,
                  do_sample: bool = True, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  repetition_penalty: float = 1.0, generator: torch.Generator | None = None) -> str:
    """Continue `prompt` with a hand-written decoding loop and return only the new text."""
    if do_sample and temperature <= 0:
        raise ValueError("temperature must be > 0 to sample")
    settings = dict(min_new_tokens=min_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k,
                    top_p=top_p, repetition_penalty=repetition_penalty, generator=generator)
    prompt_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
    out = _decode_from(model, prompt_ids, max_new_tokens, 0, tokenizer.eos_token_id, settings)
    return tokenizer.decode(out[0, prompt_ids.shape[1]:], skip_special_tokens=True)
''',
        "beam_search": r'''from dataclasses import dataclass


@dataclass
class _BeamState:
    """The partial responses kept so far (b, t) and their total log-probabilities (b,)."""

    beams: torch.Tensor
    scores: torch.Tensor

    def expand(self, logp, num_beams):
        """Keep the num_beams best one-token extensions of all beams (torch.sort, best first)."""
        vocab = logp.shape[-1]
        ref, order = torch.sort((self.scores.unsqueeze(1) + logp).flatten(), descending=True, stable=True)
        order, ref = order[:num_beams], ref[:num_beams]
        first = self.beams[order // vocab]
        return _BeamState(torch.cat([first, (order % vocab).unsqueeze(1)], dim=1), ref)


def beam_search(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int,
                eos_token_id: int | None = None) -> tuple[torch.Tensor, float]:
    """The most probable response of exactly max_new_tokens tokens that beam search finds."""
    state = _BeamState(input_ids, torch.zeros(1, device=input_ids.device))
    for _ in range(max_new_tokens):
        with torch.no_grad():
            out = model(state.beams).logits[:, -1, :].float()
        logp = out - torch.logsumexp(out, dim=-1, keepdim=True)        # log-softmax by hand
        if eos_token_id is not None:
            logp[:, eos_token_id] = float("-inf")
        state = state.expand(logp, num_beams)
    return state.beams[0, input_ids.shape[-1]:], float(state.scores[0])
''',
    },
    # c (finding): a private helper named _penalty, which a hidden test of the same lab also uses as a loop
    # variable (for _penalty in [1.3, 2.0, 0.7, 1.0]). Hidden tests run in the learner's namespace, so
    # under grading the helper is replaced by a float before the function is first called; the visible
    # test, all a learner can run, passes.
    "c": {
        "apply_repetition_penalty": r'''def _penalty(z, theta):
    """CTRL's rule for one logit: divided by theta if positive, multiplied by theta otherwise."""
    return torch.where(z > 0, z / theta, z * theta)


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise the logits of every token that occurs in input_ids (transformers' rule)."""
    used = torch.gather(logits, -1, input_ids)
    return logits.scatter(-1, input_ids, _penalty(used, penalty))
''',
    },
    # d (finding): an assigned lambda with a star parameter named like a notebook global. The hand-off
    # check treats a lambda's *args (and **kwargs, positional-only) parameters as free names, so *out
    # is taken for the notebook's `out = model.generate(...)` of Part B.
    "d": {
        "beam_search": r'''_join = lambda *out: torch.cat(out, dim=-1)          # the pieces of each beam, end to end


def beam_search(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int,
                eos_token_id: int | None = None) -> tuple[torch.Tensor, float]:
    """The most probable response of exactly max_new_tokens tokens that beam search finds."""
    beams, scores = input_ids, torch.zeros(1, device=input_ids.device)
    for _ in range(max_new_tokens):
        with torch.no_grad():
            logp = torch.log_softmax(model(beams).logits[:, -1, :].float(), dim=-1)
        if eos_token_id is not None:
            logp[:, eos_token_id] = float("-inf")
        vocab = logp.shape[-1]
        best = torch.topk((scores[:, None] + logp).flatten(), min(num_beams, logp.numel()))
        beams = _join(beams[best.indices // vocab], (best.indices % vocab)[:, None])
        scores = best.values
    return beams[0, input_ids.shape[-1]:], float(scores[0])
''',
    },
}
