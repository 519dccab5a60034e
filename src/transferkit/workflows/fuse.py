"""``fuse``: models combined in weight space (interpolation, soups), output space (ensembles) or feature space
(stacking several backbones).

The steps: find the method in the fusion-method registry (an unknown name is an error naming ``--method`` and the
known methods), then run it. Each method is an entry of :mod:`transferkit.fusion.registry` whose module lives in
``fusion/methods/``; the methods' building blocks are in :mod:`transferkit.fusion`. Every method returns a result
whose ``model`` predicts like any transferkit model and, with ``output``, is saved as a model folder.
"""

from __future__ import annotations

from typing import Any

from transferkit.errors import ConfigError
from transferkit.fusion.registry import fusion_method_names, get_fusion_method


def fuse(method: str, models: Any = None, **options: Any) -> Any:
    """Run fusion ``method``:

    - ``interpolate``: ``models`` is the fine-tuned model (one folder); options of
      :func:`~transferkit.fusion.interpolation.interpolate` (``val``, ``train`` or ``pretrained``, ``alphas``, ...);
    - ``soup``: ``models`` are several fine-tuned folders; options of :func:`~transferkit.fusion.soups.soup`
      (``val``, ``method="greedy"|"uniform"`` given as ``soup``);
    - ``ensemble``: ``models`` are several folders; options of :func:`~transferkit.fusion.ensembles.ensemble`;
    - ``stack``: ``models`` are backbone names (or give ``ranking``); options of :func:`~transferkit.fusion.stacking.stack`.
    """
    entry = get_fusion_method(method)
    return entry.run(models, dict(options))


def fuse_from_command(method: str, values: dict[str, Any]) -> Any:
    """Run fusion ``method`` from the ``fuse`` command's values: the method's entry picks the models and the
    options it uses (an error for a value that cannot work with it)."""
    if method not in fusion_method_names():
        raise ConfigError(f"--method must be one of {', '.join(fusion_method_names())}; got {method!r}.")
    entry = get_fusion_method(method)
    models, options = entry.from_cli(values)
    return entry.run(models, dict(options))
