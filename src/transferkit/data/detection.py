"""Object-detection data: COCO JSON, YOLO txt and Pascal VOC XML read into one structure, and its checks.

Every reader returns a :class:`DetectionSet`: one entry per image with its boxes ``(n, 4)`` as pixel corners
``x1, y1, x2, y2`` (float32; ``x2 > x1``, ``y2 > y1``), their class indices ``(n,)`` into ``classes``, and where
each box was written (``annotations.json annotation 17``, ``labels/a.txt line 3``, ``Annotations/a.xml object 2``)
so that a check names it. Conventions of each format:

- **COCO**: ``bbox`` is ``[x, y, width, height]`` in pixels; classes are the ``categories`` in order of their id.
- **YOLO**: one ``.txt`` per image (``labels/`` beside ``images/``, or beside the image), each line
  ``class x_center y_center width height`` normalised to the image; class names from ``classes.txt`` (one a line)
  or ``data.yaml`` (``names:`` list or id mapping).
- **Pascal VOC**: one ``.xml`` per image (``Annotations/`` beside ``JPEGImages/``, or beside the image) with
  ``<object><name>`` and ``<bndbox>`` corners, read as written; classes are the names found, sorted.

An image without annotations (no YOLO/VOC file, no COCO annotation, or an empty one) is a background image:
legal, counted, and reported in one warning line. :func:`check_detection_set` refuses what cannot train before any
work: unreadable images, boxes of zero or negative area, boxes outside the image, unknown class ids.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.errors import DataError, DataNotFoundError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Pixels a box may reach past the image border before it is refused (rounding in annotation tools).
BORDER_TOLERANCE = 1.0
#: Problems listed in one error message (the count of the rest follows).
MAX_LISTED = 5


@dataclass
class DetectionSet:
    """Images with their boxes. ``boxes[i]`` ``(n_i, 4)`` float32 pixel corners, ``labels[i]`` ``(n_i,)`` int64
    indices into ``classes``, ``places[i]`` where each box was written; ``origin`` names the annotation source."""

    images: list[Path]
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    classes: list[str]
    origin: str
    places: list[list[str]] = field(default_factory=list)
    format: str = ""

    def __post_init__(self) -> None:
        if not self.places:
            self.places = [[f"{self.origin} box {j + 1} of {p.name}" for j in range(len(b))]
                           for p, b in zip(self.images, self.boxes)]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def n_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    @property
    def n_background(self) -> int:
        return sum(1 for b in self.boxes if len(b) == 0)

    def subset(self, indices: Sequence[int], origin: str | None = None) -> "DetectionSet":
        idx = [int(i) for i in indices]
        return DetectionSet([self.images[i] for i in idx], [self.boxes[i] for i in idx],
                            [self.labels[i] for i in idx], list(self.classes), origin or self.origin,
                            [self.places[i] for i in idx], self.format)

    def boxes_per_class(self) -> dict[str, int]:
        counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *self.labels]), minlength=len(self.classes))
        return {name: int(c) for name, c in zip(self.classes, counts)}

    def targets(self) -> list[dict[str, Any]]:
        """The boxes as torchvision and torchmetrics take them: ``{"boxes": (n, 4) float, "labels": (n,) int64}``."""
        import torch

        return [{"boxes": torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4),
                 "labels": torch.as_tensor(l, dtype=torch.int64)} for b, l in zip(self.boxes, self.labels)]


def _new_arrays(boxes: list[list[float]], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"image {path} cannot be read ({type(exc).__name__}: {exc}); replace it or remove it "
                        "and its annotations.") from exc


# --- which format ----------------------------------------------------------------------------------------------

def detection_format(path: str | Path) -> str:
    """``coco``, ``yolo`` or ``voc`` for an annotation file or dataset folder; a DataError says what was looked
    for when it is none of them."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"detection data {path} does not exist.")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise DataError(f"detection data {path}: give a COCO annotations .json file, or a folder of YOLO labels "
                        "(classes.txt or data.yaml) or Pascal VOC .xml files.")
    if _coco_file(path) is not None:
        return "coco"
    if (path / "classes.txt").is_file() or (path / "data.yaml").is_file() or (path / "data.yml").is_file():
        return "yolo"
    if (path / "Annotations").is_dir() or any(path.glob("*.xml")):
        return "voc"
    raise DataError(f"detection data {path}: no annotations found. Expected annotations.json (COCO), classes.txt "
                    "or data.yaml with one .txt per image (YOLO), or Annotations/*.xml (Pascal VOC).")


def _coco_file(folder: Path) -> Path | None:
    for candidate in (folder / "annotations.json", *sorted((folder / "annotations").glob("*.json"))):
        if candidate.is_file():
            return candidate
    return None


def read_detection(path: str | Path) -> DetectionSet:
    """The detection set at ``path`` in whichever of the three formats it is (see :func:`detection_format`)."""
    fmt = detection_format(path)
    reader = {"coco": read_coco, "yolo": read_yolo, "voc": read_voc}[fmt]
    dataset = reader(path)
    if dataset.n_background:
        log.warning("%s: %d of %d images have no boxes; they train as background images (no object).",
                    dataset.origin, dataset.n_background, len(dataset))
    return dataset


