"""``interpolate``: weights between the pretrained and the fine-tuned model, alpha chosen on validation data."""

from __future__ import annotations

from typing import Any

from transferkit.errors import ConfigError
from transferkit.fusion.registry import FusionMethod


def _run(models: Any, options: dict[str, Any]) -> Any:
    from transferkit.fusion.interpolation import interpolate

    if isinstance(models, (list, tuple)):
        if len(models) != 1:
            raise ConfigError(f"fuse --method interpolate takes one fine-tuned model; got {len(models)}.")
        models = models[0]
    if models is None:
        raise ConfigError("fuse --method interpolate: give the fine-tuned model folder.")
    val = options.pop("val", None)
    return interpolate(models, val, **options)


def _from_cli(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return values["models"], dict(val=values["val"], train=values["train"], pretrained=values["pretrained"],
                                  alphas=values["alphas"](), eval_sets=values["eval_sets"], seed=values["seed"],
                                  **values["common"])


ENTRY = FusionMethod(
    name="interpolate",
    description="pretrained <-> fine-tuned weights, alpha chosen on validation data",
    space="weights",
    run=_run,
    from_cli=_from_cli,
)
