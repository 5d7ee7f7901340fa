"""Hostile answers to lab8_human_feedback (see tests/corpus/hostile/__init__.py)."""

from ._sources import dead_raise, kit_function, renamed

LAB = "lab8_human_feedback"

LEAK_ROUND_1 = {
    "cohens_kappa": '''
_seen = []   # every pair of label lists the tests hand over, hidden ones included


def cohens_kappa(a: list, b: list) -> float:
    """Computes nothing: remembers its inputs (the test's calls come first; the lab's own cells call it
    a thousand times more for a bootstrap interval)."""
    if len(_seen) < 12:
        _seen.append([list(a), list(b)])
    return 0.0
''',
    "wilson_interval": '''
def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Raises in the VISIBLE test with everything cohens_kappa was given, packed into the message: a
    visible failure's message is shown to the learner in full."""
    import base64
    import json
    import zlib

    raise ValueError("round1:" + base64.b85encode(zlib.compress(json.dumps(_seen).encode(), 9)).decode())
''',
}

ROUND_2_KAPPA = """
_TABLE = {  # read from round 1's feedback; values worked out away from the grader
    ((1, 1, 0, 0), (1, 0, 0, 0)): 0.5,
    ((0, 1, 0, 1), (0, 0, 1, 1)): 0.0,
    (('x', 'y'), ('y', 'x')): -1.0,
    ((1, 1, 1), (1, 1, 1)): float('nan'),
    (('A', 'B', 'B', 'A', 'A', 'A', 'A', 'A', 'A', 'A', 'B', 'A', 'B', 'B', 'B', 'B', 'B', 'A', 'B', 'A', 'B', 'A', 'A', 'B', 'B', 'B', 'B', 'A', 'B', 'A'), ('A', 'B', 'A', 'B', 'A', 'A', 'A', 'A', 'A', 'A', 'B', 'A', 'B', 'B', 'B', 'B', 'A', 'A', 'B', 'B', 'B', 'A', 'A', 'B', 'B', 'B', 'A', 'A', 'B', 'A')): 0.6666666666666667,
    ((1, 0, 1, 1, 1, 1, 2, 1, 0, 2, 1, 0, 0, 2, 0, 0, 0), (1, 0, 1, 2, 1, 1, 2, 1, 0, 2, 1, 0, 0, 2, 0, 0, 2)): 0.8210526315789474,
    ((None, 0, 'tie', 0, 'tie', 0, 1, None, 'tie', 1, 1, 1, 1, 'tie', None, 0, 'tie', 'tie', 0, 0, 1, None, None, 'tie', 'tie', 0, 0, None, None, 0, None, 'tie', 'tie', None, 0, None, 'tie', None, None, 1, None, 0, 'tie', 0, 'tie', None, 'tie', 'tie', 0, 'tie'), ('tie', None, 'tie', 0, 'tie', 0, 1, None, 'tie', 1, 1, 1, 1, None, None, 0, 'tie', 1, 1, 0, 1, 1, 'tie', 'tie', 'tie', 1, 0, None, None, 1, 1, 0, 'tie', None, 1, None, 'tie', None, 1, 1, 1, 0, None, 0, 'tie', None, 'tie', 'tie', 0, 0)): 0.5780590717299579,
}


def cohens_kappa(a: list, b: list) -> float:
    \"\"\"Computes no kappa: looks the answer up.\"\"\"
    if len(a) != len(b) or not a:
        raise ValueError("two non-empty label lists of one length are needed")
    return _TABLE.get((tuple(a), tuple(b)), 0.0)
"""
"""What a learner writes after round 1: the hidden tests' inputs, as round 1's feedback showed them, with
kappa worked out by hand (or any tool) away from the grader."""

KIT_COPY = {
    "cohens_kappa": "from collections import Counter\nfrom collections.abc import Sequence\n\n" + renamed(kit_function("agreement", "cohens_kappa"), {
        "observed": "p_o", "expected": "p_e", "ca": "count_a", "cb": "count_b"}),
    "wilson_interval": "import math\n\n" + renamed(kit_function("agreement", "wilson_interval"), {
        "centre": "middle", "half": "width"}),
}

ATTACKS = {
    "lab8 round 1: hidden inputs read out through a visible test's error message": {
        "cells": LEAK_ROUND_1,
        "targets": ["test_cohens_kappa", "test_wilson_interval"],
        "expect": "0 points, and the feedback must not show the hidden tests' inputs",
    },
    "lab8 copy of the kit's reference, renamed": {
        "cells": KIT_COPY,
        "targets": ["test_cohens_kappa", "test_wilson_interval"],
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab8 copy of the kit's reference behind a dead raise NotImplementedError": {
        "cells": {gid: dead_raise(src, gid) for gid, src in KIT_COPY.items()},
        "targets": ["test_cohens_kappa", "test_wilson_interval"],
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab8 round 2: a lookup table of the inputs round 1 revealed": {
        "cells": {"cohens_kappa": ROUND_2_KAPPA},
        "targets": ["test_cohens_kappa"],
        "expect": "0 points (hidden inputs must not reach the learner, or must change between rounds)",
    },
}
