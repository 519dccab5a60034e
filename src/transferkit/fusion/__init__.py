"""Fusion of models: in weight space (interpolation between the pretrained and the fine-tuned model, model
soups), in output space (ensembles), and of features (stacking several backbones).

Every method returns a result whose ``model`` predicts like any transferkit model and, with ``output``, is saved
as a model folder that :func:`transferkit.load_model` reads. :func:`fuse` dispatches by method name (what the CLI
calls) through the fusion-method registry (:mod:`transferkit.fusion.registry`); the methods are also functions of
their own.
"""

from __future__ import annotations

from typing import Any

from transferkit._lazy import lazy_getattr
from transferkit.fusion.registry import fusion_method_names, get_fusion_method

METHODS = tuple(fusion_method_names())

_LAZY = {
    "interpolate": "transferkit.fusion.interpolation",
    "interpolate_states": "transferkit.fusion.interpolation",
    "soup": "transferkit.fusion.soups",
    "ensemble": "transferkit.fusion.ensembles",
    "fit_ensemble_weights": "transferkit.fusion.ensembles",
    "stack": "transferkit.fusion.stacking",
    "backbones_from_ranking": "transferkit.fusion.stacking",
    "EnsembleModel": "transferkit.models.combined",
    "StackedModel": "transferkit.models.combined",
}

__all__ = ["METHODS", "fuse", *_LAZY]


def fuse(method: str, models: Any = None, **options: Any) -> Any:
    """Run fusion ``method``:

    - ``interpolate``: ``models`` is the fine-tuned model (one folder); options of
      :func:`~transferkit.fusion.interpolation.interpolate` (``val``, ``train`` or ``pretrained``, ``alphas``, ...);
    - ``soup``: ``models`` are several fine-tuned folders; options of :func:`~transferkit.fusion.soups.soup`
      (``val``, ``method="greedy"|"uniform"`` given as ``soup``);
    - ``ensemble``: ``models`` are several folders; options of :func:`~transferkit.fusion.ensembles.ensemble`;
    - ``stack``: ``models`` are backbone names (or give ``ranking``); options of :func:`~transferkit.fusion.stacking.stack`.
    """
    return get_fusion_method(method).run(models, dict(options))


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
