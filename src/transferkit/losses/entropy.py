"""Losses on unlabelled (target) predictions: entropy minimisation and minimum class confusion."""

from __future__ import annotations

import torch
from torch import nn

from transferkit.losses import _checks


def prediction_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` probabilities -> ``(N,)`` entropies in nats (``0 log 0 = 0``)."""
    return -torch.special.xlogy(probabilities, probabilities).sum(dim=1)


def logits_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` logits -> ``(N,)`` entropies of their softmax in nats, computed stably from ``log_softmax``."""
    log_probabilities = logits.log_softmax(dim=1)
    return -(log_probabilities.exp() * log_probabilities).sum(dim=1)


class EntropyLoss(nn.Module):
    """Mean entropy of the predicted class distributions: minimising it pushes decision boundaries away from the
    (unlabelled) data.

    Paper: Y. Grandvalet, Y. Bengio (2005), "Semi-supervised Learning by Entropy Minimization", NeurIPS 17.

    Formula, with ``p_i = softmax(logits_i)``:

        L = -1/N * sum_i sum_c p_ic log p_ic          (nats; 0 <= L <= log C)

    Shapes: ``logits`` ``(N, C)`` -> a scalar. Computed in float32 for half-precision inputs.
    """

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        _checks.matrix(type(self).__name__, "logits", logits)
        return logits_entropy(_checks.full_precision(logits)).mean()


class MinimumClassConfusionLoss(nn.Module):
    """Minimum class confusion: penalises the probability mass that predictions spread over pairs of classes.

    Paper: Y. Jin, X. Wang, M. Long, J. Wang (2020), "Minimum Class Confusion for Versatile Domain Adaptation"
    (MCC), ECCV.

    Formula, for a batch of ``N`` target logits over ``C`` classes and temperature ``T``:

        Y = softmax(logits / T)                                      (N, C)
        w_i = N (1 + exp(-H(Y_i))) / sum_k (1 + exp(-H(Y_k)))        (entropy weights, without gradient)
        M = Y^T diag(w) Y                                            (C, C) class confusion
        M~_jk = M_jk / sum_k' M_jk'                                  (each row normalised to sum 1)
        L = 1/C * sum_j sum_{k != j} M~_jk                           (0 <= L <= 1)

    ``L`` is near 0 when every example is confidently assigned to one class, and ``(C - 1) / C`` for uniform
    predictions. The value does not depend on the order of the rows.

    Shapes: ``logits`` ``(N, C)`` -> a scalar. Computed in float32 for half-precision inputs.

    Parameters
    ----------
    temperature
        Softmax temperature ``T > 0`` (the paper uses 2.5; larger values smooth the predictions).
    """

    def __init__(self, temperature: float = 2.5) -> None:
        super().__init__()
        self.temperature = _checks.positive_float(type(self).__name__, "temperature", temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}"

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        _checks.matrix(type(self).__name__, "logits", logits)
        scaled = _checks.full_precision(logits) / self.temperature
        probabilities = scaled.softmax(dim=1)
        n, num_classes = probabilities.shape
        with torch.no_grad():
            weights = 1.0 + torch.exp(-logits_entropy(scaled))
            weights = n * weights / weights.sum()
        confusion = probabilities.T @ (weights[:, None] * probabilities)
        # A class no example gives any probability to has an all-zero row; it then adds nothing (not 0 / 0).
        confusion = confusion / confusion.sum(dim=1, keepdim=True).clamp_min(torch.finfo(confusion.dtype).tiny)
        return (confusion.sum() - confusion.trace()) / num_classes


__all__ = ["EntropyLoss", "MinimumClassConfusionLoss", "logits_entropy", "prediction_entropy"]
