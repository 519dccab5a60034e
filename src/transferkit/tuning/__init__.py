"""Hyper-parameter search (Optuna) over the options of any strategy: the verb is
:func:`~transferkit.workflows.tune.tune`, its building blocks are in :mod:`transferkit.tuning.search`."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "tune":
        from transferkit.workflows.tune import tune

        return tune
    if name in ("TuneConfig", "TuneResult", "default_space"):
        from transferkit.tuning import search

        return getattr(search, name)
    raise AttributeError(f"module 'transferkit.tuning' has no attribute {name!r}")
