"""Honest answers to lab2_rewards in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {"a": {}, "b": {}}
