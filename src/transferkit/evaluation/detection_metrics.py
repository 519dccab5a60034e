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
                      truths: Sequence[dict[str, Any]], baseline_name: str, *, n_boot: int = 500,
                      confidence: float = 0.95, seed: int = 0) -> Comparison:
    """mAP@0.5 of ``model`` minus ``baseline``'s on the same images, with a percentile bootstrap interval over
    images (both detectors scored on the same resample of images, ``n_boot`` times); the verdict as for
    classification: ``helped`` when the whole interval is above zero.

    Matching detections to true boxes is a property of each image, so the COCO evaluation matches once
    (``COCOeval.evaluate``) and each resample only re-accumulates the precision curves of the images drawn
    (``COCOeval.accumulate``): the same AP as a full evaluation of the resampled set, at a fraction of its cost.
    """
    rng = np.random.default_rng(seed)
    n = len(truths)
    evaluations = [_matched(found, truths) for found in (model, baseline)]
    differences = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        differences[b] = _accumulated_ap(evaluations[0], idx) - _accumulated_ap(evaluations[1], idx)
    alpha = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(differences, [alpha, 1 - alpha]))
    a, b = map50(model, truths), map50(baseline, truths)
    return Comparison(baseline_name, a, b, a - b, low, high, confidence, verdict_of(low, high))


def _matched(predictions: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]]) -> Any:
    """pycocotools' evaluation at IoU 0.5 (100 detections per image, all areas) after matching, or ``None`` when
    there is no detection at all (AP 0 on any resample)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    labels = sorted({int(l) for t in truths for l in np.asarray(t["labels"]).tolist()}
                    | {int(l) for p in predictions for l in np.asarray(p["labels"]).tolist()})
    truth = COCO()
    truth.dataset = {"images": [{"id": i + 1} for i in range(len(truths))], "categories": [{"id": c + 1} for c in labels],
                     "annotations": [_coco_box(i, box, label, n + 1)
                                     for i, t in enumerate(truths)
                                     for n, (box, label) in enumerate(zip(np.asarray(t["boxes"]).reshape(-1, 4).tolist(),
                                                                          np.asarray(t["labels"]).tolist()))]}
    for number, annotation in enumerate(truth.dataset["annotations"], start=1):
        annotation["id"] = number
    found = [{**_coco_box(i, box, label, 0), "score": float(score)}
             for i, p in enumerate(predictions)
             for box, label, score in zip(np.asarray(p["boxes"]).reshape(-1, 4).tolist(),
                                          np.asarray(p["labels"]).tolist(), np.asarray(p["scores"]).tolist())]
    if not found:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(found), "bbox")
        evaluation.params.iouThrs = np.array([0.5])
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluation.params.maxDets = [100]
        evaluation.evaluate()
    return evaluation


def _coco_box(image: int, box: list[float], label: int, number: int) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {"image_id": image + 1, "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": (x2 - x1) * (y2 - y1), "iscrowd": 0, "id": number}


def _accumulated_ap(evaluation: Any, images: np.ndarray) -> float:
    """mAP@0.5 of the images ``images`` (indices, repeats allowed) from a matched evaluation: its per-image
    results laid out for those images, accumulated by pycocotools, averaged over classes as COCO's summary does."""
    import contextlib
    import copy
    import io

    if evaluation is None:
        return 0.0
    params = evaluation.params
    n_images = len(params.imgIds)
    resampled = copy.copy(evaluation)
    resampled.evalImgs = [evaluation.evalImgs[block * n_images + int(i)]
                          for block in range(len(params.catIds) * len(params.areaRng)) for i in images]
    resampled.params = copy.copy(params)
    resampled.params.imgIds = list(range(len(images)))
    resampled._paramsEval = copy.copy(resampled.params)
    with contextlib.redirect_stdout(io.StringIO()):
        resampled.accumulate()
    precision = resampled.eval["precision"][0, :, :, 0, -1]
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else 0.0


