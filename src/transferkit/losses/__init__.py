"""Loss terms for transfer learning, one small ``nn.Module`` each.

Every loss returns a scalar tensor; a strategy adds the terms it needs to its objective. ``LOSSES`` maps short
names to classes and :func:`create_loss` builds one by name with keyword options (as a config file gives them).

| name | class | inputs |
|---|---|---|
| ``mmd`` | :class:`MultiKernelMMD` | source ``(N, D)``, target ``(M, D)`` |
| ``coral`` | :class:`CoralLoss` | source ``(N, D)``, target ``(M, D)`` |
| ``dann`` | :class:`DomainAdversarialLoss` | source features, target features |
| ``cdan`` | :class:`ConditionalAdversarialLoss` | source / target features and logits |
| ``entropy`` | :class:`EntropyLoss` | logits ``(N, C)`` |
| ``mcc`` | :class:`MinimumClassConfusionLoss` | logits ``(N, C)`` |
| ``distillation`` | :class:`DistillationLoss` | student logits, teacher logits, labels or ``None`` |
| ``feature-matching`` | :class:`FeatureMatchingLoss` | student features, teacher features |
| ``l2sp`` | :class:`L2SPPenalty` | the module |
| ``supcon`` | :class:`SupervisedContrastiveLoss` | embeddings ``(N, D)``, class indices ``(N,)`` |
| ``cosent`` | :class:`CoSENTLoss` | embeddings ``(N, D)``, class indices ``(N,)`` |
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from transferkit.errors import ConfigError
from transferkit.losses.adversarial import DomainAdversarialLoss, GradientReversal, dann_coefficient, reverse_gradient
from transferkit.losses.cdan import ConditionalAdversarialLoss
from transferkit.losses.contrastive import CoSENTLoss, SupervisedContrastiveLoss
from transferkit.losses.coral import CoralLoss
from transferkit.losses.distillation import DistillationLoss, FeatureMatchingLoss
from transferkit.losses.entropy import EntropyLoss, MinimumClassConfusionLoss
from transferkit.losses.l2sp import L2SPPenalty
from transferkit.losses.mmd import MultiKernelMMD

LOSSES: dict[str, type[nn.Module]] = {
    "mmd": MultiKernelMMD,
    "coral": CoralLoss,
    "dann": DomainAdversarialLoss,
    "cdan": ConditionalAdversarialLoss,
    "entropy": EntropyLoss,
    "mcc": MinimumClassConfusionLoss,
    "distillation": DistillationLoss,
    "feature-matching": FeatureMatchingLoss,
    "l2sp": L2SPPenalty,
    "supcon": SupervisedContrastiveLoss,
    "cosent": CoSENTLoss,
}


def create_loss(name: str, **options: Any) -> nn.Module:
    """The loss registered as ``name`` (see :data:`LOSSES`), built with ``options`` as keyword arguments.

    Unknown names, unknown options and missing required options raise :class:`~transferkit.errors.ConfigError`.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}.")
    cls = LOSSES[name]
    parameters = {key: p for key, p in inspect.signature(cls.__init__).parameters.items()
                  if key != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    accepted = ", ".join(parameters) or "none"
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ConfigError(f"loss {name!r} ({cls.__name__}): unknown option(s) {', '.join(unknown)}; "
                          f"its options are: {accepted}.")
    missing = [key for key, p in parameters.items() if p.default is inspect.Parameter.empty and key not in options]
    if missing:
        raise ConfigError(f"loss {name!r} ({cls.__name__}): missing required option(s) {', '.join(missing)}; "
                          f"its options are: {accepted}.")
    return cls(**options)


__all__ = [
    "LOSSES", "create_loss", "CoSENTLoss", "ConditionalAdversarialLoss", "CoralLoss", "DistillationLoss", "DomainAdversarialLoss",
    "EntropyLoss", "FeatureMatchingLoss", "GradientReversal", "L2SPPenalty", "MinimumClassConfusionLoss",
    "MultiKernelMMD", "SupervisedContrastiveLoss", "dann_coefficient", "reverse_gradient",
]
