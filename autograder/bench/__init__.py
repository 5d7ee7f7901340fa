"""Benchmarks: how long each lab and its grading take, and the kit's training against peers (grades nothing)."""
