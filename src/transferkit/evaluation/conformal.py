"""Split-conformal prediction intervals for regression.

Split conformal prediction (Vovk, Gammerman and Shafer 2005; Lei, G'Sell, Rinaldo, Tibshirani and Wasserman 2018,
"Distribution-free predictive inference for regression", JASA): with ``n`` calibration examples that the model
was not fitted on and their absolute residuals ``r_i = |y_i - f(x_i)|``, the interval

    [f(x) - q, f(x) + q],   q = the ceil((n + 1) * level)-th smallest r_i

holds the target of a new example drawn like the calibration examples with probability at least ``level``
(and at most ``level + 1 / (n + 1)`` when the residuals have no ties). The guarantee is marginal (on average over
examples, not for each input) and needs ``n >= level / (1 - level)`` calibration examples (9 for 90 %); with fewer,
no finite ``q`` has it and no interval is given. The width is the same for every input (absolute residuals: no
model of the noise's size).

What transferkit calibrates on: the validation data when the run has some (for the linear probe it also chose the
ridge penalty, and for networks the epoch: a slight optimism, as for any choice made on the same examples), else
for the probe out-of-fold predictions of the training data (5 folds, the chosen penalty; the cross-conformal
form, whose coverage is close to but not exactly guaranteed at ``level``), else for networks the part of the
training data held out for early stopping. The test data is never used: the report sets its empirical coverage
beside the nominal level.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: How the intervals are made (recorded with them).
METHOD = "split conformal (absolute residuals)"


def conformal_half_width(residuals: np.ndarray, level: float) -> float | None:
    """``q`` of the module docstring from absolute residuals ``(n,)``; ``None`` when ``n`` is too small for
    ``level`` (``ceil((n + 1) level) > n``)."""
    r = np.sort(np.abs(np.asarray(residuals, dtype=np.float64).reshape(-1)))
    rank = math.ceil((len(r) + 1) * level)
    if not 0 < level < 1 or rank > len(r):
        return None
    return float(r[rank - 1])


def minimum_calibration_examples(level: float) -> int:
    """The fewest calibration examples that give a finite interval at ``level``."""
    return math.ceil(level / (1.0 - level) - 1e-9)


def split_conformal_interval(y_true: np.ndarray, predicted: np.ndarray, level: float, *,
                             calibrated_on: str) -> dict[str, Any] | None:
    """The interval a model carries: ``{"method", "level", "half_width", "calibration_examples",
    "calibrated_on"}`` from targets and predictions ``(n,)`` of calibration examples; ``None`` (with a warning)
    when they are too few for ``level``."""
    import warnings

    residuals = np.asarray(y_true, dtype=np.float64).reshape(-1) - np.asarray(predicted, dtype=np.float64).reshape(-1)
    half_width = conformal_half_width(residuals, level)
    if half_width is None:
        warnings.warn(f"prediction intervals: {len(residuals)} calibration examples ({calibrated_on}) are too few for "
                      f"a {level:.0%} split-conformal interval (it needs at least "
                      f"{minimum_calibration_examples(level)}); no interval is given. Give more validation data "
                      "(--val) or a lower --interval.", UserWarning, stacklevel=3)
        return None
    return {"method": METHOD, "level": float(level), "half_width": half_width,
            "calibration_examples": int(len(residuals)), "calibrated_on": calibrated_on}


def interval_bounds(values: np.ndarray, interval: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of predicted ``values`` ``(N,)``."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    return values - interval["half_width"], values + interval["half_width"]


def interval_coverage(interval: dict[str, Any], y_true: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """The interval's figures on held-out data: nominal ``level``, empirical ``coverage`` (the share of targets
    inside ``[low, high]``) with a 95 % Wilson interval, ``width`` (``2 q``, in the target's units) and ``n``."""
    low, high = interval_bounds(predicted, interval)
    y = np.asarray(y_true, dtype=np.float64).reshape(-1)
    n = len(y)
    inside = int(np.sum((y >= low) & (y <= high)))
    coverage = inside / n if n else float("nan")
    z = 1.959963984540054
    centre = (inside + z * z / 2) / (n + z * z) if n else float("nan")
    spread = z * math.sqrt(coverage * (1 - coverage) / n + z * z / (4 * n * n)) / (1 + z * z / n) if n else 0.0
    return {"level": interval["level"], "coverage": coverage, "coverage_ci": [max(0.0, centre - spread),
                                                                           min(1.0, centre + spread)],
            "width": 2 * interval["half_width"], "n": n, "method": interval["method"]}
