"""``stack``: several backbones' features concatenated, then a linear probe."""

from __future__ import annotations

from typing import Any

from transferkit.errors import ConfigError
from transferkit.fusion.registry import FusionMethod


def _run(models: Any, options: dict[str, Any]) -> Any:
    from transferkit.fusion.stacking import stack

    train = options.pop("train", None)
    return stack(list(models) if models else None, train, options.pop("val", None), **options)


def _from_cli(values: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    if values["models"]:
        raise ConfigError("fuse --method stack takes backbones (--backbones or --from-rank), not model folders.")
    return values["backbones"], dict(train=values["train"], val=values["val"], ranking=values["ranking"],
                                     top=values["top"], reduce=values["reduce"], eval_sets=values["eval_sets"],
                                     seed=values["seed"], task=values.get("task"), **values["common"])


ENTRY = FusionMethod(
    name="stack",
    description="several backbones' features concatenated, then a linear probe",
    space="features",
    run=_run,
    from_cli=_from_cli,
)
