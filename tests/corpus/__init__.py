"""Corpora of learner answers that the grader is tested against (see each package's docstring)."""
