"""Checks, before any work, that the optional libraries a training strategy needs are installed."""

from __future__ import annotations

import importlib.util

from transferkit.errors import ConfigError

#: What trains a network without being a strategy (the from-scratch baseline, adapt, multitask) needs this.
TRAINING_PACKAGES = ("lightning",)


def check_training_installed(what: str) -> None:
    """Raise :class:`ConfigError` naming the missing package when ``what`` (a strategy, whose entry lists the
    packages it needs, or another thing that trains a network) cannot run here."""
    from transferkit.strategies.registry import get_strategy, strategy_names

    packages = get_strategy(what).packages if what in strategy_names() else TRAINING_PACKAGES
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"{what} needs the '{package}' package, which is not installed; install the training "
                              "extra: pip install 'transferkit[train]'.")
