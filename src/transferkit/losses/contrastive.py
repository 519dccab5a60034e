"""Supervised contrastive losses over every pair of a batch: same-class embeddings close, others far.

Both losses take one batch of embeddings and its class labels and use all ``N (N - 1) / 2`` pairs from that single
forward pass, instead of sampling sentence pairs and encoding each pair separately (SetFit's way): a batch of 32
gives 496 pairs for the cost of 32 forward passes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferkit.losses import _checks


def _embeddings_and_labels(owner: str, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    _checks.matrix(owner, "embeddings", embeddings, min_rows=2)
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{owner}: labels must be a 1-D tensor of class indices, one per embedding row "
                         f"({embeddings.shape[0]}); got {shape}.")
    if labels.is_floating_point():
        raise ValueError(f"{owner}: labels must be class indices (integers); got {labels.dtype}.")
    return F.normalize(_checks.full_precision(embeddings), dim=1), labels


class SupervisedContrastiveLoss(nn.Module):
    """Supervised contrastive loss on the cosine similarities of a batch.

    Paper: P. Khosla et al. (2020), "Supervised Contrastive Learning", NeurIPS 2020 (the ``L_out`` form).

    Formula, with ``z`` the L2-normalised embeddings, ``s_ij = z_i . z_j / temperature``, ``P(i)`` the other examples
    of ``i``'s class and ``A(i)`` every example but ``i``:

        L = mean over anchors i with P(i) non-empty of  -1/|P(i)| sum_{p in P(i)} log( exp(s_ip) / sum_{a in A(i)} exp(s_ia) )

    Shapes: ``embeddings`` ``(N, D)`` with ``N >= 2``, ``labels`` ``(N,)`` class indices -> a scalar. A batch in which
    no class appears twice has no positive pair: the loss is then 0 (with a gradient of zeros), and training
    learns nothing from that batch. Half-precision inputs are computed in float32.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = _checks.positive_float(type(self).__name__, "temperature", temperature)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z, labels = _embeddings_and_labels(type(self).__name__, embeddings, labels)
        with _checks.without_autocast(z):
            n = z.shape[0]
            self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
            logits = (z @ z.T / self.temperature).masked_fill(self_mask, float("-inf"))
            log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            positives = (labels[:, None] == labels[None, :]) & ~self_mask
            counts = positives.sum(dim=1)
            anchors = counts > 0
            if not bool(anchors.any()):
                return z.sum() * 0.0
            summed = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
            return -(summed[anchors] / counts[anchors]).mean()


class CoSENTLoss(nn.Module):
    """CoSENT ranking loss over every pair of a batch: each same-class pair should be more similar than each
    different-class pair.

    Source: J. Su (2022), "CoSENT: a more efficient sentence vector scheme than Sentence-BERT" (in Chinese); also
    sentence-transformers' ``CoSENTLoss``. Here the pairs and their order come from the class labels.

    Formula, with ``c_ij`` the cosine similarity of examples ``i`` and ``j``, ``Pos`` the same-class pairs and
    ``Neg`` the different-class pairs (each unordered pair once) and ``scale`` a sharpness:

        L = log(1 + sum_{(i,j) in Neg} sum_{(k,l) in Pos} exp(scale * (c_ij - c_kl)))
          = softplus(logsumexp_{Neg}(scale * c) + logsumexp_{Pos}(-scale * c))

    Shapes: ``embeddings`` ``(N, D)`` with ``N >= 2``, ``labels`` ``(N,)`` class indices -> a scalar; 0 (with a
    gradient of zeros) when the batch has no same-class pair or no different-class pair.
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = _checks.positive_float(type(self).__name__, "scale", scale)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z, labels = _embeddings_and_labels(type(self).__name__, embeddings, labels)
        with _checks.without_autocast(z):
            n = z.shape[0]
            upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=z.device), diagonal=1)
            cosine = z @ z.T
            same = labels[:, None] == labels[None, :]
            positive, negative = cosine[upper & same], cosine[upper & ~same]
            if positive.numel() == 0 or negative.numel() == 0:
                return z.sum() * 0.0
            return F.softplus(torch.logsumexp(self.scale * negative, 0) + torch.logsumexp(-self.scale * positive, 0))


def class_separation(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cosine similarity of same-class pairs minus that of different-class pairs (a diagnostic: higher means
    classes are better separated; in [-2, 2])."""
    z, labels = _embeddings_and_labels("class_separation", embeddings.detach(), labels)
    cosine = z @ z.T
    n = z.shape[0]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=z.device), diagonal=1)
    same = labels[:, None] == labels[None, :]
    positive, negative = cosine[upper & same], cosine[upper & ~same]
    if positive.numel() == 0 or negative.numel() == 0:
        raise ValueError("class_separation: needs at least one same-class and one different-class pair.")
    return float(positive.mean() - negative.mean())


__all__ = ["CoSENTLoss", "SupervisedContrastiveLoss", "class_separation"]
