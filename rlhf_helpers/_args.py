"""Argument checks shared by the kit's modules: one error type and one message per mistake.

A value of the wrong type is a ``TypeError``; a value of the right type but the
wrong shape, range or size is a ``ValueError``. Every message names the
argument, says what was expected and what was given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def tensor(x: Any, name: str, *, dim: int | tuple[int, ...] | None = None, floating: bool = False) -> torch.Tensor:
    """``x`` if it is a tensor (with ``dim`` dimensions, of a floating-point dtype when asked)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} should be a torch.Tensor, got {type(x).__name__}.")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} should have a floating-point dtype, got {x.dtype} (convert with .float()).")
    dims = (dim,) if isinstance(dim, int) else dim
    if dims is not None and x.dim() not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(f"{name} should have {want} dimension(s), got shape {tuple(x.shape)}.")
    return x


def same_shape(**tensors: torch.Tensor) -> None:
    """All the named tensors have one shape (the message lists each name with its shape)."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        said = ", ".join(f"{n} {s}" for n, s in shapes.items())
        raise ValueError(f"expected tensors of the same shape, got {said}.")


def positive_number(x: Any, name: str, *, allow_zero: bool = False, allow_inf: bool = False, hint: str = "") -> float:
    """``x`` as a Python float > 0 (>= 0 with ``allow_zero``; +inf only with ``allow_inf``; never NaN);
    a one-element tensor is accepted. ``hint`` is added to the message of a value out of range."""
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} should be a number, got {type(x).__name__}.")
    value = float(x)
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero) or (math.isinf(value) and not allow_inf):
        what = ("a number" if allow_inf else "a finite number") + (" >= 0" if allow_zero else " > 0")
        raise ValueError(f"{name} should be {what}, got {x!r}."
                         + (f" {hint}" if hint else ""))
    return value


def integer(x: Any, name: str, *, minimum: int | None = None, hint: str = "") -> int:
    """``x`` if it is a Python int (a bool is refused), and ``>= minimum`` when one is given.
    ``hint`` is added to the message of a value out of range."""
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"{name} should be an int, got {type(x).__name__} ({x!r}).")
    if minimum is not None and x < minimum:
        raise ValueError(f"{name} should be an int >= {minimum}, got {x!r}." + (f" {hint}" if hint else ""))
    return x


def texts(x: Any, name: str) -> list[str]:
    """``x`` as a list of strings (a list or tuple of them; a single string is refused)."""
    if isinstance(x, str) or not isinstance(x, Sequence) or not all(isinstance(t, str) for t in x):
        raise TypeError(f"{name} should be a list of strings, got {type(x).__name__}.")
    return list(x)
