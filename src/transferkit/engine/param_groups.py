"""Per-layer learning rates: one optimiser group per layer group, decaying from the output towards the input."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from transferkit.engine.plan import ParamGroup


def layer_lrs(n_groups: int, lr: float, decay: float) -> list[float]:
    """Learning rates of ``n_groups`` layer groups ordered from input to output.

    The group nearest the output gets ``lr * decay``, the next ``lr * decay**2``, ..., the first (the stem)
    ``lr * decay**n_groups``; the head, above them all, trains at ``lr`` (layer-wise learning-rate decay, as in
    ULMFiT and BEiT). ``decay = 1`` gives every group ``lr``.
    """
    return [lr * decay ** (n_groups - index) for index in range(n_groups)]


def layerwise_groups(layer_groups: Sequence[nn.Module], lr: float, decay: float, *, skip: int = 0,
                     prefix: str = "backbone.group") -> list[ParamGroup]:
    """One :class:`ParamGroup` per layer group (named ``{prefix}{index}``), the first ``skip`` groups left out
    (frozen for the whole run). Each parameter appears once, in the first group that holds it."""
    lrs = layer_lrs(len(layer_groups), lr, decay)
    seen: set[int] = set()
    out = []
    for index, (group, group_lr) in enumerate(zip(layer_groups, lrs)):
        params = [p for p in group.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if index < skip or not params:
            continue
        out.append(ParamGroup(f"{prefix}{index}", params, group_lr))
    return out
