"""``self-train``: cross-entropy on confident target pseudo-labels; the confidence threshold moves from
``threshold_start`` to ``threshold_end`` during training."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod


def _term(plan: Any, network: Any, h_s: Any, h_t: Any, logits_s: Any, logits_t: Any) -> tuple[Any, dict[str, Any]]:
    import torch
    from torch.nn import functional as F

    with torch.no_grad():
        confidence, pseudo = logits_t.detach().float().softmax(dim=1).max(dim=1)
        keep = confidence >= plan.threshold()
    plan.pseudo_labelled = int(keep.sum())
    term = (F.cross_entropy(logits_t.float()[keep], pseudo[keep], reduction="sum") / len(pseudo)
            if keep.any() else logits_t.sum() * 0.0)
    return term, {}


ENTRY = AdaptationMethod(
    name="self-train",
    description="self-training on confident target pseudo-labels",
    kind=TRAINED,
    tradeoffs=(0.3, 1.0),
    options=("tradeoff", "threshold_start", "threshold_end"),
    target_loss=_term,
)
