"""Synthetic shifted domains and a pixel 'backbone' for the domain-adaptation tests (fast: 8 numbers an example)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone


class PixelBackbone(Backbone):
    """The pixels of a tiny image, scaled by one trainable factor per pixel: features = pixels * scale."""

    modality = "image"

    def __init__(self, shape: tuple[int, int] = (2, 4)) -> None:
        super().__init__("pixels")
        self.num_features = int(np.prod(shape))
        self.scale = nn.Parameter(torch.ones(self.num_features))

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"kind": "pixels"}

    def prepare(self, item: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(item, np.float32).reshape(-1) / 255.0)

    def collate(self, prepared: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(prepared))

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        return batch * self.scale

    def layer_groups(self) -> list[nn.Module]:
        return [self]


def shifted_domain(n: int, shift: tuple[float, float] = (0.0, 0.0), seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Two classes along the first axis (means -1 and +1, deviation 0.45), translated by ``shift`` in the first two
    of eight dimensions (six dimensions of noise), as uint8 images 2 x 4. A shift of (1.0, 1.5) moves a third of
    class 0 across the source's decision boundary."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = np.array([[-1.0, 0.0], [1.0, 0.0]])[y] + rng.normal(0, 0.45, (n, 2)) + np.asarray(shift)
    features = np.hstack([signal, rng.normal(0, 0.3, (n, 6))])
    images = np.clip(np.rint(128 + 30 * features), 0, 255).astype(np.uint8).reshape(n, 2, 4)
    return images, [str(v) for v in y]
