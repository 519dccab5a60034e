"""``coral``: Deep CORAL, the distance between source and target feature covariances (Sun & Saenko 2016)."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod


def _modules(hidden: int, num_classes: int, head: Any = None) -> dict[str, Any]:
    from transferkit.losses import create_loss

    return {"loss": create_loss("coral")}


def _term(plan: Any, network: Any, h_s: Any, h_t: Any, logits_s: Any, logits_t: Any) -> tuple[Any, dict[str, Any]]:
    return network.auxiliary["loss"](h_s, h_t), {}


ENTRY = AdaptationMethod(
    name="coral",
    description="Deep CORAL: source and target feature covariances pulled together",
    kind=TRAINED,
    tradeoffs=(1.0, 10.0),
    options=("tradeoff",),
    auxiliary=_modules,
    target_loss=_term,
)
