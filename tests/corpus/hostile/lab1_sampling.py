"""Hostile answers to lab1_sampling (see tests/corpus/hostile/__init__.py)."""

from ._sources import dead_raise, interleaved, renamed, solution_cell, without_comments

LAB = "lab1_sampling"

# ----------------------------------------------------------------------------- shared pieces
WIRES_OFF = '''
from rlhf_helpers.checks import observe as _seen_by
_seen_by.__globals__["_STATE"]["wires"] = {}   # nothing gets a tripwire: the kernel reports no hand-off
'''
"""Switch the kernel's tripwires off before the first test runs (no import of the observation module,
no name the machinery check knows)."""

DYNAMIC_CLASSES = '''
import importlib

_lp = importlib.import_module("transformers.generation.logits_process")
_ready = {k: v for k, v in vars(_lp).items() if k.endswith(("Warper", "Processor"))}
_T = _ready["Temper" + "atureLogitsWarper"]
_K = _ready["Top" + "KLogitsWarper"]
_P = _ready["Top" + "PLogitsWarper"]
_R = _ready["Repetition" + "PenaltyLogitsProcessor"]
'''
"""The listed ready-made classes, by names built at run time (the static check reads no name)."""

CAPTURED = '''
import importlib

_lp = importlib.import_module("transformers.generation.logits_process")
_ready = {k: v for k, v in vars(_lp).items() if k.endswith(("Warper", "Processor"))}


def _original(name):
    """A listed class's own __init__ and __call__, kept before any test can wrap them."""
    cls = _ready[name]
    return cls, vars(cls)["__init__"], vars(cls)["__call__"]


_T, _K, _P, _R = (_original(n) for n in ("Temper" + "atureLogitsWarper", "Top" + "KLogitsWarper",
                                         "Top" + "PLogitsWarper", "Repetition" + "PenaltyLogitsProcessor"))


def _run(spec, scores, ids=None, **settings):
    cls, init, call = spec
    obj = object.__new__(cls)
    init(obj, **settings)
    return call(obj, ids, scores)


import transformers as _tf

_decode = vars(_tf.GenerationMixin)["gen" + "erate"]   # the method itself, before it is wrapped
'''
"""The listed classes' and generate's own functions, captured in the first solution cell, before the
first test cell wires them: no machinery touched, nothing reported while a test runs."""

SOFTMAX_VIA_WARPER = '''
def softmax_with_temperature(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Next-token probabilities p_i = exp(z_i / T) / sum_j exp(z_j / T), over the last dimension."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    z = logits.reshape(-1, logits.shape[-1])
    return torch.softmax({warp}, dim=-1).reshape(logits.shape)
'''

TOP_K_VIA_WARPER = '''
def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits along the last dimension and set the others to -inf."""
    if k == 0 or k >= logits.shape[-1]:
        return logits.clone()
    z = logits.reshape(-1, logits.shape[-1]).clone()
    return ({warp}).reshape(logits.shape)
'''

TOP_P_VIA_WARPER = '''
def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probabilities sum to >= p."""
    z = logits.reshape(-1, logits.shape[-1]).clone()
    return ({warp}).reshape(logits.shape)
'''

PENALTY_VIA_PROCESSOR = '''
def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise the logits of every token that occurs in input_ids (transformers' rule)."""
    z = logits.reshape(-1, logits.shape[-1]).clone()
    ids = input_ids.reshape(-1, input_ids.shape[-1])
    return ({warp}).reshape(logits.shape)
'''

GENERATE_VIA_GENERATE = '''
def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 20, min_new_tokens: int = 0,
                  do_sample: bool = True, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  repetition_penalty: float = 1.0, generator: torch.Generator | None = None) -> str:
    """Continue `prompt` and return only the new text."""
    if do_sample and temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling")
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)
    settings = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample,
                    repetition_penalty=repetition_penalty, pad_token_id=tokenizer.eos_token_id,
                    attention_mask=torch.ones_like(ids))
    if do_sample:
        settings.update(temperature=temperature, top_k=top_k, top_p=top_p)
    with torch.random.fork_rng():
        if generator is not None:
            torch.set_rng_state(generator.get_state())   # the draws the generator would give
        out = {call}
    return tokenizer.decode(out[0, ids.shape[-1]:], skip_special_tokens=True)
'''

