"""``distill``: a student trained on its teachers' outputs (the ``distill`` verb; its config names the teachers)."""

from __future__ import annotations

from typing import Any

from transferkit.strategies.entries._spaces import common_space
from transferkit.strategies.entries.finetune import FINETUNE_OPTIONS
from transferkit.strategies.options import TRAINING_OPTIONS
from transferkit.strategies.registry import Strategy


def _make_config(origin: str = "options", **values: Any) -> Any:
    from transferkit.strategies.distill_setup import make_distill_config

    return make_distill_config(origin, **values)


def _default_lr() -> float:
    from transferkit.strategies.distill import Distill

    return Distill.default_lr


ENTRY = Strategy(
    name="distill",
    description="knowledge distillation from teacher models into a student backbone",
    trains_network=True,
    options=(*TRAINING_OPTIONS, *FINETUNE_OPTIONS),
    default_lr=_default_lr,
    packages=("lightning",),
    verb="distill",
    make_config=_make_config,
    new_head=True,
    search_space=lambda: {"distill.temperature": {"low": 1.0, "high": 8.0, "log": True},
                          "distill.alpha": {"low": 0.3, "high": 1.0}, "lr": {"low": 1e-5, "high": 1e-3, "log": True},
                          "weight_decay": common_space()["weight_decay"]},
)
