"""A bottleneck head: the small trainable network that domain adaptation aligns on top of a backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class BottleneckHead(nn.Module):
    """``logits = classifier(embed(x))`` with ``embed(x) = dropout(relu(norm(W1 (x - mean) / scale)))``.

    The domain-adaptation losses (MMD, CORAL, the adversarial discriminators) act on the bottleneck features
    ``embed(x)`` ``(N, hidden)``, as in DAN / DANN / CDAN, where a bottleneck layer sits between the backbone and the
    classifier. ``mean`` and ``scale`` standardise the backbone features (set from the pooled source and target
    features before training). Shapes: ``(N, in_features)`` -> logits ``(N, num_classes)``.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.hidden = int(hidden)
        self.dropout_p = float(dropout)
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.bottleneck = nn.Linear(in_features, self.hidden)
        self.norm = nn.LayerNorm(self.hidden)
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(self.hidden, num_classes)

    @property
    def in_features(self) -> int:
        return self.bottleneck.in_features

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def options(self) -> dict[str, Any]:
        """Constructor options beyond the widths, saved with the model so that :func:`load_model` rebuilds it."""
        return {"hidden": self.hidden, "dropout": self.dropout_p}

    def set_standardization(self, features: torch.Tensor) -> None:
        """Standardise inputs with the mean and deviation of ``features`` ``(N, in_features)`` (near-constant
        dimensions are scaled by 1)."""
        with torch.no_grad():
            mean = features.float().mean(dim=0)
            scale = features.float().std(dim=0)
            scale = torch.where(scale < 1e-6 * scale.max().clamp_min(1e-12), torch.ones_like(scale), scale)
            self.mean.copy_(mean)
            self.scale.copy_(scale)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.relu(self.norm(self.bottleneck((features - self.mean) / self.scale))))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(features))
