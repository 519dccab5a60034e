"""Vision backbones: any timm model behind the :class:`Backbone` interface, and its image preprocessing."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.data.images import array_to_rgb, load_rgb, to_rgb

#: The version of what an image file decodes to (:func:`transferkit.data.images.to_rgb`), part of the feature-cache
#: key: 2 turns photos upright by their EXIF orientation.
IMAGE_DECODING_VERSION = 2
#: Above this many times the output's area, the resize-then-crop of :class:`ImagePreprocessing` resizes only the
#: cropped region (same result up to edge effects of the filter; no huge intermediate image).
_MAX_INTERMEDIATE = 16
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class ImagePreprocessing:
    """Resize the shorter side to ``input_size / crop_pct``, centre-crop ``input_size``, scale to 0..1, normalise.

    ``crop_pct = 1.0`` keeps the whole image (the default here: small datasets often have objects that fill the frame).
    """

    input_size: int = 224
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """An RGB PIL image -> a float tensor ``(3, input_size, input_size)``."""
        size = self.input_size
        resize_to = int(math.floor(size / self.crop_pct))
        width, height = image.size
        scale = resize_to / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        left, top = (new_w - size) // 2, (new_h - size) // 2
        if new_w * new_h > _MAX_INTERMEDIATE * size * size:
            # a long strip (e.g. 10000x20): resizing it whole would make an image of millions of pixels only to
            # crop most of it away; resize just the region the crop keeps
            sx, sy = new_w / width, new_h / height
            image = image.resize((size, size), _RESAMPLE[self.interpolation],
                                 box=(left / sx, top / sy, (left + size) / sx, (top + size) / sy))
        else:
            if (new_w, new_h) != (width, height):
                image = image.resize((new_w, new_h), _RESAMPLE[self.interpolation])
            if (new_w, new_h) != (size, size):
                image = image.crop((left, top, left + size, top + size))
        # uint8 first, then float32 in numpy: converting a PIL image straight to float32 is several times slower.
        # The arithmetic ((x / 255 - mean) / std in float32) is unchanged, so the values are bit-identical.
        array = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
        array = (array - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        # (3, H, W) whose memory is (H, W, 3): batches stacked from these are channels-last without another copy.
        return torch.from_numpy(array).permute(2, 0, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "image", **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImagePreprocessing":
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"}
        return cls(**fields)


def load_image_item(item: Any) -> Image.Image:
    """A dataset item (a path, an array or a PIL image) as an upright RGB image (see
    :func:`transferkit.data.images.to_rgb`: EXIF orientation, alpha on white, any bit depth)."""
    if isinstance(item, np.ndarray):
        return array_to_rgb(item)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    return load_rgb(item)


class TimmBackbone(Backbone):
    """A timm model. Its classifier, if it has one, is kept as the source head (``source_logits``)."""

    modality = "image"

    def __init__(self, model: nn.Module, name: str, preprocessing: ImagePreprocessing) -> None:
        super().__init__(name)
        self.model = model
        # pooled features come after the head convolution of MobileNetV3 / LCNet (head_hidden_size), when there is one
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self.image_preprocessing = preprocessing

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.image_preprocessing.to_dict()

    def cache_key(self) -> str:
        """The base key (weights, preprocessing) and :data:`IMAGE_DECODING_VERSION`: features cached when image
        files were decoded differently are not reused."""
        import hashlib

        return hashlib.blake2b(f"{super().cache_key()}/decoding-{IMAGE_DECODING_VERSION}".encode(),
                               digest_size=16).hexdigest()

    def prepare(self, item: Any) -> torch.Tensor:
        return self.image_preprocessing(load_image_item(item))

    def collate(self, prepared: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(prepared)).contiguous(memory_format=torch.channels_last)

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(batch), pre_logits=True)

    def feature_map(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(batch)

    def pool_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(feature_map, pre_logits=True)

    def inference_features(self, batch: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_features` for frozen inference, faster on the CPU; the same values to 1e-4.

        On the CPU in float32 it runs a frozen copy of the network with BatchNorm folded into the convolutions and
        ReLU/ReLU6 fused into them (see :mod:`transferkit.backbones._inference`). The copy is built on the first
        batch, checked against :meth:`forward_features` on that batch, and rebuilt whenever a weight changes
        (fine-tuning); a network that cannot be optimised simply runs as it is. Shapes: ``(N, 3, H, W)`` ->
        ``(N, num_features)``.
        """
        if batch.device.type != "cpu" or batch.dtype != torch.float32 or torch.is_grad_enabled() \
                or any(m.training for m in self.modules()):
            return self.forward_features(batch)
        fast = self._inference_copy(batch)
        return fast(batch) if fast is not None else self.forward_features(batch)

    def _inference_copy(self, example: torch.Tensor) -> nn.Module | None:
        from transferkit.backbones._inference import optimize_for_inference

        # A weight changed in place bumps its version counter; a replaced weight has a new data pointer.
        signature = tuple((t.data_ptr(), t._version) for t in (*self.model.parameters(), *self.model.buffers()))
        cached = self.__dict__.get("_inference_state")
        if cached is not None and cached[0] == signature:
            return cached[1]
        fast = optimize_for_inference(_PooledFeatures(self.model), example)
        # Kept outside nn.Module's registries: not a submodule, not in state_dict, not moved by .to().
        object.__setattr__(self, "_inference_state", (signature, fast))
        return fast

    @property
    def has_source_head(self) -> bool:
        return getattr(self.model, "num_classes", 0) > 0

    def source_logits(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.has_source_head:
            return super().source_logits(batch)
        return self.model.forward_head(self.model.forward_features(batch))

    def layer_groups(self) -> list[nn.Module]:
        """timm's coarse parameter groups (stem, stages, final conv), the classifier excluded."""
        from timm.models import group_modules

        groups = group_modules(self.model, self.model.group_matcher(coarse=True))
        classifier = self.model.get_classifier() if hasattr(self.model, "get_classifier") else None
        classifier_ids = {id(m) for m in classifier.modules()} if isinstance(classifier, nn.Module) else set()
        modules = dict(self.model.named_modules())
        out = []
        for _, names in sorted(groups.items()):
            members = [modules[n] for n in names if n in modules and id(modules[n]) not in classifier_ids]
            if members:
                out.append(members[0] if len(members) == 1 else nn.ModuleList(members))
        return out


class _PooledFeatures(nn.Module):
    """A timm model's pooled features as a plain ``forward`` (what :func:`optimize_for_inference` rewrites)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(batch), pre_logits=True)


def preprocessing_from_timm(model: nn.Module, crop_pct: float = 1.0,
                            image_size: int | None = None) -> ImagePreprocessing:
    """The model's own preprocessing (timm's data config), at ``image_size`` pixels when given instead of the
    resolution it was pretrained at (convolutional networks take any size; small images such as 28x28 digits
    gain little from being enlarged to 224 px and cost four times the compute of 112 px)."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = int(image_size or cfg.get("input_size", (3, 224, 224))[-1])
    return ImagePreprocessing(
        input_size=size,
        crop_pct=crop_pct,
        interpolation=cfg.get("interpolation", "bicubic") if cfg.get("interpolation") in _RESAMPLE else "bicubic",
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
    )
