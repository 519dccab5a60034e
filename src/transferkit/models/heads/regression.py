"""The regression head: a linear layer whose outputs are in the target's own units."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.models.heads.linear import LinearHead


class RegressionHead(LinearHead):
    """``value = (W ((x - mean) / scale) + b) * target_scale + target_mean``.

    Shapes: features ``(N, in_features)`` -> values ``(N, num_classes)`` (one output per target; one today), in the
    target's units. The linear layer predicts the standardised target: a new head starts at the training mean with
    unit-free weights, and the task's loss divides errors by ``target_scale`` so that learning rates and loss
    weights mean the same for a rating in -4..4 and a price in the hundred thousands. A fitted
    :class:`~transferkit.estimators.task_probes.RidgeProbe` converts to this module exactly.
    """

    def __init__(self, in_features: int, num_classes: int = 1, target_mean: float = 0.0,
                 target_scale: float = 1.0) -> None:
        super().__init__(in_features, num_classes)
        self.register_buffer("target_mean", torch.full((num_classes,), float(target_mean)))
        self.register_buffer("target_scale", torch.full((num_classes,), float(target_scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.scale) * self.target_scale + self.target_mean
