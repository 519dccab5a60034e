"""Pictures of a detector's work: images with predicted boxes (``predict --draw``), and predicted beside true
boxes for the examples of a detection model folder (``examples/`` written by ``fit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

#: Colours: predicted boxes, true boxes.
PREDICTED, TRUE = "orangered", "lime"


def draw_boxes(image_path: str | Path, out_path: str | Path, predicted: Sequence[dict[str, Any]],
               true: Sequence[dict[str, Any]] = ()) -> Path:
    """Write ``image_path`` with its ``predicted`` boxes (``label``, ``score``, ``box``) in red and ``true`` boxes
    (``label``, ``box``) in green to ``out_path`` (PNG)."""
    import torch
    from torchvision.utils import draw_bounding_boxes

    from transferkit.models.detector import load_images

    image = (load_images([image_path])[0] * 255).to(torch.uint8)
    for records, colour, caption in ((true, TRUE, lambda r: r["label"]),
                                     (predicted, PREDICTED, lambda r: f"{r['label']} {r['score']:.2f}")):
        if records:
            boxes = torch.tensor([r["box"] for r in records], dtype=torch.float32)
            image = draw_bounding_boxes(image, boxes, labels=[caption(r) for r in records], colors=colour, width=2)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out_path)
    return out_path


def draw_records(records: Sequence[dict[str, Any]], folder: str | Path) -> list[Path]:
    """``predict --draw FOLDER``: each record's image with its detections, as ``FOLDER/<image name>.png`` (a
    number added when two inputs share a name)."""
    folder = Path(folder)
    written: list[Path] = []
    names: set[str] = set()
    for record in records:
        stem = Path(record["input"]).stem
        name, n = stem, 1
        while name in names:
            n += 1
            name = f"{stem}_{n}"
        names.add(name)
        written.append(draw_boxes(record["input"], folder / f"{name}.png", record["detections"]))
    return written
