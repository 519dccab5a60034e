"""``dan``: multi-kernel MMD between source and target bottleneck features (Long et al. 2015)."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod


def _modules(hidden: int, num_classes: int, head: Any = None) -> dict[str, Any]:
    from transferkit.losses import create_loss

    return {"loss": create_loss("mmd")}


def _term(plan: Any, network: Any, h_s: Any, h_t: Any, logits_s: Any, logits_t: Any) -> tuple[Any, dict[str, Any]]:
    return network.auxiliary["loss"](h_s, h_t), {}


ENTRY = AdaptationMethod(
    name="dan",
    description="multi-kernel MMD^2 between source and target bottleneck features",
    kind=TRAINED,
    tradeoffs=(0.3, 1.0),
    options=("tradeoff",),
    auxiliary=_modules,
    target_loss=_term,
)
