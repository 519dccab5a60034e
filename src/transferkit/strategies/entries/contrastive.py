"""``contrastive``: the encoder (or its top layers) tuned so that same-class examples are close (every pair of a
batch), then the linear probe fitted on the tuned embeddings, through the engine."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.options import TRAINING_OPTIONS, ContrastiveConfig
from transferkit.strategies.registry import Strategy


def _build(config: Any) -> Any:
    from transferkit.strategies.contrastive import ContrastiveTuning

    return ContrastiveTuning(config.contrastive, head_lr=config.head_lr)


def _default_lr() -> float:
    from transferkit.strategies.contrastive import ContrastiveTuning

    return ContrastiveTuning.default_lr


ENTRY = Strategy(
    name="contrastive",
    description="the encoder (or its top layers) tuned by a pair loss (same class close, every pair of a batch), "
                "then the linear probe on the tuned embeddings; for a few labelled examples per class",
    trains_network=True,
    options=(*TRAINING_OPTIONS, "probe_c", *(f"contrastive.{name}" for name in ContrastiveConfig.model_fields)),
    build=_build,
    default_lr=_default_lr,
    packages=("lightning",),
    search_space=lambda: {"lr": {"low": 1e-5, "high": 3e-4, "log": True},
                          "contrastive.temperature": {"low": 0.03, "high": 0.3, "log": True},
                          "contrastive.top_layers": {"choices": [0, 1, 2, 4]}},
)
