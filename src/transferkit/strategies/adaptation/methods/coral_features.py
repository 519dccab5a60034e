"""``coral-features``: CORAL re-colouring of the cached source features to the target's covariance, then the
linear probe."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import FEATURES, AdaptationMethod


def _aligner() -> Any:
    from transferkit.estimators.feature_alignment import CoralRecoloring

    return CoralRecoloring()


ENTRY = AdaptationMethod(
    name="coral-features",
    description="CORAL re-colouring of cached features + the linear probe",
    kind=FEATURES,
    aligner=_aligner,
)
