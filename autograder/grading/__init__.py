"""Grading: one submission in a box, judged outside the learner's kernel, and a class of them."""
