"""Freezing helpers shared by every strategy (plain PyTorch; no Lightning).

Frozen means ``requires_grad`` is off. A BatchNorm layer whose parameters are frozen is also kept in eval mode, so
that its running statistics neither change nor replace the pretrained ones by batch statistics; otherwise "frozen"
layers would still drift through their buffers.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def set_trainable(modules: nn.Module | Iterable[nn.Module], trainable: bool) -> None:
    """Turn ``requires_grad`` on or off for every parameter of ``modules``."""
    for module in [modules] if isinstance(modules, nn.Module) else modules:
        for parameter in module.parameters():
            parameter.requires_grad_(trainable)


def is_frozen_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm layer with parameters, none of which is trainable."""
    if not isinstance(module, _BatchNorm):
        return False
    parameters = list(module.parameters(recurse=False))
    return bool(parameters) and not any(p.requires_grad for p in parameters)


def frozen_batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if is_frozen_batchnorm(m)]


def keep_frozen_batchnorm_eval(model: nn.Module, every_batchnorm: bool = False) -> int:
    """Put every frozen BatchNorm layer (every one with ``every_batchnorm``) of a model in training mode back into
    eval mode; returns how many."""
    if not model.training:
        return 0
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)] if every_batchnorm else frozen_batchnorm_layers(model)
    for layer in layers:
        layer.eval()
    return len(layers)


def trainable_parameter_count(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (each shared tensor counted once)."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, total
