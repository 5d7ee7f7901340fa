"""Honest answers to lab9_verifiable_rewards in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: a dict comprehension over zipped keys and values, torch.nonzero and index_select for the counted
    # positions, str.partition with removeprefix / isascii / isdigit, a callable class with __call__ and map
    # for the exact match, functools.partial of a module-level helper for the format, exact Fractions of
    # math.comb for pass@k; locals named like the notebook's globals (prompt, batch, wrong, scores, samples).
    "a": {
        "to_sft_example": r'''def to_sft_example(problem: dict) -> dict:
    """A problem as SFTTrainer's prompt-completion example.

    Args:
        problem: a dict with "prompt" and "answer" (an integer written as a string), maybe more keys.

    Returns:
        {"prompt": the prompt unchanged, "completion": "<answer>" + answer + "</answer>"}.
    """
    prompt = problem["prompt"]
    return {key: value for key, value in zip(("prompt", "completion"),
                                             (prompt, "<answer>" + problem["answer"] + "</answer>"))}
''',
        "check_completion_only_loss": r'''def check_completion_only_loss(batch: dict, tokenizer, examples: list[dict]) -> None:
    """Raise ValueError unless, in each row, the loss covers exactly that row's completion and EOS.

    Args:
        batch: "input_ids" and "labels", each (B, L) torch.long (and "attention_mask"); -100 takes no loss.
        tokenizer: the tokenizer that made the batch (tokenizer.decode, tokenizer.eos_token).
        examples: the B examples of the batch in order, each with "prompt" and "completion".

    Raises:
        ValueError: the number of rows and examples differ, or a row's counted labels differ from its
            input ids, or decode to something other than the completion + EOS.
    """
    rows = batch["input_ids"].size(0)
    if rows != len(examples):
        raise ValueError(f"the batch has {rows} rows, and {len(examples)} examples were given")
    wrong = []
    for row in range(rows):
        positions = torch.nonzero(batch["labels"][row].ne(-100)).flatten()         # where a loss is taken
        ids = batch["input_ids"][row].index_select(0, positions)
        labels = batch["labels"][row].index_select(0, positions)
        if not bool(torch.all(torch.eq(ids, labels))):
            wrong.append(f"row {row}: a counted label is not the input id at its position")
            continue
        covered = tokenizer.decode(ids.tolist())
        if covered != examples[row]["completion"] + tokenizer.eos_token:
            wrong.append(f"row {row}: the loss covers {covered!r}")
    if wrong:
        raise ValueError("; ".join(wrong))
''',
        "parse_answer": r'''def parse_answer(completion: str) -> int | None:
    """The integer in a completion's one <answer>...</answer> block, or None.

    Args:
        completion: the text the model wrote after the prompt.

    Returns:
        An int, or None when the completion does not hold exactly one well-formed block.
    """
    before, opened, rest = completion.partition("<answer>")
    inside, closed, after = rest.partition("</answer>")
    if not (opened and closed):
        return None
    pieces = (before, inside, after)
    if any("<answer>" in piece or "</answer>" in piece for piece in pieces):   # a second tag of either kind
        return None
    number = inside.strip()
    digits = number.removeprefix("-")
    if digits.isascii() and digits.isdigit():                                  # "" and "٨٥" and "²" fail here
        return int(number)
    return None
''',
        "exact_match_reward": r'''class ExactMatch:
    """A reward function object: 1.0 where the parsed answer is the reference integer."""

    def score(self, completion, reference):
        return float(parse_answer(completion) == int(reference))

    def __call__(self, completions, answer, **kwargs):
        return list(map(self.score, completions, answer))


def exact_match_reward(completions: list[str], answer: list[str], **kwargs) -> list[float]:
    """1.0 for each completion whose parsed answer equals its reference integer, else 0.0.

    Args:
        completions: the completions, as text.
        answer: the reference of each completion, an integer written as a string.
        **kwargs: anything else the trainer passes (prompts, completion_ids, ...): unused.
    """
    scores = ExactMatch()(completions, answer, **kwargs)
    return scores
''',
        "format_reward": r'''import functools


def block_alone(completion, opening, closing):
    """1.0 when the stripped completion is opening ... closing and parse_answer reads it."""
    text = completion.strip()
    whole = text[:len(opening)] == opening and text[len(text) - len(closing):] == closing
    return 1.0 if whole and parse_answer(text) is not None else 0.0


answer_block_alone = functools.partial(block_alone, opening="<answer>", closing="</answer>")


def format_reward(completions: list[str], **kwargs) -> list[float]:
    """1.0 for each completion that is one well-formed answer block and nothing else (outer spaces allowed)."""
    samples = list(completions)
    return [answer_block_alone(s) for s in samples]
''',
        "pass_at_k": r'''from fractions import Fraction
from math import comb


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    Args:
        n: samples drawn (int >= 1); c: correct among them (0 <= c <= n); k: attempts (1 <= k <= n).

    Returns:
        A Python float in [0, 1].

    Raises:
        ValueError: c or k out of range.
    """
    if c not in range(n + 1) or k not in range(1, n + 1):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    # exact integers, one rounding at the end; comb(n - c, k) is 0 when n - c < k, so the result is then 1
    return float(1 - Fraction(comb(n - c, k), comb(n, k)))
