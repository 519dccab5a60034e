"""The strategy registry: name -> :class:`Strategy`, the entry that says what a strategy needs and how it runs.

Callers ask the entry instead of comparing names: ``get_strategy(config.strategy).trains_network`` decides between
fit's probe path (frozen, cached features and a probe) and its engine path (:func:`build_strategy` then
:func:`~transferkit.strategies.run.train_with_strategy`). The registry is light: an entry imports torch and the
strategy's classes only when one of its hooks runs. Each built-in entry lives in its own module in
``strategies/entries/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from transferkit._registry import Registry
from transferkit.errors import ConfigError

if TYPE_CHECKING:
    from transferkit.strategies.base import TrainingStrategy


@dataclass(frozen=True)
class Strategy:
    """What a strategy declares: the options it uses, what it needs, and the hooks that run it."""

    name: str
    #: One line for listings and the docs.
    description: str
    #: True: trains a network through the engine (fit's engine path; ``--epochs``, ``--lr``, ... apply, the
    #: training extra is needed). False: the frozen backbone's cached features and a probe (fit's probe path).
    trains_network: bool
    #: The options (flat names, ``lora.rank``) that only some strategies use and this one does; the "options a
    #: strategy ignores" warning and tune's search-space check read them.
    options: tuple[str, ...] = ()
    #: config -> the engine's :class:`~transferkit.strategies.base.TrainingStrategy` (None: not built from a config).
    build: Callable[[Any], "TrainingStrategy"] | None = None
    #: The learning rate when the run gives none (a hook: it imports the strategy's class).
    default_lr: Callable[[], float] | None = None
    #: Optional libraries it needs beyond the base install.
    packages: tuple[str, ...] = ()
    #: Why the from-scratch baseline does not run by default beside it; None: it runs by default on small data.
    scratch_not_default: str | None = None
    #: A planner that chooses another strategy (``auto``): the choice is checked, run and saved, not this name.
    chooses_strategy: bool = False
    #: The command that runs it (``distill`` has its own verb; the others run through ``fit``).
    verb: str = "fit"
    #: (origin, **options) -> the run's config, for a strategy whose verb has its own config class (distill names
    #: its teachers); None: :func:`transferkit.config.make_config`.
    make_config: Callable[..., Any] | None = None
    #: Its head starts from random weights (the planner's rule on too few optimiser updates).
    new_head: bool = False
    #: Cost of one training step relative to full fine-tuning (the planner's epoch estimate).
    step_cost: float = 1.0
    #: tune's default search space: option -> {low, high, log} or {choices}.
    search_space: Callable[[], dict[str, Any]] = field(default=lambda: {})


_BUILTINS = tuple(f"transferkit.strategies.entries.{name}:ENTRY"
                  for name in ("linear_probe", "finetune", "lp_ft", "lora", "l2sp", "contrastive", "distill", "auto"))

REGISTRY: Registry[Strategy] = Registry("strategy", "strategy", plural="strategies", builtins=_BUILTINS)


def register_strategy(entry: Strategy) -> Strategy:
    """Add ``entry`` to the registry (a name registered twice is a programming error)."""
    return REGISTRY.register(entry)


def get_strategy(name: str) -> Strategy:
    """The entry named ``name``; a :class:`ConfigError` naming the option and the known strategies otherwise."""
    return REGISTRY.get(name)


def strategy_names() -> list[str]:
    """Every registered strategy, in registration order."""
    return REGISTRY.names()


def training_strategy_names() -> list[str]:
    """The strategies fit builds from a config and trains through the engine (finetune, lp-ft, lora, l2sp)."""
    return [entry.name for entry in REGISTRY.entries() if entry.build is not None]


def keeps_pretrained_backbone(name: str | None) -> bool:
    """True for a model made by a strategy that trains no network (its backbone is the pretrained one); False for
    other strategies and for names that are no strategy (adapted or fused models name their method)."""
    entry = REGISTRY.find(name)
    return entry is not None and not entry.trains_network


def option_users() -> dict[str, tuple[str, ...]]:
    """Options that only some strategies use -> those strategies, in registry order (options not listed apply to
    every strategy)."""
    users: dict[str, tuple[str, ...]] = {}
    for entry in REGISTRY.entries():
        for option in entry.options:
            users[option] = (*users.get(option, ()), entry.name)
    return users


def build_strategy(config: Any) -> "TrainingStrategy":
    """The strategy named by ``config.strategy`` (a :class:`~transferkit.config.FitConfig`), with its options."""
    entry = REGISTRY.find(config.strategy)
    if entry is None or entry.build is None:
        raise ConfigError(f"strategy '{config.strategy}' is not a training strategy; choose one of "
                          f"{', '.join(training_strategy_names())}.")
    return entry.build(config)