def evaluate_detector(model: Any, data: Any, *, batch_size: int = 8, device: str = "cpu") -> dict[str, Any]:
    """``evaluate`` for a detector: the COCO figures of :func:`detection_metrics` on annotated images ``data``
    (COCO, YOLO or VOC; checked first, its classes the model's)."""
    from transferkit.data.detection import check_detection_set, read_detection
    from transferkit.errors import DataError

    dataset = read_detection(data)
    check_detection_set(dataset, role="evaluation")
    if dataset.classes != list(model.classes):
        raise DataError(f"evaluation data {dataset.origin}: classes {dataset.classes} differ from the model's "
                        f"{list(model.classes)}; give annotations with the model's class list, in its order.")
    found = model.detect(dataset.images, batch_size=batch_size, device=device)
    return detection_metrics(found, dataset.targets(), dataset.classes)


def format_detection_metrics(metrics: dict[str, Any], title: str = "") -> str:
    """A plain-text block: mAP figures, then AP per class."""
    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [title] if title else []
    lines.append(f"mAP@0.5 {cell(metrics['map_50'])}   mAP@[.5:.95] {cell(metrics['map'])}   mAP@0.75 "
                 f"{cell(metrics['map_75'])}   recall@100 {cell(metrics['mar_100'])}   ({metrics['images']} images, "
                 f"{metrics['boxes']} boxes)")
    width = max(8, *(len(c) for c in metrics["per_class"]))
    lines.append(f"{'class':<{width}}   AP@0.5  AP@[.5:.95]  boxes")
    for name, row in metrics["per_class"].items():
        lines.append(f"{name:<{width}}  {cell(row['ap_50']):>7}  {cell(row['ap']):>11}  {row['boxes']:5d}")
    return "\n".join(lines)


def missed_boxes(found: dict[str, Any], truth: dict[str, Any], *, iou_threshold: float = 0.5,
                 score_threshold: float = 0.3) -> np.ndarray:
    """Which true boxes of one image no detection found: ``(m,)`` bool. A detection scoring at least
    ``score_threshold`` finds the unfound true box of its class it overlaps most, when their IoU is at least
    ``iou_threshold``; detections are taken best score first and each finds one box (the COCO matching at one
    IoU, for a diagnosis per image: AP itself is always computed by the COCO evaluation)."""
    import torch
    from torchvision.ops import box_iou

    true_boxes = torch.as_tensor(np.asarray(truth["boxes"], np.float32)).reshape(-1, 4)
    true_labels = np.asarray(truth["labels"], np.int64).reshape(-1)
    missed = np.ones(len(true_labels), bool)
    scores = np.asarray(found["scores"], np.float32).reshape(-1)
    keep = np.flatnonzero(scores >= score_threshold)
    if not len(keep) or not len(true_labels):
        return missed
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    boxes = torch.as_tensor(np.asarray(found["boxes"], np.float32).reshape(-1, 4)[keep])
    labels = np.asarray(found["labels"], np.int64).reshape(-1)[keep]
    overlap = box_iou(boxes, true_boxes).numpy()
    for row, label in enumerate(labels):
        candidates = np.where(missed & (true_labels == label), overlap[row], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            missed[best] = False
    return missed


def hardest_misses(predictions: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any]], *, count: int = 12,
                   iou_threshold: float = 0.5, score_threshold: float = 0.3) -> list[dict[str, Any]]:
    """The images whose true boxes were missed most: lowest recall (found true boxes / true boxes, by
    :func:`missed_boxes`) first, then the largest missed box (area in pixels). Each entry: ``index`` (into the
    images), ``recall``, ``boxes`` (true boxes), ``missed`` (indices of the missed true boxes, largest first),
    ``largest_missed_area``, ``false_detections`` (detections at the score threshold that found no box). Images
    with no missed box are left out; at most ``count``."""
    rows = []
    for index, (found, truth) in enumerate(zip(predictions, truths)):
        missed = missed_boxes(found, truth, iou_threshold=iou_threshold, score_threshold=score_threshold)
        if not missed.any():
            continue
        boxes = np.asarray(truth["boxes"], np.float64).reshape(-1, 4)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = [int(i) for i in np.argsort(-areas, kind="stable") if missed[i]]
        detections = int((np.asarray(found["scores"]) >= score_threshold).sum())
        rows.append({"index": index, "recall": float(1 - missed.mean()), "boxes": len(missed), "missed": order,
                     "largest_missed_area": float(areas[order[0]]),
                     "false_detections": detections - int((~missed).sum())})
    rows.sort(key=lambda r: (r["recall"], -r["largest_missed_area"]))
    return rows[:count]