# --- COCO ------------------------------------------------------------------------------------------------------

def read_coco(path: str | Path) -> DetectionSet:
    """A COCO annotation file (or a folder holding ``annotations.json``); image files are looked up in
    ``images/`` beside it, then beside the file itself."""
    path = Path(path)
    file = path if path.is_file() else _coco_file(path)
    if file is None:
        raise DataNotFoundError(f"no COCO annotation file in {path}: expected annotations.json.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        images, annotations = data["images"], data.get("annotations", [])
        categories = sorted(data["categories"], key=lambda c: c["id"])
        category_index = {c["id"]: i for i, c in enumerate(categories)}
        classes = [str(c["name"]) for c in categories]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{file} is not a COCO annotation file ({type(exc).__name__}: {exc}); it needs 'images' "
                        "(id, file_name), 'categories' (id, name) and 'annotations' (image_id, category_id, bbox).") from exc
    root = _coco_image_root(file, images)
    by_id: dict[Any, tuple[list, list, list]] = {img["id"]: ([], [], []) for img in images}
    for number, ann in enumerate(annotations):
        where = f"{file} annotation {ann.get('id', number + 1)}"
        if ann.get("image_id") not in by_id:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'; add the image or remove "
                            "the annotation.")
        if ann.get("category_id") not in category_index:
            raise DataError(f"{where}: unknown category_id {ann.get('category_id')!r}; known ids "
                            f"{sorted(category_index)}. Add the category to 'categories' or fix the id.")
        x, y, w, h = _numbers(ann.get("bbox"), 4, where + " bbox")
        boxes, labels, places = by_id[ann["image_id"]]
        boxes.append([x, y, x + w, y + h])
        labels.append(category_index[ann["category_id"]])
        places.append(where)
    out_images, out_boxes, out_labels, out_places = [], [], [], []
    for img in images:
        boxes, labels, places = by_id[img["id"]]
        b, l = _new_arrays(boxes, labels)
        out_images.append(root / str(img["file_name"]))
        out_boxes.append(b), out_labels.append(l), out_places.append(places)
    return DetectionSet(out_images, out_boxes, out_labels, classes, str(file), out_places, "coco")


def _coco_image_root(file: Path, images: list[dict]) -> Path:
    """The folder the ``file_name`` entries are relative to: ``images/`` beside the file, the file's folder, or
    ``images/`` one level up (``annotations/instances.json`` beside ``images/``)."""
    first = str(images[0].get("file_name", "")) if images else ""
    for candidate in (file.parent / "images", file.parent, file.parent.parent / "images"):
        if first and (candidate / first).exists():
            return candidate
    return file.parent / "images" if (file.parent / "images").is_dir() else file.parent


def _numbers(values: Any, count: int, where: str) -> list[float]:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != count or not np.all(np.isfinite(numbers)):
        raise DataError(f"{where}: expected {count} finite numbers; got {values!r}.")
    return numbers


# --- YOLO ------------------------------------------------------------------------------------------------------

