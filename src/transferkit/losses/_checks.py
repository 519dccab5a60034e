"""Argument checks shared by the losses: options are checked once, at construction, with a message that names the
loss, the option, what is allowed and what was given. Tensor shapes are checked at the top of ``forward``."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch

from transferkit.errors import ConfigError


def is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def positive_float(owner: str, option: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0, else a :class:`ConfigError`."""
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{owner}: {option} must be a finite number > 0; got {value!r}.")
    return float(value)


def non_negative_float(owner: str, option: str, value: Any) -> float:
    """``value`` as a float if it is a finite number >= 0, else a :class:`ConfigError`."""
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{owner}: {option} must be a finite number >= 0; got {value!r}.")
    return float(value)


def float_in_range(owner: str, option: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float if it is a number in ``[low, high]``, else a :class:`ConfigError`."""
    if not is_number(value) or not low <= value <= high:
        raise ConfigError(f"{owner}: {option} must be a number in [{low:g}, {high:g}]; got {value!r}.")
    return float(value)


def positive_int(owner: str, option: str, value: Any) -> int:
    """``value`` if it is an integer >= 1, else a :class:`ConfigError`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{owner}: {option} must be an integer >= 1; got {value!r}.")
    return value


def boolean(owner: str, option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}: {option} must be True or False; got {value!r}.")
    return value


def matrix(owner: str, name: str, tensor: torch.Tensor, *, width: int | None = None, min_rows: int = 1) -> None:
    """Raise ``ValueError`` unless ``tensor`` is 2-D with at least ``min_rows`` rows (and ``width`` columns)."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{owner}: {name} must be a 2-D tensor (batch, features); got {shape}.")
    if tensor.shape[0] < min_rows:
        raise ValueError(f"{owner}: {name} needs at least {min_rows} rows; got {tensor.shape[0]}.")
    if width is not None and tensor.shape[1] != width:
        raise ValueError(f"{owner}: {name} must have {width} columns; got shape {tuple(tensor.shape)}.")


def same_width(owner: str, source: torch.Tensor, target: torch.Tensor) -> None:
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"{owner}: source and target must have the same feature width; got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}.")


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs are computed in float32 (kernel and covariance sums lose too much in 16 bits)."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def without_autocast(tensor: torch.Tensor) -> torch.autocast:
    """A context in which matrix products on ``tensor``'s device keep their input precision under mixed precision."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)
