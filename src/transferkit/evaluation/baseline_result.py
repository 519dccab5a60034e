"""What a baseline run returns (:mod:`transferkit.evaluation.baselines`, :mod:`transferkit.evaluation.scratch`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BaselineResult:
    """A baseline's predictions on the test set: class indices ``(N,)`` and probabilities ``(N, classes)`` (both
    None on the processes of a distributed run other than the main one), with its facts in ``extra``."""

    name: str
    description: str
    predictions: np.ndarray
    probabilities: np.ndarray
    extra: dict
