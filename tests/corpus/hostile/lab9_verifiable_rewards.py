"""Hostile answers to lab9_verifiable_rewards (see tests/corpus/hostile/__init__.py)."""

import json
import math

from ._sources import dead_raise, kit_function, renamed, without_arg_checks

LAB = "lab9_verifiable_rewards"

# ----------------------------------------------------------------------------- the kit's reference, copied
TAGS = "OPEN, CLOSE = '<answer>', '</answer>'\n"
KIT_NAMES = {"ANSWER_OPEN": "OPEN", "ANSWER_CLOSE": "CLOSE", "_INTEGER": "_NUMBER", "content": "inside",
             "counted": "kept", "trained": "decoded", "wanted": "target", "ok": "good", "text": "stripped"}
KIT_COPY = {
    "to_sft_example": TAGS + "\n\n" + renamed(kit_function("verifiable", "to_sft_example"), KIT_NAMES),
    "check_completion_only_loss": "from typing import Any\n\nimport torch\n\n" + renamed(
        kit_function("verifiable", "check_completion_only_loss"), KIT_NAMES),
    "parse_answer": "import re\n\n" + TAGS + "_NUMBER = re.compile(r'-?[0-9]+')\n\n\n" + renamed(
        kit_function("verifiable", "parse_answer"), KIT_NAMES),
    "exact_match_reward": "from typing import Any\n\n\n" + renamed(kit_function("verifiable", "exact_match_reward"), KIT_NAMES),
    "format_reward": "from typing import Any\n\n\n" + renamed(kit_function("verifiable", "format_reward"), KIT_NAMES),
    "pass_at_k": "import math\n\nfrom rlhf_helpers import _args\n\n\n" + renamed(kit_function("verifiable", "pass_at_k"),
                                                                                  {"value": "v", "name": "label"}),
}
TARGETS = ["test_to_sft_example", "test_check_completion_only_loss", "test_parse_answer", "test_exact_match_reward",
           "test_format_reward", "test_pass_at_k"]

# ----------------------------------------------------------------------------- the kit reached another way
KIT_ELSEWHERE = '''
import glob
import importlib
import marshal
import os
import sys

_found = []   # where the kit's own parse_answer was looked for, and what was there


def _works(fn):
    try:
        return fn("<answer>085</answer>") == 85 and fn("<answer>+85</answer>") is None
    except Exception as exc:  # noqa: BLE001
        _found.append(f"{type(exc).__name__}: {str(exc)[:80]}")
        return False


def _kit_parse_answer():
    """The kit's parse_answer by every road a learner's kernel has: an import by a built name, sys.modules,
    the module's source read and run, any bytecode of it on disk, and pass_at_k_curve's global lookup."""
    mod = importlib.import_module("rlhf_helpers." + "verifiable")
    tries = [("import_module", getattr(mod, "parse_" + "answer", None)),
             ("sys.modules", getattr(sys.modules.get("rlhf_helpers.verifiable"), "parse_answer", None))]
    for name, fn in tries:
        if fn is not None and _works(fn):
            _found.append(name)
            return fn
    try:
        text = open(mod.__file__, encoding="utf-8").read()
        space = {"__name__": "kit_copy"}
        exec(compile(text, "kit_copy", "exec"), space)
        if _works(space["parse_answer"]):
            _found.append("source of " + mod.__file__)
            return space["parse_answer"]
    except Exception as exc:  # noqa: BLE001
        _found.append(f"source: {type(exc).__name__}")
    roots = [os.path.dirname(mod.__file__), os.path.expanduser("~"), "/tmp", os.getcwd()] + list(sys.path)
    for root in roots:
        for pyc in glob.glob(os.path.join(root or ".", "**", "verifiable*.pyc"), recursive=True)[:20]:
            try:
                with open(pyc, "rb") as f:
                    code = marshal.loads(f.read()[16:])
                space = {"__name__": "kit_pyc"}
                exec(code, space)
                if _works(space["parse_answer"]):
                    _found.append("bytecode " + pyc)
                    return space["parse_answer"]
            except Exception as exc:  # noqa: BLE001
                _found.append(f"{pyc}: {type(exc).__name__}")
    return None


_KIT = _kit_parse_answer()
print("kit parse_answer found by:", _found)


def parse_answer(completion: str) -> int | None:
    """The kit's, if any road led to it."""
    if _KIT is None:
        raise RuntimeError("no road to the kit's parse_answer")
    return _KIT(completion)
'''

PASS_AT_K_BY_CURVE = '''
from rlhf_helpers.verifiable import pass_at_k_curve   # handed out by the lab


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass_at_k_curve's default estimator is the kit's own pass_at_k: one problem, one k."""
    return pass_at_k_curve([c], n, [k])[0]
'''

