"""Strategy names -> strategy objects built from a run's config."""

from __future__ import annotations

from typing import Any, Callable

from transferkit.errors import ConfigError
from transferkit.strategies.base import TrainingStrategy


def _finetune(config: Any) -> TrainingStrategy:
    from transferkit.strategies.finetune import FineTune

    return FineTune(config.finetune, head_lr=config.head_lr)


def _lp_ft(config: Any) -> TrainingStrategy:
    from transferkit.strategies.lp_ft import LinearProbeThenFineTune

    return LinearProbeThenFineTune(config.finetune, head_lr=config.head_lr)


def _lora(config: Any) -> TrainingStrategy:
    from transferkit.strategies.lora import LoRA

    return LoRA(config.lora, head_lr=config.head_lr)


def _l2sp(config: Any) -> TrainingStrategy:
    from transferkit.strategies.l2sp import L2SP

    return L2SP(config.l2sp, config.finetune, head_lr=config.head_lr)


TRAINING_STRATEGIES: dict[str, Callable[[Any], TrainingStrategy]] = {
    "finetune": _finetune,
    "lp-ft": _lp_ft,
    "lora": _lora,
    "l2sp": _l2sp,
}


def build_strategy(config: Any) -> TrainingStrategy:
    """The strategy named by ``config.strategy`` (a :class:`~transferkit.config.FitConfig`), with its options."""
    if config.strategy not in TRAINING_STRATEGIES:
        raise ConfigError(f"strategy '{config.strategy}' is not a training strategy; choose one of "
                          f"{', '.join(TRAINING_STRATEGIES)}.")
    return TRAINING_STRATEGIES[config.strategy](config)
