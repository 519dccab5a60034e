"""Models that combine several models in output space (ensembles) or several backbones' features (stacking).

Both answer what a single :class:`~transferkit.models.model.TransferModel` answers for prediction: ``classes``,
``modality``, ``predict_proba(data, ...)`` and ``predict(data, ...)``, so ``evaluate`` and ``predict`` take them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.features.cache import FeatureCache
from transferkit.features.extract import extract_features
from transferkit.tasks import DEFAULT_TASK


def _check_modality(data: Dataset, modality: str) -> None:
    from transferkit.data.validation import check_modality

    check_modality(data, modality, "this model")


class EnsembleModel(nn.Module):
    """``p(y | x) = sum_m w_m p_m(y | x)``: a weighted mean of the members' outputs (weights on the simplex):
    class probabilities, or for the members' task the values (regression) or per-label probabilities
    (multi-label). Members may have different backbones; they must share one modality, one task and one label set
    (each member's outputs are reordered to ``classes``)."""

    strategy = "ensemble"

    def __init__(self, members: Sequence[Any], weights: Sequence[float] | None = None,
                 classes: Sequence[str] | None = None) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member model.")
        self.members = nn.ModuleList(members)
        self.classes = list(classes if classes is not None else members[0].classes)
        modalities = {m.modality for m in members}
        if len(modalities) > 1:
            raise ConfigError(f"ensemble members take different inputs ({sorted(modalities)}); combine models of one "
                              "modality.")
        for index, member in enumerate(members):
            if sorted(member.classes) != sorted(self.classes):
                raise ConfigError(f"ensemble member {index} has classes {member.classes}, the first has "
                                  f"{self.classes}; members must share one label set.")
        tasks = {getattr(m, "task", DEFAULT_TASK) for m in members}
        if len(tasks) > 1:
            raise ConfigError(f"ensemble members are models of different tasks ({sorted(tasks)}); combine models of "
                              "one task.")
        #: The members' task (:mod:`transferkit.tasks`): what the averaged outputs are.
        self.task = tasks.pop()
        self._order = [[list(m.classes).index(c) for c in self.classes] for m in members]
        weights = [1.0 / len(members)] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members) or any(w < 0 for w in weights) or not abs(sum(weights) - 1.0) < 1e-6:
            raise ConfigError(f"ensemble weights must be {len(members)} non-negative numbers summing to 1; "
                              f"got {weights}.")
        self.weights = weights

    @property
    def modality(self) -> str:
        return self.members[0].modality

    def member_probabilities(self, data: Dataset, **kwargs: Any) -> np.ndarray:
        """Each member's probabilities, aligned to ``classes``: ``(members, N, classes)``."""
        _check_modality(data, self.modality)
        return np.stack([m.predict_proba(data, **kwargs)[:, order] for m, order in zip(self.members, self._order)])

    def predict_proba(self, data: Dataset, **kwargs: Any) -> np.ndarray:
        return combine_probabilities(self.member_probabilities(data, **kwargs), self.weights)

    def predict(self, data: Dataset, **kwargs: Any) -> list[Any]:
        """The predicted class of each example (for other tasks, the task's predicted targets)."""
        from transferkit.tasks import get_task

        predicted = get_task(self.task).predictions(self.predict_proba(data, **kwargs))
        return [self.classes[i] for i in predicted] if predicted.ndim == 1 and predicted.dtype.kind in "iu" \
            else list(predicted)


def combine_probabilities(member_proba: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """``sum_m w_m P_m`` for member probabilities ``(M, N, C)`` and weights ``(M,)``; returns ``(N, C)``."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), member_proba.astype(np.float64), axes=1)


class StackedModel(nn.Module):
    """Features of several frozen backbones, each optionally projected by PCA (``(x - mean) @ components.T``),
    concatenated, then one linear head: ``head([r_1(f_1(x)), ..., r_K(f_K(x))])``, whose outputs the ``task``
    turns into the model's outputs (class probabilities, values, per-label probabilities).

    Shapes: backbone ``k`` gives ``(N, d_k)``; its projection keeps ``(N, c_k)``; the head takes
    ``(N, sum_k c_k)`` to outputs ``(N, classes)``.
    """

    strategy = "stacked"

    def __init__(self, backbones: Sequence[Any], reducers: Sequence[dict[str, torch.Tensor] | None], head: nn.Module,
                 classes: Sequence[str], task: str = DEFAULT_TASK) -> None:
        super().__init__()
        if not backbones:
            raise ConfigError("stacking needs at least one backbone.")
        if len(reducers) != len(backbones):
            raise ConfigError("stacking: one reducer (or None) per backbone.")
        modalities = {b.modality for b in backbones}
        if len(modalities) > 1:
            raise ConfigError(f"stacked backbones take different inputs ({sorted(modalities)}); stack backbones of one "
                              "modality.")
        self.backbones = nn.ModuleList(backbones)
        self.reducers = list(reducers)
        self.head = head
        self.classes = list(classes)
        self.task = task

    @property
    def modality(self) -> str:
        return self.backbones[0].modality

    def transform(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """The head's input ``(N, sum_k c_k)`` from each backbone's features."""
        parts = []
        for block, reducer in zip(features, self.reducers):
            block = np.asarray(block, dtype=np.float32)
            if reducer is not None:
                block = (block - reducer["mean"].numpy()) @ reducer["components"].numpy().T
            parts.append(block.astype(np.float32))
        return np.concatenate(parts, axis=1)

    def backbone_features(self, data: Dataset, *, batch_size: int = 64, device: str = "auto", num_workers: int = 0,
                          cache: FeatureCache | None = None, progress: bool = True) -> list[np.ndarray]:
        _check_modality(data, self.modality)
        return [extract_features(b, data, cache=cache, batch_size=batch_size, device=device, num_workers=num_workers,
                                 progress=progress) for b in self.backbones]

    def head_proba(self, stacked: np.ndarray) -> np.ndarray:
        from transferkit.tasks import get_task

        with torch.inference_mode():
            outputs = self.head.eval()(torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32)))
        return get_task(self.task).proba_from_outputs(outputs.float().numpy())

    def predict_proba(self, data: Dataset, **kwargs: Any) -> np.ndarray:
        return self.head_proba(self.transform(self.backbone_features(data, **kwargs)))

    def predict(self, data: Dataset, **kwargs: Any) -> list[str]:
        return [self.classes[i] for i in self.predict_proba(data, **kwargs).argmax(axis=1)]