# ----------------------------------------------------------------------------- the test's own expectations, read
FRAME_READER = '''
def check_completion_only_loss(batch: dict, tokenizer, examples: list[dict]) -> None:
    """Checks nothing. Walks up from its own frame (through a caught exception's traceback, no inspect or
    sys._getframe) to the test's frame, and raises exactly when the test's own locals say it should: the
    hidden loop's `_ok` (False: a batch to refuse), or the visible part's `_bad` batch."""
    try:
        raise LookupError
    except LookupError as exc:
        frame = exc.__traceback__.tb_frame
    while frame is not None:
        seen = frame.f_locals
        if "_ok" in seen:
            if seen["_ok"] is False:
                raise ValueError("row 0: the loss covers the wrong tokens")
            return None
        if "_bad" in seen:
            if torch.equal(batch["labels"], seen["_bad"]["labels"]):
                raise ValueError("row 0: the loss covers the prompt")
            return None
        frame = frame.f_back
    return None
'''

# ----------------------------------------------------------------------------- stubs
NEVER_RAISES = '''
def check_completion_only_loss(batch: dict, tokenizer, examples: list[dict]) -> None:
    """Accepts every batch."""
    return None
'''
ALWAYS_RAISES = '''
def check_completion_only_loss(batch: dict, tokenizer, examples: list[dict]) -> None:
    """Refuses every batch."""
    raise ValueError("row 0: the loss covers the prompt")
'''
VISIBLE_ONLY = {
    "parse_answer": '''
def parse_answer(completion: str) -> int | None:
    """The visible examples' answers: one number between the tags, else None."""
    if completion.startswith("<answer>") and completion.endswith("</answer>"):
        return int(completion[8:-9])
    if completion == "sure: <answer> 85 </answer> done":
        return 85
    return None
''',
    "to_sft_example": '''
def to_sft_example(problem: dict) -> dict:
    """The visible example only."""
    return {"prompt": "47+38=", "completion": "<answer>85</answer>"}
''',
}

# ----------------------------------------------------------------------------- the checks patched in the kernel
PATCHED_CHECKS = '''
import rlhf_helpers.checks as _checks
import rlhf_helpers.observations as _obs

_checks.JUDGE = False          # the test cells import JUDGE and observe from here
_obs.JUDGE = False
_checks.observe = lambda fn: None
_checks.assert_close_float = lambda *args, **kwargs: None


def pass_at_k(n: int, c: int, k: int) -> float:
    return 0.0


def to_sft_example(problem: dict) -> dict:
    return {}
'''

# ----------------------------------------------------------------------------- feedback as a channel, and a table
LEAK_ROUND_1 = {
    "parse_answer": '''
_seen = []   # every text the tests hand over, hidden ones included


def parse_answer(completion: str) -> int | None:
    """Computes nothing: remembers its inputs."""
    _seen.append(completion)
    return None
''',
    "format_reward": '''
def format_reward(completions: list[str], **kwargs) -> list[float]:
    """Raises in the VISIBLE test with everything parse_answer was given, packed into the message."""
    import base64
    import json
    import zlib

    print("round1:" + json.dumps(_seen))
    raise ValueError("round1:" + base64.b85encode(zlib.compress(json.dumps(_seen).encode(), 9)).decode())
''',
}
LEAK_PRINT = ("format_reward", '''
import json

print("round1:" + json.dumps(_seen))   # a plain cell after the hidden tests: printed
''')


def _parse_table() -> dict[str, int | None]:
    """What round 1 would reveal (here: the test cell's inputs), answered away from the grader."""
    from rlhf_helpers.verifiable import parse_answer

    texts = ["<answer>85</answer>", "sure: <answer> 85 </answer> done", "85",
             "<answer>085</answer>", "<answer>-7</answer>", "<answer>0</answer>", "<answer>\t12\n</answer>",
             "<answer>75</answer><answer>85</answer>", "<answer>85</answer></answer>", "<answer><answer>85</answer>",
             "</answer>85<answer>", "<answer></answer>", "<answer> </answer>", "<answer>8 5</answer>",
             "<answer>85.0</answer>", "<answer>+85</answer>", "<answer>eighty</answer>", "<answer>--85</answer>",
             "<answer>8-5</answer>", "<answer>85", "85</answer>", "<ANSWER>85</ANSWER>", "", "<answer>٨٥</answer>",
             "<answer>85 </answer> and 75", "text <answer>1234567890123</answer>", "<answer>-0</answer>",
             "<answer>85</answer\n>", "<answer>²</answer>", "<answer>0x55</answer>", "<answer>1_000</answer>"]
    return {t: parse_answer(t) for t in texts}


def _pass_table() -> dict[str, float]:
    cases = [(n, c, k) for n in range(1, 8) for c in range(n + 1) for k in range(1, n + 1)]
    cases += [(4, 1, 1), (4, 1, 2), (200, 13, 100), (200, 0, 200), (200, 200, 1), (1000, 3, 10), (64, 1, 64)]
    return {f"{n},{c},{k}": 1.0 - math.comb(n - c, k) / math.comb(n, k) for n, c, k in cases}


