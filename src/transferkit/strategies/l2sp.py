"""``l2sp``: fine-tuning held near the pretrained weights (L2-SP, Li, Grandvalet and Davoine 2018).

The same training as ``finetune`` (freezing, per-layer decay and gradual unfreezing included) with one more loss
term, :class:`~transferkit.losses.l2sp.L2SPPenalty`: ``alpha/2 ||w - w0||^2`` over the backbone (``w0`` the weights
at the start) and ``beta/2 ||w||^2`` over the new head. The penalty replaces AdamW's weight decay, which would
pull the weights towards zero instead of towards ``w0``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from transferkit.engine.plan import ParamGroup
from transferkit.strategies.finetune import FineTune
from transferkit.strategies.options import FineTuneConfig, L2SPConfig


class L2SP(FineTune):
    """:class:`FineTune` plus the L2-SP penalty as the loss term ``l2sp``."""

    name = "l2sp"

    def __init__(self, config: L2SPConfig | None = None, finetune: FineTuneConfig | None = None,
                 head_lr: float | None = None) -> None:
        super().__init__(finetune, head_lr=head_lr)
        self.l2sp = config or L2SPConfig()
        self.penalty: nn.Module | None = None

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        from transferkit.losses.l2sp import L2SPPenalty

        super().prepare(model, context)
        self.penalty = L2SPPenalty(model, pretrained=lambda name: name.startswith("backbone."),
                                   alpha=self.l2sp.alpha, beta=self.l2sp.beta)

    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        groups = super().param_groups(model, lr)
        for group in groups:
            group.weight_decay = 0.0
        return groups

    def loss_terms(self, model: nn.Module, inputs: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(model, inputs, targets)
        device = terms["cross_entropy"].device
        if next(self.penalty.buffers()).device != device:
            self.penalty.to(device)
        terms["l2sp"] = self.penalty(model)
        return terms