''',
    },
    # b: dict() with a bound str.format alias, plain lists and itertools.compress with zip(strict=True), re.split
    # on the tags and a named-group re.fullmatch, a generator under a for loop, a regex for the block alone,
    # log-gamma with expm1 for pass@k; locals named like the notebook's globals (counts, loose, tokenizer).
    "b": {
        "to_sft_example": r'''wrap_answer = "<answer>{}</answer>".format


def to_sft_example(problem: dict) -> dict:
    """A problem as SFTTrainer's prompt-completion example."""
    return dict(prompt=problem["prompt"], completion=wrap_answer(problem["answer"]))
''',
        "check_completion_only_loss": r'''import itertools


def check_completion_only_loss(batch: dict, tokenizer, examples: list[dict]) -> None:
    """Raise ValueError unless, in each row, the loss covers exactly that row's completion and EOS."""
    rows = zip(batch["input_ids"].tolist(), batch["labels"].tolist(), examples, strict=True)   # ValueError on a count mismatch
    for number, (ids, labels, example) in enumerate(rows):
        counted = [label != -100 for label in labels]
        kept_ids = list(itertools.compress(ids, counted))
        kept_labels = list(itertools.compress(labels, counted))
        if kept_ids != kept_labels:
            raise ValueError(f"row {number}: labels {kept_labels} where the input ids are {kept_ids}")
        text = tokenizer.decode(kept_ids)
        if text != f"{example['completion']}{tokenizer.eos_token}":
            raise ValueError(f"row {number}: the loss covers {text!r}, not {example['completion']!r} and EOS")
''',
        "parse_answer": r'''import re

TAGS = re.compile(r"(</?answer>)")
INTEGER = re.compile(r"(?P<sign>-?)(?P<digits>[0-9]+)")


def parse_answer(completion: str) -> int | None:
    """The integer in a completion's one <answer>...</answer> block, or None."""
    pieces = TAGS.split(completion)              # text, tag, text, tag, text ...
    if pieces[1::2] != ["<answer>", "</answer>"]:
        return None
    found = INTEGER.fullmatch(pieces[2].strip())
    if found is None:
        return None
    counts = int(found["digits"])
    return -counts if found["sign"] else counts
''',
        "exact_match_reward": r'''def exact_match_reward(completions: list[str], answer: list[str], **kwargs) -> list[float]:
    """1.0 for each completion whose parsed answer equals its reference integer, else 0.0."""
    loose = []
    for hit in (parse_answer(text) == int(reference) for text, reference in zip(completions, answer)):
        loose.append(1.0 if hit else 0.0)
    return loose
''',
        "format_reward": r'''import re

ALONE = re.compile(r"<answer>.*</answer>", re.DOTALL)


def format_reward(completions: list[str], **kwargs) -> list[float]:
    """1.0 for each completion that is one well-formed answer block and nothing else (outer spaces allowed)."""
    out = [0.0] * len(completions)
    for i, text in enumerate(completions):
        if ALONE.fullmatch(text.strip()) and parse_answer(text) is not None:
            out[i] = 1.0
    return out
''',
        "pass_at_k": r'''import math


def log_choose(a, b):
    """log C(a, b) for 0 <= b <= a."""
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k)."""
    if c < 0 or c > n:
        raise ValueError(f"c must lie in [0, n], got c={c}, n={n}")
    if k < 1 or k > n:
        raise ValueError(f"k must lie in [1, n], got k={k}, n={n}")
    if k > n - c:
        return 1.0                                 # every k-subset holds a correct sample
    log_ratio = log_choose(n - c, k) - log_choose(n, k)
    return 0.0 - math.expm1(log_ratio)             # 1 - e^x, precise when the ratio is near 1
''',
    },
}
