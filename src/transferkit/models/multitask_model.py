"""A multi-task model: one backbone shared by several tasks, one head per task, each with its own class names."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError
from transferkit.features.cache import FeatureCache
from transferkit.features.extract import extract_features
from transferkit.models.heads.multitask import HeadSet


class MultiTaskModel(nn.Module):
    """``heads[task](backbone.forward_features(x))``. ``forward(batch, task)`` returns logits ``(N, classes[task])``.

    ``task_classes`` maps each task to its class names (the order of its head's outputs). :meth:`task_model` gives
    one task as a plain :class:`~transferkit.models.model.TransferModel` sharing the backbone, for every tool that takes
    a single-task model (evaluate, export, serve).
    """

    strategy = "multitask"

    def __init__(self, backbone: Backbone, heads: HeadSet, task_classes: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        if list(task_classes) != heads.tasks:
            raise ConfigError(f"task names {list(task_classes)} do not match the heads {heads.tasks}.")
        self.backbone = backbone
        self.heads = heads
        self.task_classes = {task: list(classes) for task, classes in task_classes.items()}

    @property
    def tasks(self) -> list[str]:
        return list(self.task_classes)

    @property
    def modality(self) -> str:
        return self.backbone.modality

    @property
    def classes(self) -> list[str]:
        raise ConfigError(f"a multi-task model has one set of classes per task ({', '.join(self.tasks)}); use "
                          "task_classes[task], or task_model(task) for a single-task model.")

    def _check_task(self, task: str) -> None:
        if task not in self.task_classes:
            raise ConfigError(f"unknown task '{task}'; this model predicts {', '.join(self.tasks)}.")

    def forward(self, batch: Any, task: str) -> torch.Tensor:
        return self.heads(self.backbone.forward_features(batch), task)

    def task_model(self, task: str):
        """Task ``task`` as a :class:`~transferkit.models.model.TransferModel` (the same backbone and head objects)."""
        from transferkit.models.model import TransferModel

        self._check_task(task)
        return TransferModel(self.backbone, self.heads[task], self.task_classes[task], strategy="multitask").eval()

    def predict_proba(self, data: Dataset, task: str | None = None, *, batch_size: int = 64, device: str = "auto",
                      num_workers: int = 0, cache: FeatureCache | None = None,
                      progress: bool = True) -> np.ndarray | dict[str, np.ndarray]:
        """Class probabilities of ``task`` ``(N, classes)``; without ``task``, a dict of every task's. The backbone
        runs once for all tasks."""
        if task is not None:
            self._check_task(task)
        if data.modality != self.modality:
            raise DataError(f"{data.origin}: holds {data.modality} data, but this model takes {self.modality} input.")
        features = extract_features(self.backbone, data, cache=cache, batch_size=batch_size, device=device,
                                    num_workers=num_workers, progress=progress)
        tasks = [task] if task is not None else self.tasks
        out = {name: self.task_model(name).head_proba(features) for name in tasks}
        return out[task] if task is not None else out

    def predict(self, data: Dataset, task: str | None = None, **kwargs: Any) -> list[str] | dict[str, list[str]]:
        """Class names of ``task``, or a dict ``{task: names}`` for every task."""
        proba = self.predict_proba(data, task, **kwargs)
        if task is not None:
            return [self.task_classes[task][i] for i in proba.argmax(axis=1)]
        return {name: [self.task_classes[name][i] for i in p.argmax(axis=1)] for name, p in proba.items()}
