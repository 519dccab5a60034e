"""Gradient reversal and the domain-adversarial loss (DANN)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from transferkit.losses import _checks, _domain


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the backward pass multiplies the incoming gradient by ``-coefficient``."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output * (-ctx.coefficient), None


def reverse_gradient(inputs: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """``inputs`` unchanged; in the backward pass the gradient is multiplied by ``-coefficient``."""
    return _ReverseGradient.apply(inputs, float(coefficient))


def dann_coefficient(progress: float, gamma: float = 10.0) -> float:
    """The DANN schedule of the reversal coefficient: ``2 / (1 + exp(-gamma * progress)) - 1``.

    ``progress`` is the fraction of training done, in ``[0, 1]``; the coefficient rises from 0 to about 1
    (``0.9999`` at ``progress = 1`` with ``gamma = 10``), so the noisy early discriminator does not disturb the
    features (Ganin et al. 2016, section 5.2.2).
    """
    progress = _checks.float_in_range("dann_coefficient", "progress", progress, 0.0, 1.0)
    gamma = _checks.positive_float("dann_coefficient", "gamma", gamma)
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class GradientReversal(nn.Module):
    """The gradient reversal layer: identity forward, gradient times ``-coefficient`` backward.

    Paper: Y. Ganin, V. Lempitsky (2015), "Unsupervised Domain Adaptation by Backpropagation", ICML.

    Shapes: any tensor -> the same tensor. ``coefficient`` (``>= 0``) may be changed during training, typically
    ``layer.coefficient = dann_coefficient(step / total_steps)``.
    """

    def __init__(self, coefficient: float = 1.0) -> None:
        super().__init__()
        self.coefficient = coefficient

    @property
    def coefficient(self) -> float:
        return self._coefficient

    @coefficient.setter
    def coefficient(self, value: float) -> None:
        self._coefficient = _checks.non_negative_float(type(self).__name__, "coefficient", value)

    def extra_repr(self) -> str:
        return f"coefficient={self.coefficient:g}"

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(inputs, self.coefficient)


class DomainAdversarialLoss(nn.Module):
    """Domain-adversarial loss: a discriminator learns to tell source from target features, and the features,
    through gradient reversal, learn to fool it.

    Paper: Y. Ganin, E. Ustinova, H. Ajakan, P. Germain, H. Larochelle, F. Laviolette, M. Marchand, V. Lempitsky
    (2016), "Domain-Adversarial Training of Neural Networks" (DANN), JMLR 17(59).

    Formula, with ``D`` the discriminator (one logit per row), ``R`` the gradient reversal layer and ``BCE`` the
    binary cross-entropy on logits (source label 1, target label 0):

        L = 1/2 * mean_i BCE(D(R(f_s_i)), 1) + 1/2 * mean_j BCE(D(R(f_t_j)), 0)

    Each domain weighs one half whatever the batch sizes. Minimising ``L`` trains the discriminator; the reversed
    gradient trains the feature extractor to maximise it. The discriminator's parameters belong to this module,
    so they must be given to the optimizer.

    Shapes: ``source_features`` ``(N, F)``, ``target_features`` ``(M, F)`` -> a scalar. The discriminator maps
    ``(B, F)`` to logits ``(B,)`` or ``(B, 1)``; it must not end in a sigmoid.

    Parameters
    ----------
    discriminator
        A module ``(B, F) -> (B, 1)`` logits, for example ``Linear(F, 1024) -> ReLU -> Linear(1024, 1)``.
    coefficient
        Initial gradient reversal coefficient (``>= 0``); change it through :attr:`coefficient`.
    """

    def __init__(self, discriminator: nn.Module, coefficient: float = 1.0) -> None:
        super().__init__()
        self.discriminator = _domain.check_discriminator(type(self).__name__, discriminator)
        self.gradient_reversal = GradientReversal(coefficient)

    @property
    def coefficient(self) -> float:
        return self.gradient_reversal.coefficient

    @coefficient.setter
    def coefficient(self, value: float) -> None:
        self.gradient_reversal.coefficient = value

    def _logits(self, source_features: torch.Tensor, target_features: torch.Tensor,
                reverse: bool) -> torch.Tensor:
        owner = type(self).__name__
        _checks.matrix(owner, "source_features", source_features)
        _checks.matrix(owner, "target_features", target_features)
        _checks.same_width(owner, source_features, target_features)
        features = torch.cat([source_features, target_features], dim=0)
        if reverse:
            features = self.gradient_reversal(features)
        return _domain.domain_logits(owner, self.discriminator, features)

    def forward(self, source_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        logits = self._logits(source_features, target_features, reverse=True)
        return _domain.domain_bce(logits, source_features.shape[0])

    @torch.no_grad()
    def discriminator_accuracy(self, source_features: torch.Tensor, target_features: torch.Tensor) -> float:
        """Balanced accuracy of the discriminator (mean of the source and target accuracies; 0.5 = chance), for
        diagnostics. Runs the discriminator in its current mode, without gradients."""
        logits = self._logits(source_features, target_features, reverse=False)
        return _domain.balanced_accuracy(logits, source_features.shape[0])


__all__ = ["DomainAdversarialLoss", "GradientReversal", "dann_coefficient", "reverse_gradient"]
