"""What an explanation attributes: a loaded model as one differentiable function of its backbone's input batch.

Every model kind that ``predict`` takes has one (:func:`explained_network`):

- a single model (linear probe, fine-tuned, LoRA, distilled, one task of a multi-task model): its task's scores of
  the head's outputs ``head(backbone.forward_features(x))`` (``Task.explained_scores``: the log-probabilities of a
  classifier, so that a binary head with one free logit still has a gradient for each class); its feature map
  (``backbone.feature_map``) splits it in two for Grad-CAM;
- an ensemble: ``log sum_m w_m softmax(member_m(x) / T_m)``, the log of the probabilities it predicts;
- a stacked model: its head on the concatenated, projected features of its backbones.

An ensemble or a stacked model is explained through one input only when its backbones prepare inputs alike (the
same preprocessing); Grad-CAM, which needs a single feature map, is defined for single models only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from transferkit.errors import ConfigError


class ExplainedNetwork(nn.Module):
    """``forward(batch) -> (N, width)``: the scores attributed (log-probabilities of a classifier's classes, a
    regression's values). ``raw`` gives the model's outputs, ``explained`` turns them into the scores (in torch) and
    ``proba`` into what the model predicts (in numpy). ``backbone`` prepares the inputs. ``feature_map`` is the
    module whose output Grad-CAM weighs and ``from_map`` the rest of ``raw`` (None when the model has no single
    feature map)."""

    def __init__(self, backbone: Any, raw: nn.Module, explained: Any, proba: Any,
                 feature_map: nn.Module | None = None, from_map: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.raw = raw
        self.feature_map = feature_map
        self.from_map = from_map
        self._explained = explained
        self._proba = proba

    def outputs(self, batch: Any) -> torch.Tensor:
        if self.feature_map is not None:
            return self.from_map(self.feature_map(batch))
        return self.raw(batch)

    def forward(self, batch: Any) -> torch.Tensor:
        return self._explained(self.outputs(batch))

    @torch.no_grad()
    def predict(self, batch: Any) -> np.ndarray:
        """What the model predicts for ``batch``, ``(N, width)`` (probabilities of a classifier)."""
        return self._proba(self.outputs(batch).float().cpu().numpy())


class _Call(nn.Module):
    """A function of a batch as a module (so that captum can hook its output); ``parts`` keeps the modules it uses."""

    def __init__(self, function: Any, *parts: nn.Module) -> None:
        super().__init__()
        self.function = function
        self.parts = nn.ModuleList(parts)

    def forward(self, batch: Any) -> torch.Tensor:
        return self.function(batch)


def explained_network(model: Any) -> ExplainedNetwork:
    """The :class:`ExplainedNetwork` of a loaded model (one task already chosen from a multi-task model)."""
    from transferkit.models.combined import EnsembleModel, StackedModel

    if isinstance(model, EnsembleModel):
        return _ensemble_network(model)
    if isinstance(model, StackedModel):
        return _stacked_network(model)
    if not (hasattr(model, "backbone") and hasattr(model, "head")):
        raise ConfigError(f"explain: a {type(model).__name__} cannot be explained; give a model folder written by fit, "
                          "distill, multitask (with --task) or fuse.")
    return _single_network(model)


def _single_network(model: Any) -> ExplainedNetwork:
    from transferkit.tasks import get_task

    backbone, head = model.backbone, model.head
    task, temperature = get_task(model.task), float(model.temperature)
    raw = _Call(lambda batch: head(backbone.forward_features(batch)), backbone, head)

    def proba(outputs: np.ndarray) -> np.ndarray:
        return task.proba_from_outputs(outputs, temperature)

    feature_map = from_map = None
    if _has_feature_map(backbone):
        feature_map = _Call(backbone.feature_map, backbone)
        from_map = _Call(lambda fmap: head(backbone.pool_feature_map(fmap)), head)
    return ExplainedNetwork(backbone, raw, lambda outputs: task.explained_scores(outputs, temperature), proba,
                            feature_map, from_map)


def _has_feature_map(backbone: Any) -> bool:
    from transferkit.backbones.base import Backbone

    return type(backbone).feature_map is not Backbone.feature_map


def _same_preprocessing(backbones: Sequence[Any], kind: str) -> None:
    first = backbones[0].preprocessing
    for index, backbone in enumerate(backbones[1:], 1):
        if backbone.preprocessing != first:
            raise ConfigError(f"explain: the {kind}'s backbones prepare their input differently ({backbones[0].name} "
                              f"and {backbone.name}), so no single input can be attributed; explain each member "
                              "model on its own (its folder inside the ensemble's, or the model it was built from).")


def _ensemble_network(model: Any) -> ExplainedNetwork:
    members = [m for m in model.members]
    for member in members:
        if not hasattr(member, "backbone"):
            raise ConfigError(f"explain: an ensemble member is a {type(member).__name__}; only ensembles of single "
                              "models are explained.")
    _same_preprocessing([m.backbone for m in members], "ensemble")
    weights = torch.tensor(model.weights, dtype=torch.float32)
    orders = [torch.tensor([list(m.classes).index(c) for c in model.classes]) for m in members]

    def log_proba(batch: Any) -> torch.Tensor:
        mixed = 0.0
        for member, order, weight in zip(members, orders, weights):
            logits = member.head(member.backbone.forward_features(batch)) / float(member.temperature)
            mixed = mixed + weight * torch.softmax(logits, dim=1)[:, order]
        return torch.log(mixed.clamp_min(1e-12))

    return ExplainedNetwork(members[0].backbone, _Call(log_proba, *members), lambda outputs: outputs, np.exp)


def _stacked_network(model: Any) -> ExplainedNetwork:
    backbones = list(model.backbones)
    _same_preprocessing(backbones, "stacked model")

    def logits(batch: Any) -> torch.Tensor:
        parts = []
        for backbone, reducer in zip(backbones, model.reducers):
            features = backbone.forward_features(batch)
            if reducer is not None:
                features = (features - reducer["mean"].to(features)) @ reducer["components"].to(features).T
            parts.append(features)
        return model.head(torch.cat(parts, dim=1))

    def proba(outputs: np.ndarray) -> np.ndarray:
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    return ExplainedNetwork(backbones[0], _Call(logits, model), lambda outputs: torch.log_softmax(outputs, dim=1),
                            proba)
