"""Fixed augmented views of labelled images, as extra training rows of the linear probe on few examples per class.

With a handful of images per class, the probe on frozen features gains from seeing each labelled image a few more
times, flipped and cropped: on Fashion-MNIST (efficientnet_lite0 at 64 px, three seeds) the five views below as
extra rows raised the probe from 0.641 to 0.679 at 8 images per class and from 0.706 to 0.730 at 16, and left it
about equal at 32 (0.759 to 0.764; ``benchmarks/few_shot_images.py``). The views are fixed, not random, so that
each view's features are computed once and kept in the feature cache like any other example's: a view dataset
keys each image by its own key and the view's name.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

#: Side of a corner crop, as a share of the image's side (the crop is resized back by the backbone's preprocessing).
CROP = 0.85
#: The views, besides the image itself.
IMAGE_VIEWS = ("flip", "crop top-left", "crop top-right", "crop bottom-left", "crop bottom-right")


def image_view(image: Any, view: str) -> Any:
    """One view of a PIL image: ``flip`` (left-right), or a corner crop of :data:`CROP` of each side."""
    from PIL import Image

    if view == "flip":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if not view.startswith("crop "):
        raise ValueError(f"unknown image view {view!r}; one of {', '.join(IMAGE_VIEWS)}.")
    width, height = image.size
    w, h = max(1, round(width * CROP)), max(1, round(height * CROP))
    top = 0 if "top" in view else height - h
    left = 0 if "left" in view else width - w
    return image.crop((left, top, left + w, top + h))


def view_dataset(dataset: Any, view: str) -> Any:
    """``dataset`` (images) with every image replaced by its ``view``: the same labels and rows, each item keyed by
    its image's key and the view (so that its features are cached)."""
    from PIL import Image

    from transferkit.data.dataset import Dataset
    from transferkit.data.images import array_to_rgb, load_rgb, to_rgb

    def load_image_item(item: Any) -> Any:
        if isinstance(item, np.ndarray):
            return array_to_rgb(item)
        return to_rgb(item) if isinstance(item, Image.Image) else load_rgb(item)

    keys = [hashlib.blake2b(f"{key}/view-{view}".encode(), digest_size=16).hexdigest()
            for key in dataset.item_keys()]
    items = [image_view(load_image_item(item), view) for item in dataset.items]
    return Dataset(modality=dataset.modality, items=items, labels=dataset.labels,
                   origin=f"{dataset.origin} ({view})", row_ids=[f"{r} ({view})" for r in dataset.row_ids],
                   _keys=keys, task=dataset.task)


def rows_with_views(X: np.ndarray, y: np.ndarray, view_features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The training rows of the probe: ``X`` ``(N, D)`` then each view's ``(N, D)`` features, the targets ``y``
    repeated once per view."""
    return np.concatenate([X, *view_features]), np.concatenate([y] * (1 + len(view_features)))


__all__ = ["CROP", "IMAGE_VIEWS", "image_view", "rows_with_views", "view_dataset"]
