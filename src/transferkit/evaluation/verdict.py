"""Did transfer help? A paired comparison on the same test examples, decided by a confidence interval."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

HELPED, NO_DIFFERENCE, HURT = "helped", "no measurable difference", "hurt"


@dataclass(frozen=True)
class Comparison:
    """Accuracy of the transferred model minus a baseline's, on the same examples.

    ``ci_low`` / ``ci_high`` bound the difference with ``confidence`` (paired bootstrap over test examples).
    The verdict is ``helped`` when the whole interval is above zero, ``hurt`` when it is below, and
    ``no measurable difference`` otherwise: a single number never decides.
    """

    baseline: str
    model_accuracy: float
    baseline_accuracy: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)

    def sentence(self) -> str:
        points = 100 * self.difference
        interval = f"{100 * self.ci_low:+.1f} to {100 * self.ci_high:+.1f}"
        if self.verdict == HELPED:
            return f"transfer helped: {points:+.1f} points over the {self.baseline} baseline ({self.confidence:.0%} interval {interval})"
        if self.verdict == HURT:
            return f"transfer hurt (negative transfer): {points:+.1f} points against the {self.baseline} baseline ({self.confidence:.0%} interval {interval})"
        return f"no measurable difference from the {self.baseline} baseline: {points:+.1f} points ({self.confidence:.0%} interval {interval})"


def paired_bootstrap_interval(differences: np.ndarray, confidence: float = 0.95, n_boot: int = 5000,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired per-example ``differences`` ``(N,)`` (resampling
    examples with replacement, ``n_boot`` times)."""
    diff = np.asarray(differences, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(diff)
    boots = np.empty(n_boot)
    for start in range(0, n_boot, 500):
        stop = min(start + 500, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        boots[start:stop] = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return float(low), float(high)


def verdict_of(low: float, high: float) -> str:
    """``helped`` when the whole interval is above zero, ``hurt`` when below, else ``no measurable difference``."""
    return HELPED if low > 0 else HURT if high < 0 else NO_DIFFERENCE


def right_or_wrong(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """1.0 where the prediction is right, else 0.0 (their mean is the accuracy): the per-example score of
    single-label classification."""
    return (np.asarray(y_pred) == np.asarray(y_true)).astype(np.float64)


def compare(y_true: np.ndarray, model_pred: np.ndarray, baseline_pred: np.ndarray, baseline: str,
            confidence: float = 0.95, n_boot: int = 5000, seed: int = 0,
            scores: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> Comparison:
    """Paired bootstrap of the difference in a per-example score between two sets of predictions of the same
    examples. ``scores(y_true, y_pred)`` gives the ``(N,)`` scores whose mean is the measure compared (a task's
    ``per_example_scores``); by default 1 for a right prediction and 0 for a wrong one (accuracy)."""
    y_true, model_pred, baseline_pred = map(np.asarray, (y_true, model_pred, baseline_pred))
    if scores is None:
        scores = right_or_wrong
    model_correct = np.asarray(scores(y_true, model_pred), dtype=np.float64)
    base_correct = np.asarray(scores(y_true, baseline_pred), dtype=np.float64)
    diff = model_correct - base_correct
    low, high = paired_bootstrap_interval(diff, confidence, n_boot, seed)
    return Comparison(baseline, float(model_correct.mean()), float(base_correct.mean()), float(diff.mean()),
                      low, high, confidence, verdict_of(low, high))
