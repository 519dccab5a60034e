"""Classification heads on pooled features."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """``logits = W ((x - mean) / scale) + b``: a linear classifier with the feature standardisation built in.

    Shapes: features ``(N, in_features)`` -> logits ``(N, num_classes)``. A fitted
    :class:`~transferkit.estimators.linear_probe.LinearProbe` converts to this module exactly (``from_probe``), so a
    probe trained on cached features becomes the head of a PyTorch model (for fine-tuning, export, serving).
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.linear = nn.Linear(in_features, num_classes)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def num_classes(self) -> int:
        return self.linear.out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.scale)
