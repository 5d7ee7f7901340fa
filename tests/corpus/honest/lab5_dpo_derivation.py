"""Honest answers to lab5_dpo_derivation in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {"a": {}, "b": {}}
