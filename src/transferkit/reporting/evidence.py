"""What ``fit`` keeps beside a model so that its report can show the data and the mistakes.

Two small files, both plain text:

- ``predictions.csv``: one row per test example, ``index, row_id, true, predicted, p_true, p_predicted``
  (``row_id`` is the example's path or table row; probabilities of the true and of the predicted class);
- ``examples.json``: class counts per split, a few examples of each class (thumbnails as data URIs for images,
  the text for texts) and the hardest misclassified test examples (lowest probability of the true class).

Thumbnails are made at fit time, so the report still shows them after the data has moved.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter
from typing import Any, Sequence

import numpy as np

from transferkit.modalities import get_modality

PREDICTIONS_FILE = "predictions.csv"
EXAMPLES_FILE = "examples.json"

#: Examples of each class shown in the data summary, classes that get examples, and mistakes shown.
EXAMPLES_PER_CLASS = 4
MAX_CLASSES_WITH_EXAMPLES = 30
HARDEST = 12
THUMBNAIL_PX = 96


def thumbnail_data_uri(item: Any, size: int = THUMBNAIL_PX) -> str | None:
    """A dataset item (image path, array or PIL image) as a small PNG or JPEG data URI (the smaller of the two);
    ``None`` when it cannot be decoded (the report then shows its row id only)."""
    from PIL import Image

    from transferkit.backbones.vision import load_image_item

    try:
        image = load_image_item(item)
    except Exception:  # a file that moved or broke since training: no thumbnail, not a failed fit
        return None
    image = image.copy()
    if max(image.size) < size:  # small images (28 px digits) are enlarged with sharp pixels
        scale = size / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.NEAREST)
    else:
        image.thumbnail((size, size), Image.BICUBIC)
    encoded = []
    for fmt, mime, options in (("PNG", "image/png", {"optimize": True}), ("JPEG", "image/jpeg", {"quality": 85})):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        encoded.append((len(buffer.getvalue()), mime, buffer.getvalue()))
    _, mime, data = min(encoded)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _example(dataset: Any, index: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"row_id": str(dataset.row_ids[index])}
    entry.update(get_modality(dataset.modality).example(dataset.items[index]))
    return entry


def predictions_csv(test: Any, y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> str:
    """``predictions.csv`` (see the module docstring) of test probabilities ``proba`` ``(N, classes)``."""
    y_pred = proba.argmax(axis=1)
    rows = np.arange(len(y_true))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "row_id", "true", "predicted", "p_true", "p_predicted"])
    for i, t, p in zip(rows, y_true, y_pred):
        writer.writerow([int(i), test.row_ids[i], classes[int(t)], classes[int(p)], f"{proba[i, t]:.6f}",
                         f"{proba[i, p]:.6f}"])
    return buffer.getvalue()


def fit_evidence(train: Any, test: Any, y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], *,
                 val: Any = None, seed: int = 0) -> dict[str, str]:
    """The report's files of one ``fit``: ``{file name: text}`` for ``predictions.csv`` and ``examples.json``.

    ``train`` / ``test`` / ``val`` are :class:`~transferkit.data.Dataset` objects, ``y_true`` the test labels as
    class indices ``(N,)``, ``proba`` the model's test probabilities ``(N, len(classes))``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    counts = {"train": dict(Counter(train.labels))}
    if val is not None and val.labels is not None:
        counts["validation"] = dict(Counter(val.labels))
    counts["test"] = {classes[c]: int(n) for c, n in zip(*np.unique(y_true, return_counts=True))}
    counts = {split: {c: int(values.get(c, 0)) for c in classes} for split, values in counts.items()}

    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for index in rng.permutation(len(train)):
        label = train.labels[int(index)]
        picked = by_class.setdefault(label, [])
        if len(picked) < EXAMPLES_PER_CLASS:
            picked.append(int(index))
    class_examples = {c: [_example(train, i) for i in by_class.get(c, [])] for c in classes[:MAX_CLASSES_WITH_EXAMPLES]}

    y_pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    p_true = proba[np.arange(len(y_true)), y_true]
    hardest = []
    for index in wrong[np.argsort(p_true[wrong], kind="stable")][:HARDEST]:
        entry = _example(test, int(index))
        entry.update(index=int(index), true=classes[int(y_true[index])], predicted=classes[int(y_pred[index])],
                     p_true=round(float(p_true[index]), 6), p_predicted=round(float(proba[index, y_pred[index]]), 6))
        hardest.append(entry)
    examples = {"modality": test.modality, "classes": list(classes), "counts": counts,
                "class_examples": class_examples, "hardest": hardest, "n_misclassified": int(len(wrong))}
    return {PREDICTIONS_FILE: predictions_csv(test, y_true, proba, classes),
            EXAMPLES_FILE: json.dumps(examples, indent=1) + "\n"}
