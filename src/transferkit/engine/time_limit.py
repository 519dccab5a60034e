"""A wall-clock limit on a training run (``fit --strategy auto --budget``): Lightning's ``Timer`` callback, which
ends training cleanly at the end of the step where the time runs out (the best checkpoint so far is kept)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any


def time_limit(seconds: float) -> Any:
    """A callback for :func:`~transferkit.engine.trainer.run_training` that stops training after ``seconds``."""
    from lightning.pytorch.callbacks import Timer

    return Timer(duration=timedelta(seconds=max(float(seconds), 1.0)), interval="step")
