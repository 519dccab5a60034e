"""Augmentations that move boxes with the image (torchvision.transforms.v2 on ``tv_tensors.BoundingBoxes``).

Presets (fit's ``augment`` option): ``none``; ``light``: horizontal flip and photometric jitter; ``medium``: also a
random zoom out (the image placed on a larger canvas, objects smaller) and a crop that keeps boxes (IoU crop);
``heavy``: medium with stronger jitter. After a crop, boxes that left the image or became smaller than 2 pixels are
dropped (``SanitizeBoundingBoxes``): a box is never kept where its object is not.
"""

from __future__ import annotations

from typing import Any


def box_augmentation(preset: str) -> Any:
    """The transform of ``preset`` taking ``(image, target)`` with ``target["boxes"]`` a ``BoundingBoxes``, or
    ``None`` for ``none``."""
    from torchvision.transforms import v2

    if preset == "none":
        return None
    steps: list[Any] = [v2.RandomHorizontalFlip(0.5)]
    strength = {"light": 0.1, "medium": 0.2, "heavy": 0.3}[preset]
    steps.append(v2.ColorJitter(brightness=strength * 2, contrast=strength * 2, saturation=strength * 2,
                                hue=strength / 4))
    if preset in ("medium", "heavy"):
        steps += [v2.RandomZoomOut(fill=0.5, side_range=(1.0, 1.6), p=0.3), v2.RandomIoUCrop()]
    steps.append(v2.SanitizeBoundingBoxes(min_size=2))
    return v2.Compose(steps)


def to_box_tensors(image: Any, boxes: Any, labels: Any) -> tuple[Any, dict[str, Any]]:
    """An image tensor ``(3, H, W)`` in 0..1 and its boxes ``(n, 4)`` as the tv_tensors the transforms move."""
    import torch
    from torchvision import tv_tensors

    height, width = image.shape[-2:]
    target = {"boxes": tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                                format="XYXY", canvas_size=(height, width)),
              "labels": torch.as_tensor(labels, dtype=torch.int64)}
    return tv_tensors.Image(image), target
