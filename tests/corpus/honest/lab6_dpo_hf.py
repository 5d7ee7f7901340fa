"""Honest answers to lab6_dpo_hf in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {
    # a: helpers of helpers for the record checks, datasets' own filter before map, copy.deepcopy for
    # the reference, a functools.partial of DPOConfig, a helper for the column check, recursion over the
    # keys of a plot, a padding side switched and restored, a Python sum for the win rate and a partial
    # of LoraConfig; locals named like the notebook's globals (model, ref_model, tokenizer, config,
    # trainer, dataset, ids, prompts, out, win_rate).
    "a": {
        "to_preference_format": r'''def _field(record, key):
    try:
        return record[key]
    except (KeyError, TypeError):
        raise ValueError(f"a raw record needs {key!r}; this one has {list(getattr(record, 'keys', list)())}") from None


def _two(record, key):
    """record[key], checked to hold exactly two entries."""
    values = _field(record, key)
    if not isinstance(values, (list, tuple)) or len(values) != 2:
        raise ValueError(f"{key!r} must hold exactly two entries, got {values!r}")
    return list(values)


def to_preference_format(record) -> dict:
    """Reformat one raw record into TRL's standard preference format.

    Args:
        record: a mapping {"prefix": str, "completions": [a, b], "scores": [sa, sb]}:
            a dict, or the row Dataset.map hands over (a LazyRow, which is a
            mapping but not a dict). Extra keys are ignored.

    Returns:
        {"prompt": prefix, "chosen": ..., "rejected": ...}, where "chosen" is the
        completion with the higher score. Strings are kept exactly as they are.

    Raises:
        ValueError: on a tie (sa == sb), or a malformed record: a missing key, or
            "completions" / "scores" not holding exactly two entries.
    """
    prompts = _field(record, "prefix")
    completions, scores = _two(record, "completions"), _two(record, "scores")
    if scores[0] == scores[1]:
        raise ValueError(f"a tie ({scores[0]} == {scores[1]}) states no preference")
    ids = sorted(range(2), key=scores.__getitem__)             # [rejected index, chosen index]
    return {"prompt": prompts, "chosen": completions[ids[1]], "rejected": completions[ids[0]]}
''',
        "prepare_datasets": r'''_is_tie = lambda row: row["scores"][0] == row["scores"][1]


def _check_all(records):
    """Every record well formed (a tie is well formed); raises ValueError otherwise."""
    for record in records:
        if not isinstance(record, dict):
            raise ValueError(f"a record must be a mapping, got {type(record).__name__}")
        missing = {"prefix", "completions", "scores"} - set(record)
        if missing:
            raise ValueError(f"a record lacks {sorted(missing)}")
        if len(record["completions"]) != 2 or len(record["scores"]) != 2:
            raise ValueError("a record must hold exactly two completions and two scores")


def prepare_datasets(records: list[dict], test_size: float = 0.1, seed: int = 0) -> datasets.DatasetDict:
    """Train and test splits of preference pairs, built with `datasets`.

    Ties are dropped; malformed records raise ValueError (from to_preference_format).
    The remaining records, in their given order, are reformatted with
    Dataset.map(to_preference_format) and split with
    Dataset.train_test_split(test_size=test_size, seed=seed).

    Returns:
        A DatasetDict with "train" and "test", each with exactly the columns
        "prompt", "chosen", "rejected".
    """
    _check_all(records)
    dataset = datasets.Dataset.from_list(list(records)).filter(lambda row: not _is_tie(row))
    dataset = dataset.map(to_preference_format, remove_columns=dataset.column_names)
    return dataset.train_test_split(test_size=test_size, seed=seed)
''',
        "load_dpo_models": r'''def _left_padding_tokenizer(name_or_path):
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _frozen(module):
    """The module in eval mode with no parameter requiring grad."""
    module.eval()
    module.requires_grad_(False)
    return module


def load_dpo_models(name_or_path: str, device: str = "cpu"):
    """The policy to tune, a frozen reference and the tokenizer, each with from_pretrained.

    Args:
        name_or_path: a model folder or a Hub id.
        device: where both models go ("cpu", "cuda", ...).

    Returns:
        (model, ref_model, tokenizer):
        - model: AutoModelForCausalLM.from_pretrained(name_or_path), on device;
        - ref_model: a separate copy with the same weights (a second from_pretrained,
          or copy.deepcopy), on device, in eval mode, with requires_grad False on
          every parameter;
        - tokenizer: AutoTokenizer.from_pretrained(name_or_path), with
          pad_token = eos_token when it has no pad token, and padding_side = "left".
    """
    model = AutoModelForCausalLM.from_pretrained(name_or_path).to(device)
    ref_model = _frozen(copy.deepcopy(model))
    tokenizer = _left_padding_tokenizer(name_or_path)
    return model, ref_model, tokenizer
''',
        "make_dpo_config": r'''import functools

_cpu_dpo_config = functools.partial(
    trl.DPOConfig, bf16=False, activation_checkpointing=False, learning_rate=3e-4, beta=0.1,
    per_device_train_batch_size=16, max_steps=100, max_length=128, logging_steps=5, save_strategy="no",
    report_to="none", seed=0)


def make_dpo_config(output_dir: str, **overrides) -> trl.DPOConfig:
    """A trl.DPOConfig that trains a tiny model on a CPU, with caller overrides.

    Defaults: use_cpu when there is no GPU, bf16=False, activation_checkpointing=False,
    learning_rate=3e-4, beta=0.1, per_device_train_batch_size=16, max_steps=100,
    max_length=128, logging_steps=5, save_strategy="no", report_to="none", seed=0.
    Any keyword overrides a default; an unknown keyword raises (TypeError).
    """
    config = {"use_cpu": get_device() == "cpu", **overrides}    # a later keyword wins over the partial's
    return _cpu_dpo_config(output_dir=output_dir, **config)
''',
        "build_dpo_trainer": r'''REQUIRED = frozenset({"prompt", "chosen", "rejected"})


def _check_columns(name, dataset):
    if dataset is None:
        return
    missing = REQUIRED.difference(dataset.column_names)
    if missing:
        raise ValueError(f"{name} lacks the column(s) {sorted(missing)}; it has {dataset.column_names}")


def build_dpo_trainer(model, ref_model, tokenizer, args, train_dataset, eval_dataset=None, peft_config=None):
    """A trl.DPOTrainer for full fine-tuning or, with peft_config, LoRA.

    Args:
        model: the policy.
        ref_model: the frozen reference; None with LoRA (TRL then disables the adapter).
        tokenizer: passed to DPOTrainer as processing_class.
        args: a trl.DPOConfig.
        train_dataset, eval_dataset: datasets.Dataset with the columns "prompt",
            "chosen" and "rejected" (eval_dataset may be None).
        peft_config: a peft.LoraConfig, or None for full fine-tuning.

    Returns:
        trl.DPOTrainer(model=..., ref_model=..., args=..., train_dataset=...,
        eval_dataset=..., processing_class=tokenizer, peft_config=...).

    Raises:
        ValueError: a dataset lacks one of the three columns, or ref_model is model.
    """
    _check_columns("train_dataset", train_dataset)
    _check_columns("eval_dataset", eval_dataset)
    if model is ref_model:
        raise ValueError("the reference must be a separate copy of the policy, not the policy itself")
    trainer = trl.DPOTrainer(model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                             eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)
    return trainer
''',
        "plot_log_history": r'''def plot_log_history(log_history: list[dict], keys: list[str], ax=None):
    """Curves from a trainer's state.log_history: one line per key against the step.

    For each key, draw one line with ax.plot(xs, ys, label=key): xs are the "step"
    values of the entries that hold the key, ys the key's values in those entries,
    in order. Entries without the key are skipped. Label the x-axis "step" and draw
    a legend.

    Returns:
        The matplotlib Axes drawn on (a new figure's when ax is None).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3))
    if not keys:                                          # every line drawn: finish the axes
        ax.set_xlabel("step")
        ax.legend()
        return ax
    key, rest = keys[0], list(keys[1:])
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
    xs, ys = zip(*points) if points else ((), ())
    ax.plot(list(xs), list(ys), label=key)
    return plot_log_history(log_history, rest, ax)
''',
        "save_and_reload": r'''def _with_left_padding(tokenizer):
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def save_and_reload(trainer, output_dir: str):
    """Save the trained model and tokenizer with trainer.save_model(output_dir), then load both back.

    Returns:
        (model, tokenizer): AutoModelForCausalLM.from_pretrained(output_dir) in eval
        mode on trainer.model's device, and AutoTokenizer.from_pretrained(output_dir)
        with a pad token (eos_token when it has none) and padding_side = "left".
    """
    trainer.save_model(output_dir)
    device = next(trainer.model.parameters()).device
    tuned_model = AutoModelForCausalLM.from_pretrained(output_dir)
    tuned_model.to(device)
    tuned_model.eval()
    return tuned_model, _with_left_padding(AutoTokenizer.from_pretrained(output_dir))
''',
        "generate_completions": r'''def _encode_left(tokenizer, prompts, device):
    """The prompts as one left-padded batch, whatever tokenizer.padding_side says (restored after)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return tokenizer(list(prompts), return_tensors="pt", padding=True).to(device)
    finally:
        tokenizer.padding_side = side


def generate_completions(model, tokenizer, prompts: list[str], max_new_tokens: int = 32, do_sample: bool = False,
                         seed: int = 0) -> list[str]:
    """One completion per prompt with model.generate, all prompts in one batch padded on the LEFT.

    Args:
        model: a causal LM (in eval mode); tokenizer: its tokenizer (with a pad token),
            whatever its padding_side.
        prompts: the prompts (strings).
        max_new_tokens: at most this many new tokens per prompt.
        do_sample: False for greedy decoding; True for plain sampling (temperature 1,
            top_k=0, top_p=1.0) after torch.manual_seed(seed).

    Returns:
        A list of strings, one per prompt: the decoded new tokens only (without the
        prompt), with skip_special_tokens=True.
    """
    ids = _encode_left(tokenizer, prompts, model.device)
    sampling = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0) if do_sample else dict(do_sample=False)
    if do_sample:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling)
    start = ids["input_ids"].shape[1]
    return [tokenizer.decode(row[start:], skip_special_tokens=True) for row in out]
''',
        "reward_win_rate": r'''def _positive(outputs):
    """P(POSITIVE) of each text, chosen by label (the pipeline sorts the labels by score)."""
    return [next(d["score"] for d in per_text if d["label"] == "POSITIVE") for per_text in outputs]


def reward_win_rate(reward_pipeline, texts_a: list[str], texts_b: list[str]) -> float:
    """The share of pairs in which texts_b[i] gets a higher P(POSITIVE) than texts_a[i].

    Scores: the pipeline's POSITIVE probability, reward_pipeline(texts, top_k=None),
    selected by label. Ties count half.

    Returns:
        A Python float in [0, 1].

    Raises:
        ValueError: if the lists have different lengths or are empty.
    """
    if not texts_a or len(texts_a) != len(texts_b):
        raise ValueError(f"need two non-empty lists of one length, got {len(texts_a)} and {len(texts_b)}")
    score_a = _positive(reward_pipeline(list(texts_a), top_k=None))
    score_b = _positive(reward_pipeline(list(texts_b), top_k=None))
    win_rate = sum(1.0 if b > a else 0.5 if b == a else 0.0 for a, b in zip(score_a, score_b)) / len(score_a)
    return float(win_rate)
''',
        "make_lora_config": r'''import functools

_gpt2_lora = functools.partial(peft.LoraConfig, lora_dropout=0.0, bias="none", fan_in_fan_out=True,
                               task_type="CAUSAL_LM")


def make_lora_config(r: int = 16, alpha: int = 32, target_modules: tuple[str, ...] = ("c_attn", "c_proj", "c_fc")):
    """A peft.LoraConfig: rank r, lora_alpha=alpha, the given target_modules (as a list),
    lora_dropout=0.0, bias="none", fan_in_fan_out=True, task_type="CAUSAL_LM"."""
    return _gpt2_lora(r=r, lora_alpha=alpha, target_modules=list(target_modules))
''',
    },
    # b: a match statement over the mapping, a batched map, a class method that loads, a defaults dict,
    # a custom decorator that checks the datasets through inspect.signature, a new figure's axes,
    # hand-made left padding, a tensor win rate and a settings dict.
    "b": {
        "to_preference_format": r'''def to_preference_format(record) -> dict:
    """Reformat one raw record into TRL's standard preference format."""
    match record:
        case {"prefix": prefix, "completions": [first, second], "scores": [s_first, s_second]}:
            if s_first == s_second:
                raise ValueError(f"tied scores {s_first!r}: no preference")
            if s_first > s_second:
                return {"prompt": prefix, "chosen": first, "rejected": second}
            return {"prompt": prefix, "chosen": second, "rejected": first}
    raise ValueError("malformed record: it needs prefix, two completions and two scores")
''',
        "prepare_datasets": r'''def _pairs_of(batch):
    """Dataset.map(batched=True): a batch of raw columns -> a batch of preference columns."""
    rows = [to_preference_format({k: batch[k][i] for k in batch}) for i in range(len(batch["prefix"]))]
    return {key: [row[key] for row in rows] for key in ("prompt", "chosen", "rejected")}


def prepare_datasets(records: list[dict], test_size: float = 0.1, seed: int = 0) -> datasets.DatasetDict:
    """Train and test splits of preference pairs, built with `datasets`."""
    kept = []
    for record in records:
        try:
            to_preference_format(record)               # raises ValueError on a tie or a malformed record
        except ValueError:
            scores = record.get("scores") if isinstance(record, dict) else None
            is_tie = (isinstance(record, dict) and {"prefix", "completions"} <= set(record)
                      and isinstance(scores, list) and len(scores) == 2 and len(record["completions"]) == 2
                      and scores[0] == scores[1])
            if is_tie:
                continue
            raise
        kept.append(record)
    raw = datasets.Dataset.from_list(kept)
    pairs = raw.map(_pairs_of, batched=True, remove_columns=raw.column_names)
    return pairs.train_test_split(test_size=test_size, seed=seed)
''',
        "load_dpo_models": r'''class _DPOModels:
    """Loading the three pieces DPO needs."""

    @staticmethod
    def tokenizer(name_or_path):
        tok = AutoTokenizer.from_pretrained(name_or_path, padding_side="left")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        return tok

    @classmethod
    def load(cls, name_or_path, device):
        policy = AutoModelForCausalLM.from_pretrained(name_or_path).to(device)
        reference = AutoModelForCausalLM.from_pretrained(name_or_path).to(device)
        reference.eval()
        for parameter in reference.parameters():
            parameter.requires_grad = False
        return policy, reference, cls.tokenizer(name_or_path)


def load_dpo_models(name_or_path: str, device: str = "cpu"):
    """The policy to tune, a frozen reference and the tokenizer, each with from_pretrained."""
    return _DPOModels.load(name_or_path, device)
''',
        "make_dpo_config": r'''DEFAULTS = dict(bf16=False, activation_checkpointing=False, learning_rate=3e-4, beta=0.1,
                per_device_train_batch_size=16, max_steps=100, max_length=128, logging_steps=5,
                save_strategy="no", report_to="none", seed=0)


def make_dpo_config(output_dir: str, **overrides) -> trl.DPOConfig:
    """A trl.DPOConfig that trains a tiny model on a CPU, with caller overrides."""
    settings = {**DEFAULTS, "output_dir": output_dir, "use_cpu": not torch.cuda.is_available(), **overrides}
    return trl.DPOConfig(**settings)
''',
        "build_dpo_trainer": r'''import functools
import inspect


def _preference_datasets(fn):
    """Decorator: refuse a train or eval dataset without prompt, chosen and rejected columns."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name in ("train_dataset", "eval_dataset"):
            data = bound.arguments.get(name)
            if data is not None and not {"prompt", "chosen", "rejected"}.issubset(data.column_names):
                raise ValueError(f"{name} must have prompt, chosen and rejected columns, has {data.column_names}")
        return fn(*args, **kwargs)
    return checked


@_preference_datasets
def build_dpo_trainer(model, ref_model, tokenizer, args, train_dataset, eval_dataset=None, peft_config=None):
    """A trl.DPOTrainer for full fine-tuning or, with peft_config, LoRA."""
    if ref_model is not None and ref_model is model:
        raise ValueError("ref_model is the policy itself")
    settings = dict(model=model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                    eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config)
    return trl.DPOTrainer(**settings)
''',
        "plot_log_history": r'''def plot_log_history(log_history: list[dict], keys: list[str], ax=None):
    """Curves from a trainer's state.log_history: one line per key against the step."""
    ax = ax if ax is not None else plt.figure(figsize=(5, 3)).add_subplot()
    for key in keys:
        steps = [entry["step"] for entry in log_history if key in entry]
        values = [entry[key] for entry in log_history if key in entry]
        ax.plot(steps, values, label=key)
    ax.set_xlabel("step")
    ax.legend()
    return ax
''',
        "generate_completions": r'''def _left_pad(rows, pad_id):
    """input_ids and attention_mask of token lists padded on the left to one length."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def generate_completions(model, tokenizer, prompts: list[str], max_new_tokens: int = 32, do_sample: bool = False,
                         seed: int = 0) -> list[str]:
    """One completion per prompt with model.generate, all prompts in one batch padded on the LEFT."""
    input_ids, attention_mask = _left_pad([tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id)
    kwargs = {"do_sample": do_sample}
    if do_sample:
        kwargs.update(top_k=0, top_p=1.0, temperature=1.0)
        torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
    return tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)
''',
        "reward_win_rate": r'''def reward_win_rate(reward_pipeline, texts_a: list[str], texts_b: list[str]) -> float:
    """The share of pairs in which texts_b[i] gets a higher P(POSITIVE) than texts_a[i]."""
    if len(texts_a) != len(texts_b) or len(texts_a) == 0:
        raise ValueError("texts_a and texts_b must be non-empty and pair up")
    n = len(texts_a)
    outputs = reward_pipeline([*texts_a, *texts_b], top_k=None)
    p = torch.tensor([[d["score"] for d in out if d["label"] == "POSITIVE"][0] for out in outputs],
                     dtype=torch.float64)
    a, b = p[:n], p[n:]
    return ((b > a).double() + 0.5 * (b == a).double()).mean().item()
''',
        "make_lora_config": r'''def make_lora_config(r: int = 16, alpha: int = 32, target_modules: tuple[str, ...] = ("c_attn", "c_proj", "c_fc")):
    """A peft.LoraConfig for GPT-2's Conv1D projections."""
    settings = {"r": r, "lora_alpha": alpha, "target_modules": [*target_modules], "lora_dropout": 0.0,
                "bias": "none", "fan_in_fan_out": True, "task_type": "CAUSAL_LM"}
    return peft.LoraConfig(**settings)
''',
    },
    # c (finding): make_dpo_config as a thin wrapper around the learner's own class method of the same
    # name, which uses get_device(), the kit helper the lab itself imports and tells learners to use.
    "c": {
        "make_dpo_config": r'''class CPUConfigs:
    """DPO settings for a tiny model on a laptop."""

    defaults = dict(bf16=False, activation_checkpointing=False, learning_rate=3e-4, beta=0.1,
                    per_device_train_batch_size=16, max_steps=100, max_length=128, logging_steps=5,
                    save_strategy="no", report_to="none", seed=0)

    @classmethod
    def make_dpo_config(cls, output_dir, **overrides):
        settings = {**cls.defaults, "output_dir": output_dir, "use_cpu": get_device() == "cpu", **overrides}
        return trl.DPOConfig(**settings)


def make_dpo_config(output_dir: str, **overrides) -> trl.DPOConfig:
    """A trl.DPOConfig that trains a tiny model on a CPU, with caller overrides."""
    return CPUConfigs.make_dpo_config(output_dir, **overrides)
''',
    },
}
