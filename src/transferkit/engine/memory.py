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


#: On the CPU a training step keeps at most about this many bytes of activations for its backward pass: a larger
#: batch runs as several micro-batches whose gradients are accumulated (:func:`micro_batch_factor`). An LP-FT run of
#: EfficientNet-Lite0 at 224 px holds about 80 MB per example, so the default batch of 64 held about 6 GB at once.
CPU_ACTIVATION_BUDGET_BYTES = 1 << 30


def activation_bytes_per_example(run_step: Any, size: int, parameters: Sequence[torch.Tensor] = ()) -> int:
    """Bytes the autograd graph keeps per example for the backward pass, measured by running ``run_step()`` (a
    forward pass on ``size`` examples returning the loss) with a hook on every tensor saved for backward.

    Tensors sharing storage count once; ``parameters`` (weights saved by their layers) are not counted, they are held
    anyway. ``run_step`` must leave no trace (the caller restores BatchNorm statistics and random states).
    """
    held = {p.untyped_storage().data_ptr() for p in parameters}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in held:
            seen[pointer] = max(seen.get(pointer, 0), storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run_step()
    return int(sum(seen.values()) // max(size, 1))


def micro_batch_factor(batch: int, per_example_bytes: int, budget_bytes: int = CPU_ACTIVATION_BUDGET_BYTES) -> int:
    """The smallest ``k`` dividing ``batch`` such that a micro-batch of ``batch / k`` examples keeps at most
    ``budget_bytes`` of activations (``batch`` when even one example exceeds it)."""
    if per_example_bytes <= 0 or batch * per_example_bytes <= budget_bytes:
        return 1
    for k in range(2, batch + 1):
        if batch % k == 0 and (batch // k) * per_example_bytes <= budget_bytes:
            return k
    return batch
