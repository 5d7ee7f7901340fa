"""Honest answers to lab7_beyond_ppo in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {"a": {}, "b": {}}
