"""A classification head that starts from the label names: cosine similarity to class prototypes plus a linear
correction."""

from __future__ import annotations

import torch
from torch import nn


class PrototypeHead(nn.Module):
    """``logits = s * cos(x, p_c) + W ((x - mean) / scale) + b``.

    ``p_c`` (buffer ``prototypes``, ``(num_classes, in_features)``, unit rows) is the backbone's embedding of class
    ``c``'s name or description, ``s`` (buffer ``prior_scale``) the fitted scale of the zero-shot logits, and ``W``,
    ``b`` the linear correction learnt from the labelled examples. A fitted
    :class:`~transferkit.estimators.label_names.PrototypeProbe` converts to this module exactly (``to_head``).
    Shapes: features ``(N, in_features)`` -> logits ``(N, num_classes)``.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.register_buffer("prototypes", torch.zeros(num_classes, in_features))
        self.register_buffer("prior_scale", torch.zeros(()))
        self.linear = nn.Linear(in_features, num_classes)

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def num_classes(self) -> int:
        return self.linear.out_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cosine = nn.functional.normalize(features, dim=-1) @ self.prototypes.T
        return self.prior_scale * cosine + self.linear((features - self.mean) / self.scale)
