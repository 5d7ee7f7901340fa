"""Hostile answers to lab2_rewards (see tests/corpus/hostile/__init__.py)."""

from ._sources import dead_raise, kit_function, renamed

LAB = "lab2_rewards"

KIT_COPY = {
    "scores_from_pipe_outputs": renamed(kit_function("rewards", "scores_from_pipe_outputs"), {
        "per_text": "entries", "found": "matches", "present": "labels_there", "scores": "values"}),
    "expected_reward": renamed(kit_function("rewards", "expected_reward"), {"n": "count", "r": "as64"}),
    "build_queries": "from typing import Any\n\n" + renamed(kit_function("rewards", "build_queries"), {"queries": "prefixes", "ids": "tokens"}),
}
NAMES = {"scores_from_pipe_outputs": "scores_from_pipe_outputs", "expected_reward": "expected_reward",
         "build_queries": "build_queries"}
TARGETS = ["test_scores_from_pipe_outputs", "test_scores_missing_label", "test_expected_reward", "test_build_queries"]

ATTACKS = {
    "lab2 copy of the kit's reference, renamed": {
        "cells": KIT_COPY,
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
    "lab2 copy of the kit's reference behind a dead raise NotImplementedError": {
        "cells": {gid: dead_raise(src, NAMES[gid]) for gid, src in KIT_COPY.items()},
        "targets": TARGETS,
        "expect": "points with a flag containing 'similar to (the kit's reference)'",
    },
}
