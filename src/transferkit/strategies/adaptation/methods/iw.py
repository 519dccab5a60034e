"""``iw``: instance weighting, the source cross-entropy weighted by importance weights of the source examples
(density ratio, kernel mean matching or selection: ``weighting``)."""

from __future__ import annotations

from transferkit.strategies.adaptation.registry import TRAINED, AdaptationMethod

ENTRY = AdaptationMethod(
    name="iw",
    description="instance weighting of the source examples",
    kind=TRAINED,
    weights_source=True,
    options=("weighting", "selection_fraction"),
)
