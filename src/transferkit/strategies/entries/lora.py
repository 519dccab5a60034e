"""``lora``: low-rank adapters on the backbone, the head trained fully, through the engine."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.entries._spaces import common_space
from transferkit.strategies.options import TRAINING_OPTIONS, LoraConfig
from transferkit.strategies.registry import Strategy


def _build(config: Any) -> Any:
    from transferkit.strategies.lora import LoRA

    return LoRA(config.lora, head_lr=config.head_lr)


def _default_lr() -> float:
    from transferkit.strategies.lora import LoRA

    return LoRA.default_lr


ENTRY = Strategy(
    name="lora",
    description="low-rank adapters, merged into the weights when saved",
    trains_network=True,
    options=(*TRAINING_OPTIONS, *(f"lora.{name}" for name in LoraConfig.model_fields)),
    build=_build,
    default_lr=_default_lr,
    packages=("lightning", "peft"),
    new_head=True,
    step_cost=1.0,  # costed as full fine-tuning's step (an upper bound: the backward pass still runs through the base)
    search_space=lambda: {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "lora.rank": {"choices": [4, 8, 16]},
                          "lora.alpha": {"choices": [8.0, 16.0, 32.0]}, **common_space()},
)
