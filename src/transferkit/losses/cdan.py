"""Conditional domain-adversarial loss (CDAN, CDAN+E)."""

from __future__ import annotations

import math

import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.losses import _checks, _domain
from transferkit.losses.adversarial import GradientReversal
from transferkit.losses.entropy import prediction_entropy

#: Above this many dimensions the exact multilinear map is replaced by the randomized one (the paper's threshold).
MAX_MULTILINEAR_DIM = 4096


class ConditionalAdversarialLoss(nn.Module):
    """Domain-adversarial loss where the discriminator sees features conditioned on the classifier's predictions.

    Paper: M. Long, Z. Cao, J. Wang, M. I. Jordan (2018), "Conditional Adversarial Domain Adaptation" (CDAN),
    NeurIPS.

    Formula. With features ``f`` (width ``F``), predictions ``g = softmax(logits)`` (``C`` classes, detached as in
    the authors' code), the multilinear map

        T(f, g) = flatten(f g^T)                                  (width F * C), or, randomized,
        T(f, g) = (R_f^T f) * (R_g^T g) / sqrt(d)                 (width d; * elementwise)

    with ``R_f`` ``(F, d)`` and ``R_g`` ``(C, d)`` fixed standard normal matrices drawn at construction (kept as
    buffers, so they are saved and restored with the state dict), and the discriminator ``D`` behind a gradient
    reversal layer ``R``:

        L = 1/2 * sum_i w_i BCE(D(R(T(f_s_i, g_s_i))), 1) / sum_i w_i
          + 1/2 * sum_j w_j BCE(D(R(T(f_t_j, g_t_j))), 0) / sum_j w_j

    with ``w = 1`` (CDAN) or, with entropy conditioning (CDAN+E), ``w = 1 + exp(-H(g))`` where ``H`` is the entropy
    of the prediction in nats: confident, easy-to-transfer examples weigh more.

    Shapes: ``source_features`` ``(N, F)``, ``target_features`` ``(M, F)``, ``source_logits`` ``(N, C)``,
    ``target_logits`` ``(M, C)`` -> a scalar. The discriminator maps ``(B, output_dim)`` to logits ``(B,)`` or
    ``(B, 1)``; build it with :attr:`output_dim` as its input width. Gradients reach the features (reversed) and
    the discriminator, not the logits.

    Parameters
    ----------
    discriminator
        A module ``(B, output_dim) -> (B, 1)`` logits (no final sigmoid).
    feature_dim, num_classes
        ``F`` and ``C``.
    entropy_conditioning
        Weight examples by ``1 + exp(-H)`` (CDAN+E).
    randomized
        Use the randomized multilinear map; ``None`` (default) uses it when ``F * C > 4096``, as in the paper.
    randomized_dim
        Width ``d`` of the randomized map (default 1024).
    coefficient
        Initial gradient reversal coefficient (``>= 0``); change it through :attr:`coefficient`.
    """

    def __init__(self, discriminator: nn.Module, feature_dim: int, num_classes: int,
                 entropy_conditioning: bool = False, randomized: bool | None = None, randomized_dim: int = 1024,
                 coefficient: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        self.discriminator = _domain.check_discriminator(owner, discriminator)
        self.feature_dim = _checks.positive_int(owner, "feature_dim", feature_dim)
        self.num_classes = _checks.positive_int(owner, "num_classes", num_classes)
        self.entropy_conditioning = _checks.boolean(owner, "entropy_conditioning", entropy_conditioning)
        if randomized is not None and not isinstance(randomized, bool):
            raise ConfigError(f"{owner}: randomized must be True, False or None (automatic); got {randomized!r}.")
        self.randomized_dim = _checks.positive_int(owner, "randomized_dim", randomized_dim)
        self.randomized = randomized if randomized is not None else feature_dim * num_classes > MAX_MULTILINEAR_DIM
        self.gradient_reversal = GradientReversal(coefficient)
        if self.randomized:
            self.register_buffer("random_features", torch.randn(feature_dim, randomized_dim))
            self.register_buffer("random_classes", torch.randn(num_classes, randomized_dim))

    @property
    def output_dim(self) -> int:
        """Width of the conditioned features the discriminator receives."""
        return self.randomized_dim if self.randomized else self.feature_dim * self.num_classes

    @property
    def coefficient(self) -> float:
        return self.gradient_reversal.coefficient

    @coefficient.setter
    def coefficient(self, value: float) -> None:
        self.gradient_reversal.coefficient = value

    def extra_repr(self) -> str:
        return (f"feature_dim={self.feature_dim}, num_classes={self.num_classes}, "
                f"entropy_conditioning={self.entropy_conditioning}, randomized={self.randomized}, "
                f"output_dim={self.output_dim}")

    def multilinear_map(self, features: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        """``(B, F), (B, C) -> (B, output_dim)``: the (possibly randomized) multilinear map ``T(f, g)``."""
        if self.randomized:
            projected = (features @ self.random_features.to(features.dtype)) \
                * (predictions @ self.random_classes.to(predictions.dtype))
            return projected / math.sqrt(self.randomized_dim)
        return torch.bmm(features.unsqueeze(2), predictions.unsqueeze(1)).flatten(1)

    def _check(self, source_features: torch.Tensor, target_features: torch.Tensor,
               source_logits: torch.Tensor, target_logits: torch.Tensor) -> None:
        owner = type(self).__name__
        _checks.matrix(owner, "source_features", source_features, width=self.feature_dim)
        _checks.matrix(owner, "target_features", target_features, width=self.feature_dim)
        _checks.matrix(owner, "source_logits", source_logits, width=self.num_classes)
        _checks.matrix(owner, "target_logits", target_logits, width=self.num_classes)
        for domain, features, logits in (("source", source_features, source_logits),
                                         ("target", target_features, target_logits)):
            if features.shape[0] != logits.shape[0]:
                raise ValueError(f"{owner}: {domain}_features and {domain}_logits must have the same number of "
                                 f"rows; got {features.shape[0]} and {logits.shape[0]}.")

    def _conditioned(self, source_features: torch.Tensor, target_features: torch.Tensor,
                     source_logits: torch.Tensor, target_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(source_features, target_features, source_logits, target_logits)
        features = torch.cat([source_features, target_features], dim=0)
        predictions = torch.cat([source_logits, target_logits], dim=0).detach()
        predictions = _checks.full_precision(predictions).softmax(dim=1)
        conditioned = self.multilinear_map(features, predictions.to(features.dtype))
        return conditioned, predictions

    def forward(self, source_features: torch.Tensor, target_features: torch.Tensor,
                source_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
        conditioned, predictions = self._conditioned(source_features, target_features, source_logits, target_logits)
        logits = _domain.domain_logits(type(self).__name__, self.discriminator, self.gradient_reversal(conditioned))
        weights = 1.0 + torch.exp(-prediction_entropy(predictions)) if self.entropy_conditioning else None
        return _domain.domain_bce(logits, source_features.shape[0], weights)

    @torch.no_grad()
    def discriminator_accuracy(self, source_features: torch.Tensor, target_features: torch.Tensor,
                               source_logits: torch.Tensor, target_logits: torch.Tensor) -> float:
        """Balanced accuracy of the discriminator (mean of the source and target accuracies; 0.5 = chance), for
        diagnostics. Runs the discriminator in its current mode, without gradients."""
        conditioned, _ = self._conditioned(source_features, target_features, source_logits, target_logits)
        logits = _domain.domain_logits(type(self).__name__, self.discriminator, conditioned)
        return _domain.balanced_accuracy(logits, source_features.shape[0])


__all__ = ["ConditionalAdversarialLoss", "MAX_MULTILINEAR_DIM"]
