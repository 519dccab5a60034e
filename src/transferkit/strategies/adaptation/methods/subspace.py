"""``subspace``: subspace alignment of the cached features (Fernando et al. 2013), then the linear probe."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import FEATURES, AdaptationMethod


def _aligner() -> Any:
    from transferkit.estimators.feature_alignment import SubspaceAlignment

    return SubspaceAlignment()


ENTRY = AdaptationMethod(
    name="subspace",
    description="subspace alignment of cached features + the linear probe",
    kind=FEATURES,
    aligner=_aligner,
)
