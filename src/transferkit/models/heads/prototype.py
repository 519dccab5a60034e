"""A classification head that starts from the label names: cosine similarity to class prototypes plus a linear
correction."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.models.heads.linear import LinearHead


class PrototypeHead(LinearHead):
    """``logits = s * cos(x, p_c) + W ((x - mean) / scale) + b``.

    ``p_c`` (buffer ``prototypes``, ``(num_classes, in_features)``, unit rows) is the backbone's embedding of class
    ``c``'s name or description, ``s`` (buffer ``prior_scale``) the fitted scale of the zero-shot logits, and ``W``,
    ``b`` the linear correction learnt from the labelled examples. A fitted
    :class:`~transferkit.estimators.label_names.PrototypeProbe` converts to this module exactly (``to_head``).
    Shapes: features ``(N, in_features)`` -> logits ``(N, num_classes)``.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(in_features, num_classes)
        self.register_buffer("prototypes", torch.zeros(num_classes, in_features))
        self.register_buffer("prior_scale", torch.zeros(()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cosine = nn.functional.normalize(features, dim=-1) @ self.prototypes.T
        return self.prior_scale * cosine + self.linear((features - self.mean) / self.scale)
