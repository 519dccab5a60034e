"""Hyper-parameter search (Optuna) over the options of any strategy: :func:`~transferkit.tuning.search.tune`."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("tune", "TuneConfig", "TuneResult", "default_space"):
        from transferkit.tuning import search

        return getattr(search, name)
    raise AttributeError(f"module 'transferkit.tuning' has no attribute {name!r}")
