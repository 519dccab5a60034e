"""``source-only``: the head (and backbone) trained on the labelled source alone; the reference of every method."""

from __future__ import annotations

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod

ENTRY = AdaptationMethod(
    name="source-only",
    description="trained on the source alone: the reference every method is compared with",
    kind=TRAINED,
    reference=True,
)
