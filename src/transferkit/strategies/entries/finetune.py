"""``finetune``: full or partial fine-tuning of the backbone with a new head, through the engine."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.entries._spaces import finetune_space
from transferkit.strategies.options import TRAINING_OPTIONS, FineTuneConfig
from transferkit.strategies.registry import Strategy

#: The fine-tuning options every strategy built on FineTune reads (keep_probe is lp-ft's alone).
FINETUNE_OPTIONS = tuple(f"finetune.{name}" for name in FineTuneConfig.model_fields if name != "keep_probe")


def _build(config: Any) -> Any:
    from transferkit.strategies.finetune import FineTune

    return FineTune(config.finetune, head_lr=config.head_lr)


def _default_lr() -> float:
    from transferkit.strategies.finetune import FineTune

    return FineTune.default_lr


ENTRY = Strategy(
    name="finetune",
    description="full or partial fine-tuning from a new head",
    trains_network=True,
    options=(*TRAINING_OPTIONS, *FINETUNE_OPTIONS),
    build=_build,
    default_lr=_default_lr,
    packages=("lightning",),
    new_head=True,
    search_space=finetune_space,
)
