"""``soup``: the average of several fine-tuned runs' weights (greedy or uniform)."""

from __future__ import annotations

from typing import Any

from transferkit.fusion.registry import FusionMethod


def _run(models: Any, options: dict[str, Any]) -> Any:
    from transferkit.fusion.soups import soup

    kind = options.pop("soup", "greedy")
    return soup(list(models or []), options.pop("val", None), method=kind, **options)


def _from_cli(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return values["models"], dict(val=values["val"], soup=values["soup"], **values["common"])


ENTRY = FusionMethod(
    name="soup",
    description="average of fine-tuned runs' weights (greedy or uniform)",
    space="weights",
    run=_run,
    from_cli=_from_cli,
)
