"""Hugging Face chores the kit's modules share: quiet progress bars, and random state kept across trainers.

Private to the package (the labs do not import it): transformers and datasets print progress bars
to stderr, which nbgrader counts against a test cell, and TRL's trainers reseed Python's, NumPy's
and torch's generators, which must not change what a lab draws next.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch

__all__ = ["no_load_bars", "no_dataset_bars", "kept_rng_state"]


@contextlib.contextmanager
def no_load_bars() -> Iterator[None]:
    """Hide transformers' "Loading weights" bars (they go to stderr, which
    nbgrader counts against a test cell) and restore the setting after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def kept_rng_state() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's random state after the block (``DPOTrainer`` reseeds them)."""
    import numpy as np

    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


@contextlib.contextmanager
def no_dataset_bars() -> Iterator[None]:
    """Hide the datasets library's progress bars (``map``, ``filter``) and restore the setting after."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
