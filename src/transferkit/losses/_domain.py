"""What DANN and CDAN share: the discriminator's binary cross-entropy (source = 1, target = 0), each domain
weighted one half, and its accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import ConfigError
from transferkit.losses import _checks


def check_discriminator(owner: str, discriminator: object) -> nn.Module:
    if not isinstance(discriminator, nn.Module):
        raise ConfigError(f"{owner}: discriminator must be a torch.nn.Module mapping features to one logit per "
                          f"row; got {type(discriminator).__name__}.")
    return discriminator


def domain_logits(owner: str, discriminator: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Run the discriminator on ``(B, K)`` inputs; its output ``(B,)`` or ``(B, 1)`` becomes ``(B,)`` logits."""
    logits = discriminator(inputs)
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.shape != (inputs.shape[0],):
        raise ValueError(f"{owner}: the discriminator must return one logit per row, shape ({inputs.shape[0]},) or "
                         f"({inputs.shape[0]}, 1); got {tuple(logits.shape)}.")
    return logits


def domain_bce(logits: torch.Tensor, n_source: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``1/2 * BCE(source rows, 1) + 1/2 * BCE(target rows, 0)``; within a domain, rows are averaged with
    ``weights`` (normalised to sum to 1 per domain) or uniformly."""
    logits = _checks.full_precision(logits)
    labels = torch.zeros_like(logits)
    labels[:n_source] = 1.0
    per_row = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if weights is None:
        return 0.5 * (per_row[:n_source].mean() + per_row[n_source:].mean())
    source_w, target_w = weights[:n_source], weights[n_source:]
    return 0.5 * ((per_row[:n_source] * source_w).sum() / source_w.sum()
                  + (per_row[n_source:] * target_w).sum() / target_w.sum())


def balanced_accuracy(logits: torch.Tensor, n_source: int) -> float:
    """Mean of the per-domain accuracies of ``logit > 0 <=> source`` (0.5 means the domains are not told apart)."""
    predicted_source = logits > 0
    source_correct = predicted_source[:n_source].float().mean()
    target_correct = (~predicted_source[n_source:]).float().mean()
    return float(0.5 * (source_correct + target_correct))
