"""Fusion of models: in weight space (interpolation between the pretrained and the fine-tuned model, model
soups), in output space (ensembles), and of features (stacking several backbones).

Every method returns a result whose ``model`` predicts like any transferkit model and, with ``output``, is saved
as a model folder that :func:`transferkit.load_model` reads. The verb, :func:`transferkit.workflows.fuse.fuse`,
dispatches by method name through the fusion-method registry (:mod:`transferkit.fusion.registry`); the methods
are also functions of their own.
"""

from __future__ import annotations

from transferkit._lazy import lazy_getattr
from transferkit.fusion.registry import fusion_method_names

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

__all__ = ["METHODS", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
