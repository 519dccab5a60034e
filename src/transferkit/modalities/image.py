"""Images: files (paths, any format Pillow reads) or arrays ``(N, H, W)`` / ``(N, H, W, C)`` of uint8."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from transferkit.modalities.base import Modality, RawEncoder, check_files

#: The raw baseline's pixel grid: every image is resized to this many pixels a side (smaller arrays keep theirs).
RAW_IMAGE_SIDE = 32


class RawPixels(RawEncoder):
    """Images -> pixel vectors of one width, values in 0..1.

    Images of every size, aspect ratio and colour mode give vectors of one width: each is decoded upright as RGB
    (see :func:`transferkit.data.images.to_rgb`) and resized to ``size_`` (width, height): ``image_side`` x
    ``image_side`` pixels, or the arrays' own size when ``fit`` saw an image array no larger than that (8x8 digits
    stay 64 pixels). Greyscale arrays ``(N, H, W)`` stay one channel (``grey_``).
    """

    standardize = True
    description = "pixels + logistic regression"

    def __init__(self, image_side: int = RAW_IMAGE_SIDE) -> None:
        self.image_side = image_side

    def fit(self, dataset: Any) -> "RawPixels":
        arrays = isinstance(dataset.items, np.ndarray)
        self.grey_ = arrays and dataset.items.ndim == 3
        height, width = (dataset.items.shape[1:3] if arrays else (self.image_side, self.image_side))
        if max(height, width) > self.image_side:
            height = width = self.image_side
        self.size_ = (int(width), int(height))
        return self

    def transform(self, dataset: Any) -> np.ndarray:
        """``(N, width * height * channels)`` float32, filled one image at a time (decoded images are not kept)."""
        out = np.empty((len(dataset.items), self.size_[0] * self.size_[1] * (1 if self.grey_ else 3)), np.float32)
        for row, item in enumerate(dataset.items):
            out[row] = self._pixels(item)
        return out

    def _pixels(self, item: Any) -> np.ndarray:
        from PIL import Image

        from transferkit.backbones.vision import load_image_item

        if isinstance(item, np.ndarray) and self.grey_ and item.ndim == 2 and item.shape[::-1] == self.size_:
            return item.astype(np.float32).ravel() / 255.0
        if isinstance(item, (str, os.PathLike)):
            from transferkit.data.images import load_rgb

            image = load_rgb(item, at_least=self.size_)  # a JPEG photo decoded at a fraction of its size: faster
        else:
            image = load_image_item(item)
        if self.grey_:
            image = image.convert("L")
        if image.size != self.size_:
            image = image.resize(self.size_, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32).ravel() / 255.0


class ImageModality(Modality):
    name = "image"
    description = "images: a folder per class, a table of image paths, image files or an array"
    default_backbone = "efficientnet_lite0"
    input_hint = "a folder of images (one sub-folder per class) or a table with an image-path column"
    items_are_files = True
    strings_are_items = False
    mixes_batches = True
    augment_summary = "flips, crops, rotation, colour jitter"
    word_variants = False
    few_shot_strategies = ("finetune",)
    probe_views = ("flip", "crop top-left", "crop top-right", "crop bottom-left", "crop bottom-right")
    channels_last = True
    prefers_static_quantization = True
    service_request = "files"
    onnx_inputs = ("pixels",)

    def view_dataset(self, dataset: Any, view: str) -> Any:
        from transferkit.data.views import view_dataset

        return view_dataset(dataset, view)

    def item_keys(self, items: Sequence[Any]) -> list[str]:
        from transferkit.data.dataset import file_digest

        return [file_digest(path) for path in items]

    def check_items(self, dataset: Any) -> None:
        from transferkit.data.images import check_image_file

        check_files(dataset, check_image_file, "image")  # decoded clips and arrays are not files: nothing to check

    def files_dataset(self, paths: Sequence[str], origin: str) -> Any:
        from transferkit.data.sources import image_files

        return image_files(paths, origin)

    def backbone_options(self, *, max_length: int | None = None, image_size: int | None = None) -> dict[str, Any]:
        return {"image_size": image_size} if image_size else {}

    def options_from_preprocessing(self, preprocessing: dict[str, Any]) -> dict[str, Any]:
        return {"crop_pct": preprocessing["crop_pct"], "image_size": preprocessing["input_size"]}

    def raw_encoder(self, **options: Any) -> RawPixels:
        return RawPixels(options.get("image_side", RAW_IMAGE_SIDE))

    def augmentation(self, preset: str, auto_augment: str | None = None) -> Any:
        from dataclasses import replace

        from transferkit.data.augmentation import IMAGE_PRESETS
        from transferkit.errors import ConfigError

        augmentation = IMAGE_PRESETS[preset]
        if auto_augment is not None:
            if auto_augment not in ("randaugment", "trivialaugment", "none"):
                raise ConfigError(f"option 'auto_augment' must be randaugment, trivialaugment or none; got "
                                  f"{auto_augment!r}.")
            augmentation = replace(augmentation, auto_augment=None if auto_augment == "none" else auto_augment)
        return augmentation

    def training_inputs(self, backbone: Any, augmentation: Any, batch_mixing: Any = None
                        ) -> tuple[Callable[[Any], Any], Any]:
        prepare = backbone.prepare if augmentation.is_identity else augmentation.build(backbone.prepare)
        return prepare, batch_mixing

    def example(self, item: Any) -> dict[str, Any]:
        from transferkit.reporting.evidence import thumbnail_data_uri

        return {"thumbnail": thumbnail_data_uri(item)}

    def examples_html(self, entries: Sequence[dict], escape: Callable[[Any], str]) -> str:
        thumbs = []
        for item in entries:
            uri = item.get("thumbnail")
            row = escape(item.get("row_id", ""))
            if isinstance(uri, str) and uri.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")):
                thumbs.append(f'<img class="thumb" alt="{row}" title="{row}" src="{escape(uri)}">')
            else:
                thumbs.append(f"<span class='muted'>{row}</span>")
        return f'<div class="thumbs">{"".join(thumbs)}</div>'

    def example_cell_html(self, entry: dict, escape: Callable[[Any], str]) -> str:
        return self.examples_html([entry], escape)

    def decode_upload(self, data: bytes, name: str, settings: Any) -> Any:
        from transferkit.serving.app import decode_image_upload

        return decode_image_upload(data, name, settings)

    def warm_up_item(self) -> Any:
        from PIL import Image

        return Image.new("RGB", (64, 64), (128, 128, 128))

    def explainer(self) -> Any:
        from transferkit.explanations.grid import GridExplainer

        return GridExplainer(channels=True, fill="zero")

    def sample_items(self, count: int, seed: int = 0) -> tuple[list[Any], str]:
        rng = np.random.default_rng(seed)
        items = [rng.integers(0, 256, size=(int(rng.integers(24, 300)), int(rng.integers(24, 300)), 3), dtype=np.uint8)
                 for _ in range(count)]
        return items, "random images of varied size"
