"""Writing detection sets (COCO, YOLO, Pascal VOC) and composing one from real objects on real photographs.

There is no box-annotated photo set among the packages this project installs, so the detection benchmark and the
tests compose one: real object images (Fashion-MNIST items, scikit-learn's handwritten digits: greyscale on black)
pasted onto real photographs (crops of the photographs given as backgrounds). For each image of ``image_size``
pixels:

- the background is a random crop (30-100 % of the photograph's short side) of one photograph, resized, its
  brightness varied by +-25 %;
- 0 to ``max_objects`` objects (an image without any is a background image, ~5 %), each a random item scaled to
  ``scale`` of the image side, tinted a random colour (its grey levels kept as texture) and alpha-blended with its
  own intensity as the mask (the black surround becomes transparent);
- an object may overlap an earlier one (partial occlusion) as long as their boxes' IoU stays under ``max_iou``;
  its box is the tight box of its visible mask (mask > 0.1) before any later occlusion.

Hold-out is the caller's choice of inputs: give the test set other photographs and other object instances (the
benchmark uses Fashion-MNIST's test items and photographs that no training image was cut from).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from transferkit.data.detection import DetectionSet


def compose_detection_set(folder: str | Path, objects: np.ndarray, object_labels: Sequence[int],
                          classes: Sequence[str], backgrounds: Sequence[np.ndarray], *, n_images: int,
                          image_size: int = 128, max_objects: int = 4, scale: tuple[float, float] = (0.2, 0.5),
                          max_iou: float = 0.3, seed: int = 0, fmt: str = "coco") -> DetectionSet:
    """Compose ``n_images`` images into ``folder`` and write their annotations in ``fmt`` (coco, yolo, voc).

    ``objects``: ``(N, h, w)`` uint8 greyscale items on black; ``object_labels``: ``(N,)`` indices into ``classes``;
    ``backgrounds``: RGB photographs ``(H, W, 3)`` uint8. Returns the set as written (boxes in pixels).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    staging = folder / "_composed"
    staging.mkdir(parents=True, exist_ok=True)
    images, all_boxes, all_labels = [], [], []
    for i in range(n_images):
        canvas = _background(backgrounds[rng.integers(len(backgrounds))], image_size, rng)
        count = 0 if rng.random() < 0.05 else int(rng.integers(1, max_objects + 1))
        boxes, labels = _paste_objects(canvas, objects, object_labels, count, scale, max_iou, rng)
        path = staging / f"img_{i:05d}.jpg"
        Image.fromarray(canvas.astype(np.uint8)).save(path, quality=92)
        images.append(path), all_boxes.append(boxes), all_labels.append(labels)
    composed = DetectionSet(images, all_boxes, all_labels, list(classes), str(folder), format=fmt)
    written = write_detection_set(composed, folder, fmt)
    for path in images:
        path.unlink()
    staging.rmdir()
    return written


def _background(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.3, 1.0))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    return np.clip(np.asarray(crop, dtype=np.float32) * rng.uniform(0.75, 1.25), 0, 255)


