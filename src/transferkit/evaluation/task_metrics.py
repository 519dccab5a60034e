"""Metrics of regression and multi-label classification, with bootstrap intervals over test examples.

Regression: ``y_true`` and ``y_pred`` are values ``(N,)`` in the target's units. Multi-label: ``y_true`` and
``y_pred`` are 0/1 matrices ``(N, labels)``, ``proba`` the per-label probabilities ``(N, labels)``.
Each metric's interval is a 95 % percentile bootstrap over test examples (resampled with replacement); the paired
interval against a baseline is the verdict's (:mod:`transferkit.evaluation.verdict`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

#: Resamples of the per-metric intervals (the verdict's paired interval uses its own, larger number).
N_BOOT = 1000


def bootstrap_intervals(figures: Callable[[np.ndarray], dict[str, float | None]], n: int, names: Sequence[str], *,
                        confidence: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, list[float] | None]:
    """Percentile interval of each figure ``names`` of ``figures(indices)`` over ``n_boot`` resamples of ``n``
    examples (one call per resample); None for a figure undefined on most resamples (or when ``n < 2``)."""
    if n < 2:
        return {name: None for name in names}
    rng = np.random.default_rng(seed)
    samples = [figures(rng.integers(0, n, size=n)) for _ in range(n_boot)]
    alpha = (1 - confidence) / 2
    out: dict[str, list[float] | None] = {}
    for name in names:
        values = np.asarray([v for v in (s[name] for s in samples) if v is not None and np.isfinite(v)])
        out[name] = None if len(values) < n_boot / 2 else [float(q) for q in np.quantile(values, [alpha, 1 - alpha])]
    return out


# --------------------------------------------------------------------------------------------------- regression

def target_variance(y_true: np.ndarray) -> float:
    """The test targets' (population) variance, the denominator of R²; 1 when they are constant (R² undefined)."""
    variance = float(np.var(np.asarray(y_true, dtype=np.float64)))
    return variance if variance > 0 else 1.0


def r2_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``1 - (y_pred - y_true)² / Var(y_true)`` per example ``(N,)``: their mean is R² (the verdict's unit)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    errors = np.asarray(y_pred, dtype=np.float64).reshape(len(y_true)) - y_true
    return 1.0 - errors ** 2 / target_variance(y_true)


def _spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Spearman's rank correlation (Pearson's of the ranks, ties at their mean rank)."""
    from scipy.stats import rankdata

    if np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return None  # undefined for a constant prediction or target
    a, b = rankdata(y_true), rankdata(y_pred)
    a, b = a - a.mean(), b - b.mean()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """MAE, RMSE, R² and Spearman's rank correlation of predictions ``(N,)``, each with a bootstrap interval
    (``intervals``); the target's mean and deviation for scale."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_true))
    errors = y_pred - y_true

    def figures(index: np.ndarray) -> dict[str, float | None]:
        t, p, e = y_true[index], y_pred[index], errors[index]
        return {"mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e ** 2))),
                "r2": float(np.mean(r2_scores(t, p))), "spearman": _spearman(t, p)}

    everything = np.arange(len(y_true))
    out: dict[str, Any] = figures(everything)
    out["intervals"] = bootstrap_intervals(figures, len(y_true), ("mae", "rmse", "r2", "spearman"), seed=seed)
    out.update(n=int(len(y_true)), target_mean=float(y_true.mean()), target_std=float(y_true.std()))
    return out


# --------------------------------------------------------------------------------------------------- multi-label

def example_f1_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F1 of each example's predicted label set against its true set ``(N,)`` (1 when both are empty): their
    mean is the example-based F1 (the verdict's unit)."""
    y_true = np.asarray(y_true) > 0
    y_pred = np.asarray(y_pred) > 0
    both = (y_true & y_pred).sum(axis=1)
    sizes = y_true.sum(axis=1) + y_pred.sum(axis=1)
    return np.where(sizes == 0, 1.0, 2.0 * both / np.maximum(sizes, 1))


def _f1s(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    tp = (y_true & y_pred).sum(axis=0).astype(np.float64)
    fp = (~y_true & y_pred).sum(axis=0).astype(np.float64)
    fn = (y_true & ~y_pred).sum(axis=0).astype(np.float64)
    denominators = 2 * tp + fp + fn
    seen = denominators > 0  # labels neither present nor predicted have no F1; macro-F1 averages the others
    macro = float(np.mean(2 * tp[seen] / denominators[seen])) if seen.any() else 1.0
    micro_den = denominators.sum()
    return {"micro_f1": float(2 * tp.sum() / micro_den) if micro_den else 1.0,
            "macro_f1": macro,
            "example_f1": float(example_f1_scores(y_true, y_pred).mean())}


def average_precision(truth: np.ndarray, score: np.ndarray) -> float:
    """Average precision of one label: ``sum_n (R_n - R_(n-1)) P_n`` over the distinct score thresholds (ties
    form one threshold), as scikit-learn's ``average_precision_score`` defines it; ``truth`` has a positive."""
    order = np.argsort(-score, kind="mergesort")
    ranked, hits = score[order], np.asarray(truth, dtype=np.float64)[order]
    last_of_ties = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.cumsum(hits)[last_of_ties]
    precision = tp / (last_of_ties + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _mean_average_precision(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    present = y_true.any(axis=0)
    if not present.any():
        return None
    return float(np.mean([average_precision(y_true[:, j], proba[:, j]) for j in np.flatnonzero(present)]))


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_space: Sequence[str],
                       proba: np.ndarray | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Micro-, macro- and example-based F1, subset accuracy and Hamming loss of 0/1 predictions ``(N, labels)``,
    mean average precision (mAP, over labels present in ``y_true``) when ``proba`` is given, per-label precision /
    recall / F1 / AP / support, and bootstrap intervals of the F1s and mAP (``intervals``)."""
    y_true = np.asarray(y_true) > 0
    y_pred = np.asarray(y_pred) > 0
    out: dict[str, Any] = _f1s(y_true, y_pred)
    out["subset_accuracy"] = float((y_true == y_pred).all(axis=1).mean())
    out["hamming_loss"] = float((y_true != y_pred).mean())
    names = ["micro_f1", "macro_f1", "example_f1"]
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        out["map"] = _mean_average_precision(y_true, proba)
        names.append("map")
    def figures(index: np.ndarray) -> dict[str, float | None]:
        sample = _f1s(y_true[index], y_pred[index])
        if proba is not None:
            sample["map"] = _mean_average_precision(y_true[index], proba[index])
        return sample

    out["intervals"] = bootstrap_intervals(figures, len(y_true), names, seed=seed)
    per_label = {}
    for j, label in enumerate(label_space):
        tp = int((y_true[:, j] & y_pred[:, j]).sum())
        predicted, support = int(y_pred[:, j].sum()), int(y_true[:, j].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        denominator = predicted + support
        entry = {"precision": precision, "recall": recall, "f1": 2 * tp / denominator if denominator else None,
                 "support": support}
        if proba is not None:
            entry["average_precision"] = average_precision(y_true[:, j], proba[:, j]) if support else None
        per_label[str(label)] = entry
    out["per_label"] = per_label
    out["n"] = int(len(y_true))
    return out
