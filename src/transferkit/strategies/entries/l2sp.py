"""``l2sp``: fine-tuning held near the pretrained weights by the L2-SP penalty, through the engine."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.entries._spaces import finetune_space
from transferkit.strategies.entries.finetune import FINETUNE_OPTIONS
from transferkit.strategies.options import TRAINING_OPTIONS, L2SPConfig
from transferkit.strategies.registry import Strategy


def _build(config: Any) -> Any:
    from transferkit.strategies.l2sp import L2SP

    return L2SP(config.l2sp, config.finetune, head_lr=config.head_lr)


def _default_lr() -> float:
    from transferkit.strategies.l2sp import L2SP

    return L2SP.default_lr


ENTRY = Strategy(
    name="l2sp",
    description="fine-tuning held near the pretrained weights (L2-SP)",
    trains_network=True,
    options=(*TRAINING_OPTIONS, *FINETUNE_OPTIONS, *(f"l2sp.{name}" for name in L2SPConfig.model_fields)),
    build=_build,
    default_lr=_default_lr,
    packages=("lightning",),
    new_head=True,
    search_space=lambda: {**finetune_space(), "l2sp.alpha": {"low": 1e-3, "high": 1.0, "log": True}},
)