def _paste_objects(canvas: np.ndarray, objects: np.ndarray, object_labels: Sequence[int], count: int,
                   scale: tuple[float, float], max_iou: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    size = canvas.shape[0]
    boxes: list[list[float]] = []
    labels: list[int] = []
    for _ in range(count * 10):
        if len(boxes) == count:
            break
        k = int(rng.integers(len(objects)))
        side = max(8, int(size * rng.uniform(*scale)))
        grey = np.asarray(Image.fromarray(objects[k]).resize((side, side), Image.BILINEAR), dtype=np.float32) / 255
        rows, cols = np.nonzero(grey > 0.1)
        if len(rows) == 0:
            continue
        x0, y0 = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
        box = [x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1]
        if boxes and _iou(np.asarray(boxes, np.float32), np.asarray(box, np.float32)).max() >= max_iou:
            continue
        tint = rng.uniform(60, 255, size=3)
        alpha = np.clip(grey * 1.5, 0, 1)[..., None]
        patch = canvas[y0:y0 + side, x0:x0 + side]
        canvas[y0:y0 + side, x0:x0 + side] = patch * (1 - alpha) + (grey[..., None] * 0.5 + 0.5) * tint * alpha
        boxes.append([float(v) for v in box])
        labels.append(int(object_labels[k]))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    lt = np.maximum(boxes[:, :2], box[:2])
    rb = np.minimum(boxes[:, 2:], box[2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(boxes) + area(box) - inter)


# --- writers ---------------------------------------------------------------------------------------------------

def write_detection_set(dataset: DetectionSet, folder: str | Path, fmt: str) -> DetectionSet:
    """Copy the images of ``dataset`` into ``folder`` and write its boxes in ``fmt``: ``coco``
    (``images/`` + ``annotations.json``), ``yolo`` (``images/``, ``labels/``, ``classes.txt``) or ``voc``
    (``JPEGImages/``, ``Annotations/``). Returns the set with the copied images' paths."""
    import shutil

    writers = {"coco": _write_coco, "yolo": _write_yolo, "voc": _write_voc}
    if fmt not in writers:
        raise ValueError(f"fmt must be one of {sorted(writers)}; got {fmt!r}.")
    folder = Path(folder)
    image_dir = folder / {"coco": "images", "yolo": "images", "voc": "JPEGImages"}[fmt]
    image_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in dataset.images:
        shutil.copyfile(path, image_dir / path.name)
        copied.append(image_dir / path.name)
    out = DetectionSet(copied, dataset.boxes, dataset.labels, dataset.classes, str(folder), format=fmt)
    writers[fmt](out, folder)
    return out


def _sizes(dataset: DetectionSet) -> list[tuple[int, int]]:
    from PIL import Image

    sizes = []
    for path in dataset.images:
        with Image.open(path) as image:
            sizes.append(image.size)
    return sizes


def _write_coco(dataset: DetectionSet, folder: Path) -> None:
    images, annotations = [], []
    for i, (path, (w, h), boxes, labels) in enumerate(zip(dataset.images, _sizes(dataset), dataset.boxes,
                                                          dataset.labels), start=1):
        images.append({"id": i, "file_name": path.name, "width": w, "height": h})
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(dataset.classes)]
    (folder / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}), encoding="utf-8")


def _write_yolo(dataset: DetectionSet, folder: Path) -> None:
    (folder / "labels").mkdir(exist_ok=True)
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in dataset.classes), encoding="utf-8")
    for path, (w, h), boxes, labels in zip(dataset.images, _sizes(dataset), dataset.boxes, dataset.labels):
        lines = [f"{label} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
                 for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist())]
        if lines:
            (folder / "labels" / f"{path.stem}.txt").write_text("".join(lines), encoding="utf-8")


def _write_voc(dataset: DetectionSet, folder: Path) -> None:
    from xml.sax.saxutils import escape

    (folder / "Annotations").mkdir(exist_ok=True)
    for path, (w, h), boxes, labels in zip(dataset.images, _sizes(dataset), dataset.boxes, dataset.labels):
        objects = "".join(
            f"<object><name>{escape(dataset.classes[label])}</name><bndbox><xmin>{x1:g}</xmin><ymin>{y1:g}</ymin>"
            f"<xmax>{x2:g}</xmax><ymax>{y2:g}</ymax></bndbox></object>"
            for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()))
        (folder / "Annotations" / f"{path.stem}.xml").write_text(
            f"<annotation><filename>{escape(path.name)}</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objects}</annotation>", encoding="utf-8")


def sample_photographs() -> list[np.ndarray]:
    """scikit-learn's two sample photographs (a Chinese temple, a flower; CC-BY licensed, shipped with
    scikit-learn): the backgrounds of the tests."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(image) for image in load_sample_images().images]


def digit_objects() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's handwritten digits (8x8, 16 grey levels) as uint8 objects on black, labels, class names."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255 / 16)).astype(np.uint8)
    return images, digits.target.astype(np.int64), [str(d) for d in range(10)]