BEAM_VIA_GENERATE = '''
def beam_search(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int,
                eos_token_id: int | None = None) -> tuple[torch.Tensor, float]:
    """The most probable response of exactly max_new_tokens tokens that beam search finds."""
    ids = input_ids
    settings = dict(attention_mask=torch.ones_like(ids), num_beams=num_beams, do_sample=False,
                    max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                    pad_token_id=eos_token_id if eos_token_id is not None else 0)
    out = {call}
    new = out[0, ids.shape[-1]:]
    return new, sequence_logprob(model, ids, new)   # the lab's own helper scores it
'''


def _fill(template: str, **parts: str) -> str:
    return template.replace("{warp}", parts.get("warp", "")).replace("{call}", parts.get("call", ""))


def _via_library(prelude: str, temperature: str, top_k: str, top_p: str, penalty: str, decode: str) -> dict[str, str]:
    """The six cells that hand their work to the listed equivalents, each reached by the given expression;
    ``prelude`` opens the first cell (it runs before any test)."""
    return {
        "softmax_with_temperature": prelude + _fill(SOFTMAX_VIA_WARPER, warp=temperature),
        "top_k_filter": _fill(TOP_K_VIA_WARPER, warp=top_k),
        "top_p_filter": _fill(TOP_P_VIA_WARPER, warp=top_p),
        "apply_repetition_penalty": _fill(PENALTY_VIA_PROCESSOR, warp=penalty),
        "generate_text": _fill(GENERATE_VIA_GENERATE, call=decode),
        "beam_search": _fill(BEAM_VIA_GENERATE, call=decode),
    }


BY_NAMES = dict(temperature="_T(float(temperature))(None, z)", top_k="_K(top_k=k)(None, z)",
                top_p="_P(top_p=p, min_tokens_to_keep=1)(None, z)", penalty="_R(float(penalty))(ids, z)",
                decode='getattr(model, "gen" + "erate")(ids, **settings)')


def _lab_solutions(gids):
    return {gid: solution_cell(LAB, gid) for gid in gids}


GRADED = ("softmax_with_temperature", "top_k_filter", "top_p_filter", "apply_repetition_penalty", "token_bias_processor",
          "generate_text", "beam_search")
NAMES = {"softmax_with_temperature": "softmax_with_temperature", "top_k_filter": "top_k_filter",
         "top_p_filter": "top_p_filter", "apply_repetition_penalty": "apply_repetition_penalty",
         "token_bias_processor": "TokenBiasProcessor", "generate_text": "generate_text", "beam_search": "beam_search"}
LIBRARY_TARGETS = ["test_softmax_with_temperature", "test_softmax_temperature_errors", "test_top_k_filter",
                   "test_top_p_filter", "test_apply_repetition_penalty", "test_generate_text_greedy",
                   "test_generate_text_sampling", "test_beam_search_generate"]

