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
from transferkit.fusion.options import FuseConfig
from transferkit.fusion.registry import fusion_method_names, get_fusion_method
from transferkit.options import DataOptions


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


def fuse_from_command(models: list[str] | None, config: FuseConfig) -> Any:
    """Run the method of ``config`` (a :class:`~transferkit.fusion.options.FuseConfig`, the ``fuse`` command's
    options) on the model folders ``models``: the method's entry picks the models and the options it uses (an
    error for a value that cannot work with it)."""
    names = fusion_method_names()
    if config.method not in names:
        raise ConfigError(f"--method must be one of {', '.join(names)}; got {config.method!r}.")
    entry = get_fusion_method(config.method)
    columns = {name: getattr(config, name) for name in DataOptions.model_fields}
    common = dict(output=config.output, overwrite=config.overwrite, batch_size=config.batch_size,
                  device=config.device, **columns)
    values = dict(models=models, val=config.val, train=config.train, pretrained=config.pretrained, soup=config.soup,
                  weighting=config.weighting, backbones=config.backbones, ranking=config.from_rank, top=config.top,
                  reduce=config.reduce, seed=config.seed, task=config.task,
                  alphas=lambda: _alphas(config.alphas),  # parsed by the methods that take them
                  eval_sets={"test": config.test} if config.test else None, common=common)
    chosen, options = entry.from_cli(values)
    return entry.run(chosen, dict(options))


def _alphas(parts: list[str] | None) -> list[float] | None:
    """``["0", "0.5", "1"]`` -> ``[0.0, 0.5, 1.0]``; anything that is not a number is an error naming --alphas."""
    if not parts:
        return None
    values = []
    for part in parts:
        try:
            values.append(float(part))
        except ValueError:
            raise ConfigError(f"--alphas: {part!r} is not a number; give comma-separated numbers in [0, 1], e.g. "
                              "0,0.25,0.5,0.75,1.") from None
    return values
