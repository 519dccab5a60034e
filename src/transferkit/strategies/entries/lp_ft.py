"""``lp-ft``: a linear probe first, then fine-tuning from its head, through the engine."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.entries._spaces import finetune_space
from transferkit.strategies.entries.finetune import FINETUNE_OPTIONS
from transferkit.strategies.options import TRAINING_OPTIONS
from transferkit.strategies.registry import Strategy


def _build(config: Any) -> Any:
    from transferkit.strategies.lp_ft import LinearProbeThenFineTune

    return LinearProbeThenFineTune(config.finetune, head_lr=config.head_lr)


def _default_lr() -> float:
    from transferkit.strategies.lp_ft import LinearProbeThenFineTune

    return LinearProbeThenFineTune.default_lr


ENTRY = Strategy(
    name="lp-ft",
    description="linear probe, then fine-tuning from the probe's head",
    trains_network=True,
    options=(*TRAINING_OPTIONS, "probe_c", *FINETUNE_OPTIONS, "finetune.keep_probe"),
    build=_build,
    default_lr=_default_lr,
    packages=("lightning",),
    search_space=finetune_space,
)
