"""``ensemble``: the (weighted) average of several models' probabilities."""

from __future__ import annotations

from typing import Any

from transferkit.fusion.registry import FusionMethod


def _run(models: Any, options: dict[str, Any]) -> Any:
    from transferkit.fusion.ensembles import ensemble

    return ensemble(list(models or []), options.pop("val", None), **options)


def _from_cli(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return values["models"], dict(val=values["val"], weighting=values["weighting"], **values["common"])


ENTRY = FusionMethod(
    name="ensemble",
    description="average of several models' probabilities",
    space="outputs",
    run=_run,
    from_cli=_from_cli,
)
