"""Is an explanation faithful to the model? Deletion and insertion curves against random orders.

Deletion (Petsiuk et al. 2018, RISE): remove the input's units (cells, words) most-attributed first, in ``STEPS``
equal steps, and follow the predicted probability of the target; a faithful explanation makes it fall fast, so the
area under the curve (the mean over the steps, from 0 to 1) is small. Insertion starts from the input with every unit
removed and puts them back most-attributed first; a faithful explanation makes the area large. Both are compared with
the same curves for random orders of the same units: per input, ``gain`` is the random orders' mean deletion area
minus the method's (positive: better than random). Over several inputs the interval of the mean gain is a bootstrap
over inputs; for one input, over its random orders. A method whose interval does not lie above 0 is flagged as no
better than random.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: Points of each curve after the first (the whole input): removal in steps of 1/STEPS of the units.
STEPS = 20
#: Bootstrap resamples of the interval.
RESAMPLES = 2000


def _order_masks(order: np.ndarray, counts: np.ndarray, insertion: bool) -> np.ndarray:
    """``(len(counts), U)`` masks: True where a unit is removed after the first ``k`` of ``order`` went (deletion)
    or came back (insertion)."""
    units = len(order)
    rank = np.empty(units, dtype=np.int64)
    rank[order] = np.arange(units)
    first_k = rank[None, :] < counts[:, None]
    return ~first_k if insertion else first_k


def curve(predict: Any, remove: Any, order: np.ndarray, target: int, insertion: bool, batch_size: int) -> np.ndarray:
    """The target's probability at each of ``STEPS + 1`` points of the deletion (or insertion) curve."""
    units = len(order)
    counts = np.unique(np.round(np.linspace(0, units, min(STEPS, units) + 1)).astype(np.int64))
    masks = _order_masks(order, counts, insertion)
    values = []
    for start in range(0, len(masks), batch_size):
        values.append(predict(remove(masks[start:start + batch_size]))[:, target])
    return np.concatenate(values)


def area(values: np.ndarray) -> float:
    """Area under a curve sampled at equal steps of the removed part, from 0 to 1 (trapezoids)."""
    if len(values) < 2:
        return float(values[0]) if len(values) else float("nan")
    return float(np.trapezoid(values, dx=1.0 / (len(values) - 1)))


def measure(predict: Any, units: Any, target: int, *, random_orders: int, seed: int, batch_size: int) -> dict[str, Any]:
    """One input's deletion and insertion areas for the attribution's order and for ``random_orders`` random ones."""
    rng = np.random.default_rng(seed)
    count = len(units.scores)
    if count < 2:
        return {"units": count, "deletion": None, "insertion": None, "random_deletion": [], "random_insertion": []}
    shuffled = rng.permutation(count)  # ties (a flat map) in random order, not in reading order
    order = shuffled[np.argsort(-units.scores[shuffled], kind="stable")]
    randoms = [rng.permutation(count) for _ in range(random_orders)]
    result: dict[str, Any] = {"units": count}
    for name, insertion in (("deletion", False), ("insertion", True)):
        result[name] = area(curve(predict, units.remove, order, target, insertion, batch_size))
        result[f"random_{name}"] = [area(curve(predict, units.remove, r, target, insertion, batch_size))
                                    for r in randoms]
    return result


def _interval(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    means = values[rng.integers(0, len(values), size=(RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def summarise(measures: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The method's mean areas over inputs and the gains over random with 95 % bootstrap intervals; ``verdict`` is
    ``better than random`` when the deletion gain's interval lies above 0, else ``no better than random``."""
    rng = np.random.default_rng(seed)
    usable = [m for m in measures if m.get("deletion") is not None]
    if not usable:
        return {"inputs": 0, "verdict": "not measured (inputs with fewer than 2 parts)"}
    out: dict[str, Any] = {"inputs": len(usable)}
    for name, sign in (("deletion", 1.0), ("insertion", -1.0)):
        method = np.array([m[name] for m in usable])
        random = np.array([np.mean(m[f"random_{name}"]) for m in usable])
        gains = sign * (random - method)
        if len(usable) == 1:  # one input: the spread over its random orders
            gains = sign * (np.asarray(usable[0][f"random_{name}"]) - method[0])
        low, high = _interval(gains, rng)
        out[name] = {"area": float(method.mean()), "random_area": float(random.mean()),
                     "gain": float(gains.mean()), "interval": [low, high]}
    out["better_than_random"] = bool(out["deletion"]["interval"][0] > 0)
    out["verdict"] = "better than random" if out["better_than_random"] else "no better than random"
    return out
