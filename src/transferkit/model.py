"""An adapted model: a backbone, a head and the class names, with batch prediction."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.features.cache import FeatureCache
from transferkit.features.extract import extract_features


class TransferModel(nn.Module):
    """``head(backbone.forward_features(x))`` with class names. ``forward`` returns logits ``(N, classes)``."""

    def __init__(self, backbone: Backbone, head: nn.Module, classes: Sequence[str], strategy: str = "linear-probe") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.classes = list(classes)
        self.strategy = strategy

    @property
    def modality(self) -> str:
        return self.backbone.modality

    def forward(self, batch: Any) -> torch.Tensor:
        return self.head(self.backbone.forward_features(batch))

    def head_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, classes)`` from precomputed backbone features ``(N, num_features)``."""
        with torch.inference_mode():
            logits = self.head.eval()(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)))
            return torch.softmax(logits.float(), dim=1).numpy()

    def predict_proba(self, data: Dataset, *, batch_size: int = 64, device: str = "auto", num_workers: int = 0,
                      cache: FeatureCache | None = None, progress: bool = True) -> np.ndarray:
        """Class probabilities for every example of ``data`` (order of ``self.classes``)."""
        if data.modality != self.modality:
            from transferkit.errors import DataError

            raise DataError(f"{data.origin}: holds {data.modality} data, but this model takes {self.modality} input.")
        features = extract_features(self.backbone, data, cache=cache, batch_size=batch_size, device=device,
                                    num_workers=num_workers, progress=progress)
        return self.head_proba(features)

    def predict(self, data: Dataset, **kwargs: Any) -> list[str]:
        proba = self.predict_proba(data, **kwargs)
        return [self.classes[i] for i in proba.argmax(axis=1)]
