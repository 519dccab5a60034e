"""Domain adaptation on the shared engine: one :class:`AdaptationPlan` whose loss terms depend on the method.

Every method trains the same network (:class:`AdaptationNetwork`: an optional backbone, a
:class:`~transferkit.models.heads.BottleneckHead`, and the auxiliary modules of its loss, such as a discriminator) on
batches that hold a labelled source half and an unlabelled target half (:class:`PairedExamples`). The engine sums
the terms:

| method | terms besides the (weighted) source cross-entropy |
|---|---|
| ``source-only`` | none |
| ``dan`` | ``tradeoff * MMD^2(h_s, h_t)`` (multi-kernel, on bottleneck features) |
| ``coral`` | ``tradeoff * CORAL(h_s, h_t)`` |
| ``dann`` | ``tradeoff * BCE(D(R(h)))``, gradient reversal scaled by the DANN schedule |
| ``cdan`` | the same on ``h (x) softmax(logits)``, entropy-conditioned (CDAN+E) |
| ``mcc`` | ``tradeoff * MCC(target logits)`` |
| ``probe-mcc`` | the same on a linear head that starts as the source probe, plus the L2-SP pull towards that start (``ANCHOR_ALPHA``); no weight decay |
| ``entropy`` | ``tradeoff * H(target predictions)`` |
| ``self-train`` | ``tradeoff * CE(target logits, pseudo-labels)`` on target rows whose confidence passes a threshold that moves from ``threshold_start`` to ``threshold_end`` during training |
| ``iw`` | none; the source cross-entropy is weighted by importance weights |
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset as TorchDataset

from transferkit.engine.plan import ParamGroup, TrainingPlan
from transferkit.errors import ConfigError
from transferkit.models.heads.bottleneck import BottleneckHead
from transferkit.strategies.adaptation.registry import TRAINED, adaptation_method_names, get_adaptation_method

#: ``alpha`` of the L2-SP term of ``probe-mcc`` (``alpha / 2 * ||w - w_probe||^2``). The strongly regularised probe
#: transfers better than a head trained freely on the source; MCC alone pulls the head away from it epoch by epoch.
ANCHOR_ALPHA = 0.2


def discriminator(width: int, hidden: int = 256) -> nn.Module:
    """The domain discriminator of DANN / CDAN: ``Linear(width, hidden) -> ReLU -> Dropout -> Linear -> ReLU ->
    Dropout -> Linear(hidden, 1)`` (logits, no sigmoid), as in Ganin et al. (2016), narrower."""
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(hidden, 1))


class AdaptationNetwork(nn.Module):
    """``head(backbone.forward_features(x))`` (or ``head(x)`` on cached features when ``backbone`` is None), plus
    the auxiliary modules of the method's loss under ``auxiliary`` (trained, checkpointed and moved with it)."""

    def __init__(self, head: BottleneckHead | nn.Module, backbone: nn.Module | None = None,
                 auxiliary: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.auxiliary = nn.ModuleDict(auxiliary or {})

    def features(self, inputs: Any) -> torch.Tensor:
        return self.backbone.forward_features(inputs) if self.backbone is not None else inputs

    def embed_and_classify(self, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Bottleneck features ``(B, hidden)`` and logits ``(B, classes)``; a linear head (no bottleneck) gives the
        backbone features themselves."""
        if not hasattr(self.head, "embed"):
            features = self.features(inputs)
            return features, self.head(features)
        embedded = self.head.embed(self.features(inputs))
        return embedded, self.head.classifier(embedded)

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.head(self.features(inputs))


class AdaptationPlan(TrainingPlan):
    """The engine-facing side of every trained adaptation method (see the module docstring for the terms).

    ``progress`` (the fraction of training done, kept up to date by the engine's progress hook) drives the
    gradient-reversal schedule and the pseudo-label threshold.
    """

    def __init__(self, method: str, tradeoff: float, *, backbone_trainable: bool, head_lr_multiplier: float = 10.0,
                 threshold_start: float = 0.95, threshold_end: float = 0.8) -> None:
        trained = [name for name in adaptation_method_names() if get_adaptation_method(name).kind == TRAINED]
        if method not in trained:
            raise ConfigError(f"unknown adaptation method {method!r}; choose one of {', '.join(trained)}.")
        if not tradeoff >= 0:
            raise ConfigError(f"option 'tradeoff' must be >= 0; got {tradeoff!r}.")
        self.method, self.tradeoff = method, float(tradeoff)
        self.entry = get_adaptation_method(method)
        self.backbone_trainable = backbone_trainable
        self.head_lr_multiplier = head_lr_multiplier
        self.threshold_start, self.threshold_end = threshold_start, threshold_end
        self.progress = 0.0
        self.pseudo_labelled = 0

    def auxiliary_modules(self, hidden: int, num_classes: int, head: nn.Module | None = None) -> dict[str, nn.Module]:
        """The loss modules of the method (its loss, holding its discriminator where it has one; for ``probe-mcc``
        also the L2-SP penalty holding ``head``'s starting weights): the registry entry's ``auxiliary`` hook."""
        return self.entry.auxiliary(hidden, num_classes, head)

    def threshold(self) -> float:
        """The pseudo-label confidence threshold now (linear from ``threshold_start`` to ``threshold_end``)."""
        return self.threshold_start + (self.threshold_end - self.threshold_start) * self.progress

    def set_progress(self, fraction: float) -> None:
        from transferkit.losses import dann_coefficient

        self.progress = float(min(1.0, max(0.0, fraction)))
        self._coefficient = dann_coefficient(self.progress)

    def reversal_coefficient(self) -> float:
        """The gradient-reversal coefficient of DANN / CDAN now (0 before the first progress update)."""
        return getattr(self, "_coefficient", 0.0)

    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        head_lr = lr * self.head_lr_multiplier if self.backbone_trainable else lr
        groups = []
        if self.backbone_trainable and model.backbone is not None:
            groups.append(ParamGroup("backbone", [p for p in model.backbone.parameters() if p.requires_grad], lr))
        # probe-mcc: the L2-SP term replaces weight decay (which would pull the probe's weights to zero instead)
        groups.append(ParamGroup("head", list(model.head.parameters()), head_lr,
                                 weight_decay=self.entry.head_weight_decay))
        auxiliary = [p for p in model.auxiliary.parameters() if p.requires_grad]
        if auxiliary:
            groups.append(ParamGroup("discriminator", auxiliary, head_lr))
        return groups

    def loss_terms(self, model: nn.Module, inputs: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, dict):  # a plain labelled batch (no target half): source cross-entropy only
            return {"cross_entropy": F.cross_entropy(model(inputs), targets)}
        h_s, logits_s = model.embed_and_classify(inputs["source"])
        per_example = F.cross_entropy(logits_s.float(), targets, reduction="none")
        weights = inputs.get("weight")
        if weights is not None and self.entry.weights_source:
            cross_entropy = (per_example * weights).sum() / weights.sum().clamp_min(1e-12)
        else:
            cross_entropy = per_example.mean()
        terms = {"cross_entropy": cross_entropy}
        if self.entry.target_loss is None or self.tradeoff == 0:
            return terms
        h_t, logits_t = model.embed_and_classify(inputs["target"])
        term, extra = self.entry.target_loss(self, model, h_s, h_t, logits_s, logits_t)
        terms.update(extra)
        terms[self.method.replace("-", "_")] = self.tradeoff * term
        return terms


class PairedExamples(TorchDataset):
    """Item ``i``: the prepared source example ``i mod N`` with its label and weight, and the prepared target
    example ``order[i mod M]`` (``order`` a seeded permutation). Its length is ``max(N, M)``: one epoch visits
    every example of the larger domain once and cycles through the smaller one; ``min_length`` makes it longer
    (small data sets would otherwise give too few optimiser steps per epoch)."""

    def __init__(self, source: Sequence[Any] | np.ndarray, labels: np.ndarray, target: Sequence[Any] | np.ndarray,
                 prepare: Callable[[Any], Any], weights: np.ndarray | None = None, seed: int = 0,
                 min_length: int = 0) -> None:
        if len(source) != len(labels):
            raise ValueError(f"{len(source)} source items but {len(labels)} labels")
        if len(target) == 0 or len(source) == 0:
            raise ValueError("both domains need at least one example")
        self.source, self.target, self.prepare = source, target, prepare
        self.labels = np.asarray(labels, dtype=np.int64)
        self.weights = np.ones(len(source), np.float32) if weights is None else np.asarray(weights, np.float32)
        self.order = np.random.default_rng(seed).permutation(len(target))
        self.length = max(len(source), len(target), int(min_length))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Any, Any, int, float]:
        s = index % len(self.source)
        t = int(self.order[index % len(self.target)])
        return (self.prepare(self.source[s]), self.prepare(self.target[t]), int(self.labels[s]),
                float(self.weights[s]))


class PairedCollate:
    """``({"source": batch, "target": batch, "weight": (B,)}, labels (B,))`` from :class:`PairedExamples` items."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, batch: list[tuple[Any, Any, int, float]]) -> tuple[dict[str, Any], torch.Tensor]:
        inputs = {"source": self.collate([b[0] for b in batch]), "target": self.collate([b[1] for b in batch]),
                  "weight": torch.tensor([b[3] for b in batch], dtype=torch.float32)}
        return inputs, torch.tensor([b[2] for b in batch], dtype=torch.int64)


def stack_rows(rows: list[Any]) -> torch.Tensor:
    """Collate for cached feature rows (numpy or torch) -> a float32 tensor ``(B, D)``."""
    return torch.as_tensor(np.stack([np.asarray(r, dtype=np.float32) for r in rows]))


def identity(item: Any) -> Any:
    return item
