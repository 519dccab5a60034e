"""``auto``: a planner chooses linear-probe, lp-ft, finetune or lora from the data and the budget
(:mod:`transferkit.strategies.planner`); the chosen entry then runs."""

from __future__ import annotations

from transferkit.strategies.registry import Strategy

ENTRY = Strategy(
    name="auto",
    description="the planner chooses among linear-probe, lp-ft, finetune and lora, and explains why",
    trains_network=True,  # it may choose a training strategy, so it needs what training needs
    packages=("lightning",),
    chooses_strategy=True,
)
