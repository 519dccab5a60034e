"""Weighting of several tasks' losses: uncertainty weighting (a module) and PCGrad (gradient surgery).

- Uncertainty weighting (Kendall, Gal and Cipolla 2018, "Multi-Task Learning Using Uncertainty to Weigh Losses
  for Scene Geometry and Semantics"): each task ``t`` has a learned log-variance ``s_t``; the total loss is
  ``sum_t exp(-s_t) L_t + s_t / 2`` (their classification form, ``L_t / sigma_t^2 + log sigma_t`` with
  ``s_t = log sigma_t^2``). Noisier or harder tasks get a larger ``s_t`` and so a smaller weight; the ``s_t / 2``
  term keeps the weights from going to zero.
- PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"): each task's gradient ``g_i`` on the shared
  parameters is projected off the normal plane of every other task's gradient it conflicts with
  (``g_i . g_j < 0``: ``g_i <- g_i - (g_i . g_j) / ||g_j||^2 g_j``, the other tasks taken in random order), and
  the projected gradients are summed.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class UncertaintyWeighting(nn.Module):
    """``sum_t exp(-s_t) L_t + s_t / 2`` with one learned log-variance ``s_t`` per task (initialised to 0, so the
    start is the plain sum). Input: a dict of scalar task losses; output: a dict of the weighted terms."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.log_variance = nn.Parameter(torch.zeros(len(self.tasks)))

    def forward(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for index, task in enumerate(self.tasks):
            if task in losses:
                s = self.log_variance[index]
                out[task] = torch.exp(-s) * losses[task] + 0.5 * s
        return out

    def weights(self) -> dict[str, float]:
        """The current effective weight ``exp(-s_t)`` of each task."""
        return {task: float(torch.exp(-s)) for task, s in zip(self.tasks, self.log_variance.detach())}


def pcgrad_project(gradients: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad's combined gradient from per-task gradients ``(tasks, P)`` (flattened over the shared parameters);
    returns ``(P,)``. Each row is projected against the original rows of the other tasks, in a random order drawn
    from ``generator``."""
    count = gradients.shape[0]
    projected = gradients.clone()
    for i in range(count):
        others = [j for j in torch.randperm(count, generator=generator).tolist() if j != i]
        for j in others:
            dot = torch.dot(projected[i], gradients[j])
            if dot < 0:
                projected[i] -= dot / gradients[j].pow(2).sum().clamp_min(1e-20) * gradients[j]
    return projected.sum(dim=0)
