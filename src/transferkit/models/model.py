"""An adapted model: a backbone, a head and the class names, with batch prediction."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.features.cache import FeatureCache
from transferkit.features.extract import extract_features
from transferkit.tasks import DEFAULT_TASK

#: Examples per block when a model predicts in one process: 8,192 x 1,280 float32 features are 42 MB.
PREDICT_BLOCK = 8192


class TransferModel(nn.Module):
    """``head(backbone.forward_features(x))`` with class names. ``forward`` returns logits ``(N, classes)``.

    ``temperature`` (default 1) divides the logits before the softmax of :meth:`head_proba` / :meth:`predict_proba`
    (temperature scaling, fitted on validation data by :mod:`transferkit.evaluation.calibration`); it never changes
    the predicted class. ``task`` names what its labels are (:mod:`transferkit.tasks`), saved in ``config.json``.
    ``interval`` is the prediction interval calibrated for it (regression: split conformal, see
    :mod:`transferkit.evaluation.conformal`; ``None`` for none), saved in ``config.json`` and given by predict.
    """

    def __init__(self, backbone: Backbone, head: nn.Module, classes: Sequence[str], strategy: str = "linear-probe",
                 temperature: float = 1.0, task: str = DEFAULT_TASK) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.classes = list(classes)
        self.strategy = strategy
        self.temperature = float(temperature)
        self.task = task
        self.interval: dict[str, Any] | None = None

    @property
    def modality(self) -> str:
        return self.backbone.modality

    def forward(self, batch: Any) -> torch.Tensor:
        return self.head(self.backbone.forward_features(batch))

    def head_logits(self, features: np.ndarray) -> np.ndarray:
        """Logits ``(N, classes)`` (before temperature) from precomputed backbone features ``(N, num_features)``."""
        with torch.inference_mode():
            return self.head.eval()(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))).float().numpy()

    def head_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, classes)`` from precomputed backbone features ``(N, num_features)``."""
        from transferkit.tasks import get_task

        return get_task(self.task).proba_from_outputs(self.head_logits(features), self.temperature)

    def predict_logits(self, data: Dataset, *, batch_size: int = 64, device: str = "auto", num_workers: int = 0,
                       cache: FeatureCache | None = None, progress: bool = True) -> np.ndarray:
        """Logits ``(N, classes)`` (before temperature) for every example of ``data``, computed a block of
        :data:`PREDICT_BLOCK` examples at a time (see :meth:`predict_proba`)."""
        return self._by_blocks(data, self.head_logits, batch_size=batch_size, device=device,
                               num_workers=num_workers, cache=cache, progress=progress)

    def predict_proba(self, data: Dataset, *, batch_size: int = 64, device: str = "auto", num_workers: int = 0,
                      cache: FeatureCache | None = None, progress: bool = True, processes: int = 1) -> np.ndarray:
        """Class probabilities for every example of ``data`` (order of ``self.classes``), temperature applied;
        with ``processes`` above 1 the features are computed by that many CPU processes (the same features).

        In one process the examples stream through the model a block of :data:`PREDICT_BLOCK` at a time: only one
        block's backbone features exist at once, so memory grows with the outputs ``(N, classes)`` alone."""
        if processes > 1:
            features = self._features(data, batch_size=batch_size, device=device, num_workers=num_workers,
                                      cache=cache, progress=progress, processes=processes)
            return self.head_proba(features)
        return self._by_blocks(data, self.head_proba, batch_size=batch_size, device=device, num_workers=num_workers,
                               cache=cache, progress=progress)

    def _by_blocks(self, data: Dataset, head: Callable[[np.ndarray], np.ndarray], **extract: Any) -> np.ndarray:
        """``head(features)`` of every example of ``data``, the features computed a block at a time; the runtime
        is chosen once for all of them (``examples_planned``)."""
        if len(data) <= PREDICT_BLOCK:
            return head(self._features(data, **extract))
        outputs: np.ndarray | None = None
        for start in range(0, len(data), PREDICT_BLOCK):
            rows = np.arange(start, min(start + PREDICT_BLOCK, len(data)))
            block = head(self._features(data.subset(rows), examples_planned=len(data), **extract))
            if outputs is None:
                outputs = np.empty((len(data), *block.shape[1:]), dtype=block.dtype)
            outputs[rows] = block
        return outputs

    def _features(self, data: Dataset, *, batch_size: int, device: str, num_workers: int,
                  cache: FeatureCache | None, progress: bool, processes: int = 1,
                  examples_planned: int | None = None) -> np.ndarray:
        if data.modality != self.modality:
            from transferkit.errors import DataError

            raise DataError(f"{data.origin}: holds {data.modality} data, but this model takes {self.modality} input.")
        if processes > 1:
            from transferkit.features.sharded import extract_features_sharded

            return extract_features_sharded(self.backbone, data, processes=processes, cache=cache,
                                            batch_size=batch_size, device=device, num_workers=num_workers,
                                            progress=progress)
        return extract_features(self.backbone, data, cache=cache, batch_size=batch_size, device=device,
                                num_workers=num_workers, progress=progress, examples_planned=examples_planned)

    def predict(self, data: Dataset, **kwargs: Any) -> list[str]:
        proba = self.predict_proba(data, **kwargs)
        return [self.classes[i] for i in proba.argmax(axis=1)]
