"""Honest answers to lab6_dpo_hf in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {"a": {}, "b": {}}
