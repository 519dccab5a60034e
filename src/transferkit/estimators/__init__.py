"""Building blocks that fit on arrays of features: scikit-learn estimators with ``fit`` / ``predict`` /
``transform``, so that ``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` work with them.

- :mod:`~transferkit.estimators.linear_probe`: :class:`LinearProbe`, the logistic-regression probe on frozen
  features (its C chosen by cross-validation), which turns into a :class:`~transferkit.models.heads.LinearHead`;
- :mod:`~transferkit.estimators.task_probes`: :class:`RidgeProbe` (regression) and :class:`MultiLabelProbe`
  (one-vs-rest with per-label thresholds), the probes of the other tasks;
- :mod:`~transferkit.estimators.feature_alignment`: CORAL re-colouring and subspace alignment of source features
  to a target domain (transformers), and the no-alignment reference.

This package is low in the layers: ``evaluation/``, ``selection/``, ``fusion/``, ``tasks/`` and ``strategies/`` use
it; it imports none of them (only :mod:`transferkit.errors`, and :mod:`transferkit.models.heads` for a probe's head).
scikit-learn loads when a name below is first used.
"""

from __future__ import annotations

from transferkit._lazy import lazy_getattr

_LAZY = {
    "LinearProbe": "transferkit.estimators.linear_probe",
    "RidgeProbe": "transferkit.estimators.task_probes",
    "MultiLabelProbe": "transferkit.estimators.task_probes",
    "CoralRecoloring": "transferkit.estimators.feature_alignment",
    "SubspaceAlignment": "transferkit.estimators.feature_alignment",
    "NoAlignment": "transferkit.estimators.feature_alignment",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
