"""Detection metrics: COCO mean average precision through torchmetrics (pycocotools evaluation), per-class AP,
and a bootstrap over images of the difference in mAP@0.5 between two detectors.

Inputs are per image: predictions ``{"boxes": (n, 4) xyxy pixels, "labels": (n,), "scores": (n,)}`` (numpy or
torch) and truths ``{"boxes": (m, 4), "labels": (m,)}``. AP is computed by the COCO evaluation (101-point
interpolated precision, greedy matching by score), never here.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from transferkit.evaluation.verdict import Comparison, verdict_of


def _tensors(items: Sequence[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    import torch

    out = []
    for item in items:
        entry = {k: torch.as_tensor(np.asarray(item[k])) for k in keys}
        entry["boxes"] = entry["boxes"].float().reshape(-1, 4)
        entry["labels"] = entry["labels"].long()
        if "scores" in entry:
            entry["scores"] = entry["scores"].float()
        out.append(entry)
    return out


def _mean_average_precision(predictions: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]],
                            **options: Any) -> dict[str, Any]:
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools", **options)
    metric.update(_tensors(predictions, ("boxes", "labels", "scores")), _tensors(truths, ("boxes", "labels")))
    return metric.compute()


def _number(value: Any) -> float | None:
    """A COCO figure, ``None`` where it is undefined (-1: no box of that kind in the truths)."""
    value = float(value)
    return None if value < 0 else value


def detection_metrics(predictions: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]],
                      classes: Sequence[str]) -> dict[str, Any]:
    """``map_50`` (mAP at IoU 0.5), ``map`` (mean over IoU 0.5:0.95), ``map_75``, ``mar_100`` (recall with 100
    detections per image) and ``per_class`` (``{class: {"ap_50": ..., "ap": ..., "boxes": n}}``), all 0..1;
    a class without any true box has ``None``."""
    overall = _mean_average_precision(predictions, truths, class_metrics=True)
    at_50 = _mean_average_precision(predictions, truths, iou_thresholds=[0.5], class_metrics=True)
    counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *[np.asarray(t["labels"], np.int64)
                                                                   for t in truths]]), minlength=len(classes))

    def per_class(result: dict[str, Any]) -> dict[int, float | None]:
        ids = np.atleast_1d(result["classes"].numpy()).tolist()
        values = np.atleast_1d(result["map_per_class"].numpy()).tolist()
        return {int(i): _number(v) for i, v in zip(ids, values)}

    ap, ap_50 = per_class(overall), per_class(at_50)
    return {
        "map_50": _number(overall["map_50"]), "map": _number(overall["map"]), "map_75": _number(overall["map_75"]),
        "mar_100": _number(overall["mar_100"]), "images": len(truths), "boxes": int(counts.sum()),
        "per_class": {name: {"ap_50": ap_50.get(i), "ap": ap.get(i), "boxes": int(counts[i])}
                      for i, name in enumerate(classes)},
    }


def map50(predictions: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]]) -> float:
    """mAP at IoU 0.5 alone (0 when undefined)."""
    return _number(_mean_average_precision(predictions, truths, iou_thresholds=[0.5])["map"]) or 0.0


def compare_detectors(model: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]],
                      truths: Sequence[dict[str, Any]], baseline_name: str, *, n_boot: int = 200,
                      confidence: float = 0.95, seed: int = 0) -> Comparison:
    """mAP@0.5 of ``model`` minus ``baseline``'s on the same images, with a percentile bootstrap interval over
    images (both detectors scored on the same resample, ``n_boot`` times); the verdict as for classification."""
    rng = np.random.default_rng(seed)
    n = len(truths)
    differences = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        picked = [truths[i] for i in idx]
        differences[b] = map50([model[i] for i in idx], picked) - map50([baseline[i] for i in idx], picked)
    alpha = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(differences, [alpha, 1 - alpha]))
    a, b = map50(model, truths), map50(baseline, truths)
    return Comparison(baseline_name, a, b, a - b, low, high, confidence, verdict_of(low, high))
