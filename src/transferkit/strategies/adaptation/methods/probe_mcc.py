"""``probe-mcc``: MCC on a linear head that starts as the source probe, kept near it by an L2-SP anchor (no weight
decay, which would pull it to zero instead)."""

from __future__ import annotations

from typing import Any

from transferkit.errors import ConfigError
from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod


def _modules(hidden: int, num_classes: int, head: Any = None) -> dict[str, Any]:
    from transferkit.losses import create_loss
    from transferkit.losses.l2sp import L2SPPenalty
    from transferkit.strategies.adaptation.plan import ANCHOR_ALPHA

    if head is None:
        raise ConfigError("probe-mcc needs the head it starts from (the source probe's linear head).")
    return {"loss": create_loss("mcc"), "anchor": L2SPPenalty(head, alpha=ANCHOR_ALPHA, beta=0.0)}


def _term(plan: Any, network: Any, h_s: Any, h_t: Any, logits_s: Any, logits_t: Any) -> tuple[Any, dict[str, Any]]:
    return network.auxiliary["loss"](logits_t), {"anchor": network.auxiliary["anchor"](network.head)}


ENTRY = AdaptationMethod(
    name="probe-mcc",
    description="MCC on the source probe's linear head, kept near it by L2-SP",
    kind=TRAINED,
    tradeoffs=(1.0,),
    starts_from="source-probe",
    head_weight_decay=0.0,
    options=("tradeoff",),
    auxiliary=_modules,
    target_loss=_term,
)
