"""``cdan``: CDAN+E, the adversarial discriminator on ``h (x) softmax(logits)``, entropy-conditioned
(Long et al. 2018)."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod

#: Width of the randomized multilinear map when ``hidden * classes`` is too large for the exact one.
RANDOMIZED_DIM = 1024


def _modules(hidden: int, num_classes: int, head: Any = None) -> dict[str, Any]:
    from transferkit.losses import create_loss
    from transferkit.losses.cdan import MAX_MULTILINEAR_DIM
    from transferkit.strategies.adaptation.plan import discriminator

    # The multilinear map h (x) p when it is small enough, else the randomized map of width 1024.
    width = hidden * num_classes if hidden * num_classes <= MAX_MULTILINEAR_DIM else RANDOMIZED_DIM
    return {"loss": create_loss("cdan", discriminator=discriminator(width), feature_dim=hidden,
                                num_classes=num_classes, entropy_conditioning=True, randomized_dim=RANDOMIZED_DIM,
                                coefficient=0.0)}


def _term(plan: Any, network: Any, h_s: Any, h_t: Any, logits_s: Any, logits_t: Any) -> tuple[Any, dict[str, Any]]:
    loss = network.auxiliary["loss"]
    loss.coefficient = plan.reversal_coefficient()
    return loss(h_s, h_t, logits_s, logits_t), {}


ENTRY = AdaptationMethod(
    name="cdan",
    description="CDAN+E: the adversarial discriminator conditioned on the predictions",
    kind=TRAINED,
    tradeoffs=(0.3, 1.0),
    options=("tradeoff",),
    auxiliary=_modules,
    target_loss=_term,
)
