"""Classification metrics as plain, JSON-able dictionaries."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion matrix.

    ``y_true`` and ``y_pred`` are integer class indices ``(N,)`` into ``classes``; the confusion matrix has true
    classes as rows and predicted classes as columns.
    """
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "n": int(len(y_true)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
    }


def format_metrics(metrics: dict[str, Any], title: str = "") -> str:
    """A plain-text block: headline figures, per-class table, confusion matrix (a detector's: mAP and AP per class)."""
    if "map_50" in metrics:
        from transferkit.evaluation.detection_metrics import format_detection_metrics

        return format_detection_metrics(metrics, title)
    lines = [title] if title else []
    lines.append(f"accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   ({metrics['n']} examples)")
    calibration = metrics.get("calibration")
    if calibration:
        lines.append(f"calibration: ECE {calibration['ece']:.4f}   NLL {calibration['nll']:.4f}   "
                     f"mean confidence {calibration['mean_confidence']:.4f}")
    width = max(8, *(len(c) for c in metrics["classes"]))
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}")
    lines.append("confusion matrix (rows: true, columns: predicted)")
    for name, row in zip(metrics["classes"], metrics["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:5d}" for v in row))
    return "\n".join(lines)
