"""Domain adaptation: labelled source data, unlabelled target data, and a model chosen without target labels.

- :mod:`~transferkit.strategies.adaptation.plan`: the trained methods (DAN, Deep CORAL, DANN, CDAN, MCC, entropy
  minimisation, self-training, instance-weighted fine-tuning) as one plan on the shared engine;
- :mod:`~transferkit.estimators.feature_alignment`: CORAL re-colouring and subspace alignment of cached
  features, then the linear probe (no training loop);
- :mod:`~transferkit.strategies.adaptation.instance_weights`: density-ratio weights, kernel mean matching, source
  selection;
- :mod:`~transferkit.strategies.adaptation.candidates`: the candidates a run tries (each method with each
  trade-off weight), trained or fitted and scored by every label-free validator.

The verb itself, :func:`transferkit.workflows.adapt.adapt` (it tries candidates and keeps the one a label-free
validator, :mod:`transferkit.evaluation.validators`, prefers, then saves and reports), lives in
:mod:`transferkit.workflows`, since it calls the reporting layer above the strategies.
"""

from __future__ import annotations

from transferkit._lazy import lazy_getattr
_LAZY = {
    "AdaptConfig": "transferkit.strategies.adaptation.config",
    "METHODS": "transferkit.strategies.adaptation.config",
    "CoralRecoloring": "transferkit.estimators.feature_alignment",
    "SubspaceAlignment": "transferkit.estimators.feature_alignment",
    "density_ratio_weights": "transferkit.strategies.adaptation.instance_weights",
    "kernel_mean_matching": "transferkit.strategies.adaptation.instance_weights",
    "source_selection": "transferkit.strategies.adaptation.instance_weights",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
