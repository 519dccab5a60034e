"""A detector built on a registry backbone: torchvision's FCOS on a feature pyramid of the backbone's stages.

The backbone (any timm network of the registry: ``efficientnet_lite0``, ``timm:ARCH``, ``random:...``) gives its
last ``levels`` stages (strides 8, 16, 32 for EfficientNet) through timm's ``forward_intermediates``; torchvision's
:class:`~torchvision.ops.FeaturePyramidNetwork` turns them into ``channels``-wide maps and adds two coarser ones
(P6, P7); torchvision's :class:`~torchvision.models.detection.FCOS` head (``head_convs`` convolutions with group
norm per branch, shared across levels) predicts a class score, a box and a centre-ness at every location. The
pretrained classification weights transfer to the backbone; the pyramid and the head start random. The backbone's
classifier and final convolution are dropped (the detector does not use them).

FCOS resizes each image so that its shorter side is ``image_size`` (the longer at most 4/3 of it), normalises it
with the backbone's mean and deviation, and maps the boxes back to the input's pixels. Scores are per class
(sigmoid); ``predict`` keeps detections above ``score_threshold``, the evaluation keeps every one above 0.05.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.errors import BackboneError, ConfigError

#: The score below which FCOS drops a detection before non-maximum suppression (low: mAP needs the whole curve).
EVALUATION_SCORE = 0.05
#: The default score of the detections ``predict`` returns.
PREDICT_SCORE = 0.3


class PyramidBackbone(nn.Module):
    """A timm network's last ``levels`` stages and a feature pyramid on them: ``(N, 3, H, W)`` -> an ordered dict
    of ``levels + 2`` maps ``(N, channels, H / s, W / s)`` (torchvision's detector backbone contract)."""

    def __init__(self, network: nn.Module, levels: int = 3, channels: int = 64) -> None:
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

        super().__init__()
        info = list(network.feature_info)
        self.indices = list(range(len(info)))[-levels:]
        if hasattr(network, "prune_intermediate_layers"):
            network.prune_intermediate_layers(self.indices, prune_head=True)
        self.body = network
        self.strides = [int(info[i]["reduction"]) for i in self.indices]
        self.fpn = FeaturePyramidNetwork([int(info[i]["num_chs"]) for i in self.indices], channels,
                                         extra_blocks=LastLevelP6P7(channels, channels))
        self.out_channels = channels

    def forward(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        stages = self.body.forward_intermediates(images, indices=self.indices, intermediates_only=True)
        return self.fpn(OrderedDict((str(i), x) for i, x in enumerate(stages)))

    def anchor_sizes(self) -> tuple[tuple[int], ...]:
        """One size per pyramid level, equal to its stride (FCOS assigns objects to levels by these)."""
        last = self.strides[-1]
        return tuple((s,) for s in (*self.strides, 2 * last, 4 * last))


def build_detector(backbone_name: str, classes: Sequence[str], *, pretrained: bool = True, image_size: int = 320,
                   levels: int = 3, channels: int = 64, head_convs: int = 2) -> tuple[nn.Module, dict[str, Any]]:
    """The FCOS network for ``classes`` on backbone ``backbone_name``, and the spec that rebuilds it."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    from transferkit.backbones import create_backbone

    backbone = create_backbone(backbone_name, pretrained=pretrained)
    network = getattr(backbone, "model", None)
    if network is None or not hasattr(network, "feature_info") or not hasattr(network, "forward_intermediates"):
        raise BackboneError(f"option 'backbone': '{backbone_name}' has no feature stages a detector can use; give an "
                            "image backbone of timm (efficientnet_lite0, timm:ARCH).")
    if channels % 32:
        raise ConfigError(f"detector channels must be a multiple of 32 (group norm); got {channels}.")
    pyramid = PyramidBackbone(network, levels, channels)
    pre = backbone.image_preprocessing
    sizes = pyramid.anchor_sizes()
    model = FCOS(pyramid, num_classes=len(classes), min_size=image_size, max_size=int(round(image_size * 4 / 3)),
                 image_mean=list(pre.mean), image_std=list(pre.std),
                 anchor_generator=AnchorGenerator(sizes, ((1.0,),) * len(sizes)),
                 head=FCOSHead(channels, 1, len(classes), num_convs=head_convs),
                 score_thresh=EVALUATION_SCORE, detections_per_img=100)
    spec = {"backbone": backbone_name, "image_size": image_size, "levels": levels, "channels": channels,
            "head_convs": head_convs, "mean": list(pre.mean), "std": list(pre.std)}
    return model, spec


def load_images(items: Sequence[Any]) -> list[torch.Tensor]:
    """Images (paths, PIL images or ``(H, W, 3)`` uint8 arrays) as ``(3, H, W)`` float tensors in 0..1."""
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    out = []
    for item in items:
        if isinstance(item, (str, Path)):
            with Image.open(item) as image:
                image = image.convert("RGB")
        elif isinstance(item, np.ndarray):
            image = Image.fromarray(item).convert("RGB")
        else:
            image = item.convert("RGB")
        out.append(pil_to_tensor(image).float().div_(255))
    return out


class DetectionModel:
    """A trained detector: the FCOS network, its class names and the spec that rebuilds it.

    :meth:`detect` gives ``{"boxes": (n, 4) float32 pixel corners, "labels": (n,) int64, "scores": (n,) float32}``
    per image; :meth:`prediction_records` what ``predict`` returns (class names, scores, boxes).
    """

    task = "detection"
    modality = "image"
    #: ``predict`` asks the model for its records instead of a task's record of class probabilities.
    predicts_records = True

    def __init__(self, network: nn.Module, classes: Sequence[str], spec: dict[str, Any], *,
                 strategy: str = "finetune") -> None:
        self.network = network
        self.classes = list(classes)
        self.spec = dict(spec)
        self.strategy = strategy

    def detect(self, images: Sequence[Any], *, batch_size: int = 8, device: str = "cpu",
               score_threshold: float = EVALUATION_SCORE) -> list[dict[str, np.ndarray]]:
        """Detections of each image (see the class docstring), those scoring at least ``score_threshold``."""
        self.network.to(device).eval()
        out: list[dict[str, np.ndarray]] = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = [t.to(device) for t in load_images(images[start:start + batch_size])]
                for found in self.network(batch):
                    keep = found["scores"] >= score_threshold
                    out.append({k: found[k][keep].cpu().numpy() for k in ("boxes", "labels", "scores")})
        return out

    def prediction_records(self, images: Sequence[Any], *, batch_size: int = 8, device: str = "cpu",
                           score_threshold: float = PREDICT_SCORE) -> list[dict[str, Any]]:
        """One record per image: ``input`` and ``detections`` (``label``, ``score``, ``box`` [x1, y1, x2, y2] in
        the image's pixels), best first."""
        found = self.detect(images, batch_size=batch_size, device=device, score_threshold=score_threshold)
        return [{"input": str(item), "detections": detection_list(f, self.classes)} for item, f in zip(images, found)]

    def predict_proba(self, *_: Any, **__: Any) -> Any:
        raise ConfigError("a detector gives boxes, not class probabilities; use predict (boxes, classes, scores).")

    predict = predict_proba


def detection_list(found: dict[str, np.ndarray], classes: Sequence[str]) -> list[dict[str, Any]]:
    """One image's detections as JSON-able records, best score first."""
    order = np.argsort(-found["scores"], kind="stable")
    return [{"label": classes[int(found["labels"][i])], "score": round(float(found["scores"][i]), 4),
             "box": [round(float(v), 2) for v in found["boxes"][i]]} for i in order]


def rebuild_detector(spec: dict[str, Any], classes: Sequence[str]) -> nn.Module:
    """The network of a saved detector, without pretrained weights (the saved ones load into it)."""
    name = str(spec["backbone"]).removeprefix("random:")
    network, _ = build_detector(name, classes, pretrained=False, image_size=int(spec["image_size"]),
                                levels=int(spec["levels"]), channels=int(spec["channels"]),
                                head_convs=int(spec["head_convs"]))
    return network