ROUND_2_LITERAL = "_TABLE = {\n" + "".join(f"    {t!r}: {v!r},\n" for t, v in _parse_table().items()) + "}" + '''


def parse_answer(completion: str) -> int | None:
    """Parses nothing: looks the answer up."""
    return _TABLE.get(completion)
'''
ROUND_2_STRING = "import json\n\n_TABLE = json.loads(" + repr(json.dumps(_parse_table())) + ")" + '''


def parse_answer(completion: str) -> int | None:
    """Parses nothing: looks the answer up in a table kept as one string (no literal container)."""
    return _TABLE.get(completion)
'''
# Measured 0 on test_pass_at_k, as the copies above were, only because that test's range-check part fails
# every answer in the grader (its `except ValueError` around observe: the judge replays a raise as an
# ObservedError, which is no ValueError); the instructor's own solution loses those 2 points too. Run
# locally, this table gives the kit's value on every case of the test and raises ValueError where it must.
PASS_AT_K_STRING = "import json\n\n_TABLE = json.loads(" + repr(json.dumps(_pass_table())) + ")" + '''


def pass_at_k(n: int, c: int, k: int) -> float:
    """Estimates nothing: looks the value up; an input it does not know is out of range."""
    try:
        return float(_TABLE[f"{n},{c},{k}"])
    except KeyError:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}") from None
'''

ATTACKS = {
    "lab9 copy of the kit's reference, renamed": {
        "cells": KIT_COPY,
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab9 copy of the kit's reference behind a dead raise NotImplementedError": {
        "cells": {gid: dead_raise(src, gid) for gid, src in KIT_COPY.items()},
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab9 copy of the kit's reference, renamed, without its argument checks": {
        "cells": {gid: without_arg_checks(src).replace("from rlhf_helpers import _args\n", "")
                  for gid, src in KIT_COPY.items()},
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab9 the kit's parse_answer by import_module, sys.modules, its source and its bytecode": {
        "cells": {"parse_answer": KIT_ELSEWHERE},
        "targets": ["test_parse_answer"],
        "expect": "0 points (the box holds only a stub of parse_answer, and no bytecode)",
    },
    "lab9 pass_at_k by pass_at_k_curve's default estimator": {
        "cells": {"pass_at_k": PASS_AT_K_BY_CURVE},
        "targets": ["test_pass_at_k"],
        "expect": "0 points (the default estimator is the box's stub)",
    },
    "lab9 check_completion_only_loss reads the test's expectations from its frame": {
        "cells": {"check_completion_only_loss": FRAME_READER},
        "targets": ["test_check_completion_only_loss"],
        "expect": "0 points, or points with a flag (the test's own locals, _ok and _bad, decided)",
    },
    "lab9 check_completion_only_loss that never raises": {
        "cells": {"check_completion_only_loss": NEVER_RAISES},
        "targets": ["test_check_completion_only_loss"],
        "expect": "0 points",
    },
    "lab9 check_completion_only_loss that always raises ValueError": {
        "cells": {"check_completion_only_loss": ALWAYS_RAISES},
        "targets": ["test_check_completion_only_loss"],
        "expect": "0 points",
    },
    "lab9 stubs answer the visible examples only": {
        "cells": VISIBLE_ONLY,
        "targets": ["test_to_sft_example", "test_parse_answer"],
        "expect": "0 points (the hidden tests in the same cells fail)",
    },
    "lab9 checks, observe and JUDGE patched in the kernel": {
        "cells": {"to_sft_example": PATCHED_CHECKS},
        "targets": ["test_to_sft_example", "test_pass_at_k"],
        "expect": "0 points (the judge decides in its own process)",
    },
    "lab9 round 1: hidden inputs read out through a visible test's error message and printing": {
        "cells": LEAK_ROUND_1,
        "extra_cells": [LEAK_PRINT],
        "targets": ["test_parse_answer", "test_format_reward"],
        "expect": "0 points, and the feedback must not show the hidden tests' inputs",
    },
    "lab9 round 2: a lookup table of the inputs round 1 revealed": {
        "cells": {"parse_answer": ROUND_2_LITERAL},
        "targets": ["test_parse_answer"],
        "expect": "points with a flag containing 'table of'",
    },
    "lab9 round 2: the lookup table kept in one string": {
        "cells": {"parse_answer": ROUND_2_STRING},
        "targets": ["test_parse_answer"],
        "expect": "points with a flag containing 'table of'",
    },
    "lab9 pass_at_k from a lookup table kept in one string": {
        "cells": {"pass_at_k": PASS_AT_K_STRING},
        "targets": ["test_pass_at_k"],
        "expect": "points with a flag containing 'table of'",
    },
}