def _yolo_classes(folder: Path) -> list[str]:
    if (folder / "classes.txt").is_file():
        names = [line.strip() for line in (folder / "classes.txt").read_text(encoding="utf-8").splitlines()]
        return [n for n in names if n]
    import yaml

    file = folder / "data.yaml" if (folder / "data.yaml").is_file() else folder / "data.yml"
    names = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise DataError(f"{file}: expected 'names:' as a list of class names or a mapping id -> name.")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def image_files(path: str | Path) -> list[Path]:
    """The image files of ``path``: the file itself, or every image below a folder (sorted); none is an error."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path}: no such file or folder.")
    files = [path] if path.is_file() else _image_files(path)
    if not files:
        raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it.")
    return files


def _annotation_file(image: Path, root: Path, image_dir: str, label_dir: str, suffix: str) -> Path:
    relative = image.relative_to(root)
    parts = list(relative.parts)
    if image_dir in parts:
        parts[parts.index(image_dir)] = label_dir
        return (root / Path(*parts)).with_suffix(suffix)
    return image.with_suffix(suffix)


def read_yolo(folder: str | Path) -> DetectionSet:
    """A YOLO dataset folder: images (under ``images/`` or anywhere below), one label file per image, and
    ``classes.txt`` or ``data.yaml``."""
    folder = Path(folder)
    classes = _yolo_classes(folder)
    images, all_boxes, all_labels, all_places = [], [], [], []
    for image in _image_files(folder):
        label_file = _annotation_file(image, folder, "images", "labels", ".txt")
        boxes, labels, places = [], [], []
        if label_file.is_file():
            width, height = _image_size(image)
            for number, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{label_file} line {number}"
                fields = line.split()
                cls, cx, cy, w, h = _numbers(fields[:5], 5, where) if len(fields) >= 5 else _numbers(fields, 5, where)
                if cls != int(cls) or not 0 <= cls < len(classes):
                    raise DataError(f"{where}: unknown class id {fields[0]}; the {len(classes)} classes of "
                                    f"{_classes_source(folder)} have ids 0 to {len(classes) - 1}.")
                boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
                labels.append(int(cls))
                places.append(where)
        b, l = _new_arrays(boxes, labels)
        images.append(image), all_boxes.append(b), all_labels.append(l), all_places.append(places)
    if not images:
        raise DataError(f"YOLO data {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) found below it.")
    return DetectionSet(images, all_boxes, all_labels, classes, str(folder), all_places, "yolo")


def _classes_source(folder: Path) -> str:
    return str(folder / "classes.txt") if (folder / "classes.txt").is_file() else str(folder / "data.yaml")


# --- Pascal VOC ------------------------------------------------------------------------------------------------

def read_voc(folder: str | Path) -> DetectionSet:
    """A Pascal VOC folder: images (``JPEGImages/`` or anywhere below) and one ``.xml`` per image."""
    folder = Path(folder)
    images = _image_files(folder)
    if not images:
        raise DataError(f"VOC data {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) found below it.")
    parsed = [_read_voc_file(_annotation_file(i, folder, "JPEGImages", "Annotations", ".xml")) for i in images]
    classes = sorted({name for objects in parsed for name, _, _ in objects})
    index = {name: i for i, name in enumerate(classes)}
    all_boxes, all_labels, all_places = [], [], []
    for objects in parsed:
        b, l = _new_arrays([box for _, box, _ in objects], [index[name] for name, _, _ in objects])
        all_boxes.append(b), all_labels.append(l), all_places.append([where for _, _, where in objects])
    return DetectionSet(images, all_boxes, all_labels, classes, str(folder), all_places, "voc")


def _read_voc_file(file: Path) -> list[tuple[str, list[float], str]]:
    import xml.etree.ElementTree as ET

    if not file.is_file():
        return []
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{file} is not valid XML ({exc}); fix or remove it.") from exc
    objects = []
    for number, obj in enumerate(root.iter("object"), start=1):
        where = f"{file} object {number}"
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise DataError(f"{where}: needs <name> and <bndbox> with xmin, ymin, xmax, ymax.")
        corners = _numbers([box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")], 4, where + " bndbox")
        objects.append((name, corners, where))
    return objects


# --- checks ----------------------------------------------------------------------------------------------------

def check_detection_set(dataset: DetectionSet, *, role: str = "training") -> None:
    """Refuse what cannot train or be scored, naming the file and box: unreadable or missing images, boxes of
    zero or negative area, boxes beyond the image (by more than :data:`BORDER_TOLERANCE` pixels), class indices
    outside ``classes``. A class without any box in training data is a warning."""
    problems: list[str] = []
    for image, boxes, labels, places in zip(dataset.images, dataset.boxes, dataset.labels, dataset.places):
        if not image.is_file():
            problems.append(f"{image}: image file not found (named by {dataset.origin})")
            continue
        width, height = _image_size(image)
        for box, label, where in zip(boxes, labels, places):
            problems.extend(_box_problems(box, int(label), where, image, width, height, len(dataset.classes)))
        if len(problems) > 50:
            break
    if problems:
        listed = "; ".join(problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise DataError(f"{role} data {dataset.origin}: {len(problems)} bad annotations{more}: {listed}. Fix or "
                        "remove these boxes (corners x1 < x2, y1 < y2 inside the image; known class ids).")
    if not len(dataset):
        raise DataError(f"{role} data {dataset.origin}: no images.")
    if role == "training":
        missing = [name for name, count in dataset.boxes_per_class().items() if count == 0]
        if missing:
            log.warning("%s: classes %s have no box in the training data; the detector cannot learn them.",
                        dataset.origin, ", ".join(missing))


def _box_problems(box: np.ndarray, label: int, where: str, image: Path, width: int, height: int,
                  n_classes: int) -> list[str]:
    x1, y1, x2, y2 = (float(v) for v in box)
    text = f"[{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
    out = []
    if not 0 <= label < n_classes:
        out.append(f"{where}: unknown class index {label}")
    if x2 <= x1 or y2 <= y1:
        out.append(f"{where}: box {text} has zero or negative area")
    tol = BORDER_TOLERANCE
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        out.append(f"{where}: box {text} lies outside the {width}x{height} image {image.name}")
    return out


def split_detection_set(dataset: DetectionSet, fraction: float, seed: int) -> tuple[DetectionSet, DetectionSet]:
    """A random split by image: ``(rest, held_out)`` with ``fraction`` of the images (at least one) held out."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    n_out = max(1, int(round(fraction * len(dataset))))
    if n_out >= len(dataset):
        raise DataError(f"{dataset.origin}: {len(dataset)} images are too few to hold out {fraction:.0%}; give "
                        "more images or separate --val / --test data.")
    return (dataset.subset(sorted(order[n_out:])), dataset.subset(sorted(order[:n_out]), f"{dataset.origin} (held out)"))
