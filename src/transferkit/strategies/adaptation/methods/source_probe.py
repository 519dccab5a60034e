"""``source-probe``: the linear probe on the source features as they are; the source-only reference of the
feature methods (and the head ``probe-mcc`` starts from)."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.adaptation.registry import FEATURES, AdaptationMethod


def _aligner() -> Any:
    from transferkit.estimators.feature_alignment import NoAlignment

    return NoAlignment()


ENTRY = AdaptationMethod(
    name="source-probe",
    description="the linear probe on source features, no alignment",
    kind=FEATURES,
    aligner=_aligner,
)
