"""Fusion of models: in weight space (interpolation between the pretrained and the fine-tuned model, model
soups), in output space (ensembles), and of features (stacking several backbones).

Every method returns a result whose ``model`` predicts like any transferkit model and, with ``output``, is saved
as a model folder that :func:`transferkit.load_model` reads. :func:`fuse` dispatches by method name (what the CLI
calls); the methods are also functions of their own.
"""

from __future__ import annotations

from typing import Any

from transferkit._lazy import lazy_getattr

METHODS = ("interpolate", "soup", "ensemble", "stack")

_LAZY = {
    "interpolate": "transferkit.fusion.interpolation",
    "interpolate_states": "transferkit.fusion.interpolation",
    "soup": "transferkit.fusion.soups",
    "ensemble": "transferkit.fusion.ensembles",
    "fit_ensemble_weights": "transferkit.fusion.ensembles",
    "stack": "transferkit.fusion.stacking",
    "backbones_from_ranking": "transferkit.fusion.stacking",
    "EnsembleModel": "transferkit.fusion.models",
    "StackedModel": "transferkit.fusion.models",
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
    from transferkit.errors import ConfigError

    if method not in METHODS:
        raise ConfigError(f"fuse: method must be one of {', '.join(METHODS)}; got {method!r}.")
    if method == "interpolate":
        from transferkit.fusion.interpolation import interpolate

        if isinstance(models, (list, tuple)):
            if len(models) != 1:
                raise ConfigError(f"fuse --method interpolate takes one fine-tuned model; got {len(models)}.")
            models = models[0]
        if models is None:
            raise ConfigError("fuse --method interpolate: give the fine-tuned model folder.")
        val = options.pop("val", None)
        return interpolate(models, val, **options)
    if method == "soup":
        from transferkit.fusion.soups import soup

        kind = options.pop("soup", "greedy")
        return soup(list(models or []), options.pop("val", None), method=kind, **options)
    if method == "ensemble":
        from transferkit.fusion.ensembles import ensemble

        return ensemble(list(models or []), options.pop("val", None), **options)
    from transferkit.fusion.stacking import stack

    train = options.pop("train", None)
    return stack(list(models) if models else None, train, options.pop("val", None), **options)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
