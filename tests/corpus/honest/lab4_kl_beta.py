"""Honest answers to lab4_kl_beta in unusual styles (see tests/corpus/honest/__init__.py)."""

VARIANTS = {"a": {}, "b": {}}
