"""Activation checkpointing: each layer group's activations are recomputed in the backward pass instead of being
kept from the forward pass. Memory for activations drops to about one group's worth, for about a third more
compute. Generic: it wraps the ``forward`` of the modules given (a backbone's layer groups), whatever their family.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

_MARK = "_transferkit_checkpointed"


def _checkpointed(module: nn.Module, forward: Any, *args: Any, **kwargs: Any) -> Any:
    if module.training and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def enable_activation_checkpointing(modules: Sequence[nn.Module]) -> int:
    """Checkpoint each module in ``modules`` (groups that are containers, such as ``nn.ModuleList``, have their
    children checkpointed); returns how many modules were wrapped.

    Modules holding BatchNorm layers are left alone: recomputing their forward pass would update the running
    statistics twice per step.
    """
    wrapped = 0
    for module in modules:
        targets = list(module.children()) if isinstance(module, (nn.ModuleList, nn.ParameterList)) else [module]
        for target in targets:
            if isinstance(target, nn.ParameterList) or getattr(target, _MARK, False):
                continue
            if any(isinstance(m, _BatchNorm) for m in target.modules()):
                continue
            target.forward = functools.partial(_checkpointed, target, target.forward)
            setattr(target, _MARK, True)
            wrapped += 1
    return wrapped


def disable_activation_checkpointing(model: nn.Module) -> None:
    """Undo :func:`enable_activation_checkpointing` everywhere in ``model``."""
    for module in model.modules():
        if getattr(module, _MARK, False):
            del module.forward
            delattr(module, _MARK)
