"""Input validation shared by every public function.

Every check raises :class:`TypeError` or :class:`ValueError` with a message that names the
argument and says what was expected, so that bad input never surfaces as a traceback from
deep inside torch.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["check_choice", "check_image", "check_pair", "check_positive_float", "check_positive_int", "check_reduction", "reduce"]

_REDUCTIONS = ("none", "mean", "sum")


def check_image(x: object, name: str, *, min_size: int | None = None) -> torch.Tensor:
    """Check that ``x`` is a floating (B, C, H, W) tensor of finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)} ({x.dim()} dims)")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {x.dtype}; "
            f"convert integer images with x.float() / 255"
        )
    if min(x.shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if min_size is not None and (x.shape[-2] < min_size or x.shape[-1] < min_size):
        raise ValueError(
            f"{name} of spatial size {tuple(x.shape[-2:])} is smaller than the window ({min_size}x{min_size})"
        )
    if not torch.compiler.is_compiling():
        # Under torch.compile a data-dependent check would break the graph: the custom operators
        # check at run time instead (check_finite in their implementations).
        check_finite(x, name)
    return x


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError when ``x`` holds a NaN or an Inf (data-dependent: it reads the values)."""
    # One reduction instead of an elementwise pass: any NaN or Inf makes the sum non-finite
    # (finite values large enough to overflow the sum are reported too, which is fine).
    if not bool(torch.isfinite(x.sum(dtype=torch.float64 if x.dtype == torch.float64 else torch.float32))):
        raise ValueError(f"{name} contains NaN or Inf values")


def check_pair(input: object, target: object, *, min_size: int | None = None) -> None:
    """Check ``input`` and ``target`` individually and against each other."""
    check_image(input, "input", min_size=min_size)
    check_image(target, "target", min_size=min_size)
    assert isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor)
    if input.shape != target.shape:
        raise ValueError(
            f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}"
        )
    if input.device != target.device:
        raise ValueError(f"input and target must be on the same device, got {input.device} and {target.device}")


def check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def check_choice(value: object, name: str, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_positive_float(value: object, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply a kornia-style reduction to per-image values of shape (B,)."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
