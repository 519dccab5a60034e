"""``dann``: a domain discriminator behind gradient reversal, scaled by the DANN schedule (Ganin et al. 2016)."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod


def _modules(hidden: int, num_classes: int, head: Any = None) -> dict[str, Any]:
    from transferkit.losses import create_loss
    from transferkit.strategies.adaptation.plan import discriminator

    return {"loss": create_loss("dann", discriminator=discriminator(hidden), coefficient=0.0)}


def _term(plan: Any, network: Any, h_s: Any, h_t: Any, logits_s: Any, logits_t: Any) -> tuple[Any, dict[str, Any]]:
    loss = network.auxiliary["loss"]
    loss.coefficient = plan.reversal_coefficient()
    return loss(h_s, h_t), {}


ENTRY = AdaptationMethod(
    name="dann",
    description="domain-adversarial training: a discriminator behind gradient reversal",
    kind=TRAINED,
    tradeoffs=(0.3, 1.0),
    options=("tradeoff",),
    auxiliary=_modules,
    target_loss=_term,
)
