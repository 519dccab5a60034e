"""``fit --probe-views``: augmented views of the training examples as extra rows of the linear probe.

The modality names its fixed views (:attr:`~transferkit.modalities.base.Modality.probe_views`: for images a flip and
four corner crops, :mod:`transferkit.data.views`); each view's features go through the same extractor and feature
cache as the examples'. The probe's ``C`` is chosen as always on the examples alone (views of one image in
different cross-validation folds would flatter a weak penalty), then the probe is fitted again with that ``C`` on
the examples and all their views. ``auto`` uses the views for classification with at most
:data:`VIEWS_MAX_PER_CLASS` training examples per class (median), where they measured a gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from transferkit.errors import ConfigError

#: ``--probe-views auto`` uses the views up to this many training examples per class (median): on Fashion-MNIST
#: they gave +3.8 points at 8 per class, +2.4 at 16 and +0.5 at 32 (``benchmarks/few_shot_images.py``).
VIEWS_MAX_PER_CLASS = 20


@dataclass
class ProbeViews:
    """Whether the probe trains on views of the examples, which ones, and why."""

    views: list[str] = field(default_factory=list)
    reason: str = ""

    def facts(self) -> dict[str, Any]:
        return {"views": self.views, "reason": self.reason}


def plan_probe_views(config: Any, modality: Any, targets: Any) -> ProbeViews:
    """Before the backbone is built: the views the probe will use, given the training ``targets`` (the task's;
    ``--probe-views on`` where the data has none, or for a task without one class per example, is a ConfigError)."""
    if config.probe_views == "off":
        return ProbeViews([], "--probe-views off")
    if not modality.probe_views:
        _refuse_on(config, f"{modality.name} data has no augmented views (images have)")
        return ProbeViews([], f"{modality.name} data has no augmented views")
    y = np.asarray(targets)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) == 0:
        _refuse_on(config, "views are extra rows of a classification probe (one class per example)")
        return ProbeViews([], "the task has not one class per example")
    counts = np.bincount(y)
    median = float(np.median(counts[counts > 0]))
    if config.probe_views == "auto" and median > VIEWS_MAX_PER_CLASS:
        return ProbeViews([], f"{median:g} training examples per class (median), more than {VIEWS_MAX_PER_CLASS}")
    why = "--probe-views on" if config.probe_views == "on" else (
        f"{median:g} training examples per class (median), at most {VIEWS_MAX_PER_CLASS}")
    return ProbeViews(list(modality.probe_views), why)


def _refuse_on(config: Any, why: str) -> None:
    if config.probe_views == "on":
        raise ConfigError(f"--probe-views on: {why}; use --probe-views auto or off.")


def refit_on_views(plan: ProbeViews, probe: Any, train: Any, X_train: np.ndarray, y_train: np.ndarray,
                   features: Callable[[Any], np.ndarray]) -> Any:
    """The probe fitted again with its chosen ``C`` on the training rows and every view's rows; ``features(dataset)``
    gives a dataset's features (the run's extractor and cache)."""
    from sklearn.base import clone

    from transferkit.data.views import rows_with_views
    from transferkit.modalities import get_modality

    modality = get_modality(train.modality)
    view_features = [features(modality.view_dataset(train, view)) for view in plan.views]
    X, y = rows_with_views(X_train, y_train, view_features)
    refit = clone(probe).set_params(C=probe.C_).fit(X, y)  # the same kind of probe, with the C it chose
    refit.validation_scores_ = dict(probe.validation_scores_)  # how its C was chosen: on the examples alone
    return refit


__all__ = ["ProbeViews", "VIEWS_MAX_PER_CLASS", "plan_probe_views", "refit_on_views"]
