"""Checks, before any work, that the optional libraries a training strategy needs are installed."""

from __future__ import annotations

import importlib.util

from transferkit.errors import ConfigError

_NEEDS = {"lora": ("lightning", "peft")}


def check_training_installed(what: str) -> None:
    """Raise :class:`ConfigError` naming the missing package when ``what`` (a strategy) cannot run here."""
    for package in _NEEDS.get(what, ("lightning",)):
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"{what} needs the '{package}' package, which is not installed; install the training "
                              "extra: pip install 'transferkit[train]'.")
