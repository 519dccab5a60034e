"""``mcc``: minimum class confusion on the target predictions (Jin et al. 2020)."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod


def _modules(hidden: int, num_classes: int, head: Any = None) -> dict[str, Any]:
    from transferkit.losses import create_loss

    return {"loss": create_loss("mcc")}


def _term(plan: Any, network: Any, h_s: Any, h_t: Any, logits_s: Any, logits_t: Any) -> tuple[Any, dict[str, Any]]:
    return network.auxiliary["loss"](logits_t), {}


ENTRY = AdaptationMethod(
    name="mcc",
    description="minimum class confusion on the target predictions",
    kind=TRAINED,
    tradeoffs=(0.3, 1.0),
    options=("tradeoff",),
    auxiliary=_modules,
    target_loss=_term,
)
