"""Correlation alignment (Deep CORAL)."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.losses import _checks


def covariance(features: torch.Tensor) -> torch.Tensor:
    """``(N, D) -> (D, D)``: the unbiased sample covariance of the rows (``N >= 2``)."""
    centred = features - features.mean(dim=0, keepdim=True)
    return centred.T @ centred / (features.shape[0] - 1)


class CoralLoss(nn.Module):
    """Distance between the second-order statistics of source and target features.

    Paper: B. Sun, K. Saenko (2016), "Deep CORAL: Correlation Alignment for Deep Domain Adaptation",
    ECCV 2016 Workshops.

    Formula, with ``C_S`` and ``C_T`` the unbiased sample covariances (divided by ``N - 1``) of the two feature
    batches and ``d`` the feature width:

        L = ||C_S - C_T||_F^2 / (4 d^2)

    Shapes: ``source`` ``(N, D)``, ``target`` ``(M, D)``, ``N, M >= 2`` (``N != M`` is fine) -> a scalar.
    Half-precision inputs (and autocast regions) are computed in float32. The loss ignores the means (only
    covariances are aligned), so it is invariant to translating either domain.
    """

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        owner = type(self).__name__
        _checks.matrix(owner, "source", source, min_rows=2)
        _checks.matrix(owner, "target", target, min_rows=2)
        _checks.same_width(owner, source, target)
        width = source.shape[1]
        with _checks.without_autocast(source):
            difference = covariance(_checks.full_precision(source)) - covariance(_checks.full_precision(target))
        return difference.pow(2).sum() / (4.0 * width * width)


__all__ = ["CoralLoss", "covariance"]