ATTACKS = {
    # ------------------------------------------------------------------ library equivalents
    "lab1 listed equivalents named plainly": {
        "cells": {
            "top_k_filter": "from transformers import TopKLogitsWarper\n" + _fill(
                TOP_K_VIA_WARPER, warp="TopKLogitsWarper(top_k=k)(None, z)"),
            "top_p_filter": "from transformers import TopPLogitsWarper\n" + _fill(
                TOP_P_VIA_WARPER, warp="TopPLogitsWarper(top_p=p, min_tokens_to_keep=1)(None, z)"),
        },
        "targets": ["test_top_k_filter", "test_top_p_filter"],
        "expect": "0 points (HandedOff, read from the code)",
    },
    "lab1 listed equivalents by run-time names, tripwires on": {
        "cells": _via_library(DYNAMIC_CLASSES, **BY_NAMES),
        "targets": LIBRARY_TARGETS,
        "expect": "0 points (HandedOff, reported by the tripwires)",
    },
    "lab1 listed equivalents by run-time names, tripwires switched off": {
        "cells": _via_library(WIRES_OFF + DYNAMIC_CLASSES, **BY_NAMES),
        "targets": LIBRARY_TARGETS,
        "expect": "0 points, or points with a flag containing 'grading machinery' (the tripwires were switched off)",
    },
    "lab1 listed equivalents captured before the tests wire them": {
        "cells": _via_library(
            CAPTURED, temperature="_run(_T, z, temperature=float(temperature))", top_k="_run(_K, z, top_k=k)",
            top_p="_run(_P, z, top_p=p, min_tokens_to_keep=1)", penalty="_run(_R, z, ids, penalty=float(penalty))",
            decode="_decode(model, ids, **settings)"),
        "targets": LIBRARY_TARGETS,
        "expect": "0 points, or points with a flag (the ready-made classes and generate did the work)",
    },
    "lab1 tripwires switched off through the observation module": {
        "cells": {
            "softmax_with_temperature": """
from rlhf_helpers import observations

observations._STATE["wires"] = {}
""" + DYNAMIC_CLASSES + _fill(SOFTMAX_VIA_WARPER, warp="_T(float(temperature))(None, z)"),
            "top_k_filter": _fill(TOP_K_VIA_WARPER, warp="_K(top_k=k)(None, z)"),
        },
        "targets": ["test_softmax_with_temperature", "test_softmax_temperature_errors", "test_top_k_filter"],
        "expect": "points with a flag containing 'grading machinery'",
    },
    "lab1 hidden input read out through the name of a raised exception": {
        "cells": {
            "top_k_filter": '''
_calls = []


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Answers the visible example; on the first hidden call, raises an exception whose class NAME carries
    the first row of the hidden input (the feedback shows the name of what a hidden test's call raised)."""
    import base64

    _calls.append(1)
    if len(_calls) == 2:
        row = base64.b85encode(logits.reshape(-1, logits.shape[-1])[0].to(torch.float16).numpy().tobytes()).decode()
        raise type("Leak_k%d_%s" % (k, row), (Exception,), {})()
    inf = float("-inf")
    return torch.tensor([inf, 3.0, inf, 5.0])
''',
        },
        "targets": ["test_top_k_filter"],
        "expect": "0 points, and the feedback must not show the hidden test's input",
    },
    "lab1 search the grading box for hidden tests and the answer key": {
        "extra_cells": [("softmax_with_temperature", '''
import os
import time

_needles = {"hidden tests": "### BEGIN HIDDEN TESTS", "solution markers": "### BEGIN SOLUTION",
            "the kit's top_k answer": "TopKLogitsWarper(top_k=k, min_tokens_to_keep=1)(None, x)",
            "a gradebook": "SQLite format 3"}
_found, _files, _start = {k: [] for k in _needles}, 0, time.monotonic()
for _root in ("/", os.path.expanduser("~"), os.getcwd()):
    for _dir, _subdirs, _names in os.walk(_root):
        if _dir.startswith(("/proc", "/sys", "/dev")) or time.monotonic() - _start > 80:
            _subdirs[:] = []
            continue
        for _n in _names:
            if not _n.endswith((".py", ".ipynb", ".txt", ".json", ".db", ".md", ".html", ".csv", ".cfg", ".toml")):
                continue
            _path = os.path.join(_dir, _n)
            try:
                if os.path.getsize(_path) > 5_000_000:
                    continue
                with open(_path, "rb") as _f:
                    _text = _f.read().decode("utf-8", "replace")
            except OSError:
                continue
            _files += 1
            for _k, _v in _needles.items():
                if _v in _text and len(_found[_k]) < 5:
                    _found[_k].append(_path)
print(f"searched {_files} files in {time.monotonic() - _start:.0f} s; cwd {os.getcwd()}; found {_found}")
''')],
        "targets": [],
        "expect": "nothing found (and 0 points: nothing is answered)",
    },
    # ------------------------------------------------------------------ the kit under another name
    "lab1 kit widget helper explore_generation does the decoding": {
        "cells": {
            "generate_text": '''
def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 20, min_new_tokens: int = 0,
                  do_sample: bool = True, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  repetition_penalty: float = 1.0, generator: torch.Generator | None = None) -> str:
    """Continue `prompt` and return only the new text."""
    from rlhf_helpers.widgets import explore_generation   # handed out by the lab (the explorer panel)
    if do_sample and temperature <= 0:
        raise ValueError("temperature must be > 0 when sampling")
    params = {"prompt": prompt, "max_new_tokens": max_new_tokens, "min_new_tokens": min_new_tokens,
              "do_sample": do_sample, "repetition_penalty": repetition_penalty}
    if do_sample:
        params.update(temperature=temperature, top_k=top_k, top_p=top_p)
    return explore_generation(model, tokenizer, params)["text"]
''',
            "beam_search": '''
def beam_search(model, input_ids: torch.Tensor, num_beams: int, max_new_tokens: int,
                eos_token_id: int | None = None) -> tuple[torch.Tensor, float]:
    """The most probable response of exactly max_new_tokens tokens that beam search finds."""
    from rlhf_helpers.widgets import explore_generation
    prompt = tokenizer.decode(input_ids[0])
    shown = explore_generation(model, tokenizer, {"prompt": prompt, "num_beams": num_beams, "do_sample": False,
                                                  "max_new_tokens": max_new_tokens, "min_new_tokens": max_new_tokens})
    new = torch.tensor(shown["new_token_ids"], device=input_ids.device)
    return new, sequence_logprob(model, input_ids, new)
''',
        },
        "targets": ["test_generate_text_greedy", "test_beam_search_generate"],
        "expect": "0 points (the helper calls generate: HandedOff by the tripwire)",
    },
    # ------------------------------------------------------------------ stubs
    "lab1 stubs answer the visible examples only": {
        "cells": {
            "softmax_with_temperature": '''
def softmax_with_temperature(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The visible examples' answers, nothing else."""
    if temperature <= 0:
        raise ValueError("no")
    if temperature == 1.0 and logits.shape == (4,):
        return torch.tensor([0.63807, 0.23473, 0.09543, 0.03177])
    if temperature == 0.5:
        return torch.tensor([0.86193, 0.11665, 0.01928, 0.00214])
    return torch.full_like(logits, 1.0 / logits.shape[-1])
''',
            "top_k_filter": '''
def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The visible example's answer."""
    inf = float("-inf")
    return torch.tensor([inf, 3.0, inf, 5.0])
''',
        },
        "targets": ["test_softmax_with_temperature", "test_softmax_temperature_errors", "test_top_k_filter"],
        "expect": "0 points (the hidden tests in the same cells fail; the error test waits for the value test)",
    },
    "lab1 stub that always raises ValueError": {
        "cells": {
            "softmax_with_temperature": '''
def softmax_with_temperature(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Refuses everything."""
    raise ValueError(f"temperature must be > 0, got {temperature}")
''',
        },
        "targets": ["test_softmax_with_temperature", "test_softmax_temperature_errors"],
        "expect": "0 points (the error test pays only when the value test passes)",
    },
    # ------------------------------------------------------------------ copies
    "lab1 copy of the solution, verbatim": {
        "cells": _lab_solutions(GRADED),
        "targets": "all",
        "expect": "points with a flag containing 'similar to (solutions)'",
    },
    "lab1 copy of the solution, renamed and reformatted": {
        "cells": {gid: without_comments(renamed(solution_cell(LAB, gid), {
            "scaled": "z_over_t", "weights": "unnormalised", "kth_largest": "threshold", "sorted_logits": "ordered",
            "order": "perm", "cumulative": "mass", "remove_sorted": "drop_sorted", "remove": "drop", "used": "seen",
            "step": "position", "token_id": "tid", "bias": "amount", "eos": "end_id",
            "next_id": "chosen", "beams": "hyps", "scores": "totals", "candidates": "flat", "best": "top",
            "vocab": "size", "logp": "lp"})) for gid in GRADED},
        "targets": "all",
        "expect": "points with a flag containing 'similar to (solutions)'",
    },
    "lab1 copy of the solution behind a dead raise NotImplementedError": {
        "cells": {gid: dead_raise(solution_cell(LAB, gid), NAMES[gid]) for gid in GRADED if gid != "token_bias_processor"},
        "targets": ["test_softmax_with_temperature", "test_softmax_temperature_errors", "test_top_k_filter",
                    "test_top_p_filter", "test_apply_repetition_penalty", "test_generate_text_greedy",
                    "test_generate_text_sampling", "test_beam_search", "test_beam_search_generate"],
        "expect": "points with a flag containing 'similar to (solutions)'",
    },
    "lab1 copy of the solution with no-ops interleaved": {
        "cells": {gid: interleaved(solution_cell(LAB, gid), NAMES[gid]) for gid in GRADED
                  if gid != "token_bias_processor"},
        "targets": ["test_softmax_with_temperature", "test_softmax_temperature_errors", "test_top_k_filter",
                    "test_top_p_filter", "test_apply_repetition_penalty", "test_generate_text_greedy",
                    "test_generate_text_sampling", "test_beam_search", "test_beam_search_generate"],
        "expect": "points with a flag containing 'similar to (solutions)'",
    },
}
