"""A head set for multi-task learning: one classification head per task on the same pooled features."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.models.heads.linear import LinearHead


class HeadSet(nn.Module):
    """One :class:`~transferkit.models.heads.LinearHead` per task, in a fixed task order.

    Shapes: features ``(N, in_features)`` and a task name -> logits ``(N, num_classes[task])``.
    """

    def __init__(self, in_features: int, num_classes: Mapping[str, int]) -> None:
        super().__init__()
        if not num_classes:
            raise ConfigError("a head set needs at least one task.")
        self.heads = nn.ModuleDict({task: LinearHead(in_features, n) for task, n in num_classes.items()})

    @property
    def tasks(self) -> list[str]:
        return list(self.heads)

    @property
    def in_features(self) -> int:
        return next(iter(self.heads.values())).in_features

    def __getitem__(self, task: str) -> LinearHead:
        if task not in self.heads:
            raise ConfigError(f"unknown task '{task}'; this model has tasks {', '.join(self.heads)}.")
        return self.heads[task]

    def forward(self, features: torch.Tensor, task: str) -> torch.Tensor:
        return self[task](features)
