"""Knowledge distillation: soft targets from a teacher (Hinton et al.) and feature matching (FitNets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.losses import _checks


class DistillationLoss(nn.Module):
    """Soft-target distillation from a teacher's logits, mixed with the usual cross-entropy on labels.

    Paper: G. Hinton, O. Vinyals, J. Dean (2015), "Distilling the Knowledge in a Neural Network",
    NIPS Deep Learning Workshop (arXiv:1503.02531).

    Formula, with temperature ``T``, student logits ``s``, teacher logits ``t`` and labels ``y``:

        soft = T^2 * 1/N * sum_i KL(softmax(t_i / T) || softmax(s_i / T))
        L    = alpha * soft + (1 - alpha) * CE(s, y)        when labels are given
        L    = soft                                         when labels is None (unlabelled data)

    The ``T^2`` factor keeps the soft term's gradient magnitude independent of ``T``. Without labels the soft
    term is the whole objective, so it is not scaled by ``alpha``. The teacher's logits are detached (a teacher is
    not trained by its student). ``CE`` ignores labels equal to -100, as ``F.cross_entropy`` does.

    Shapes: ``student_logits`` ``(N, C)``, ``teacher_logits`` ``(N, C)``, ``labels`` ``(N,)`` class indices or
    ``None`` -> a scalar. Computed in float32 for half-precision inputs.

    Parameters
    ----------
    temperature
        ``T > 0`` (softens both distributions; 1 leaves them unchanged). Default 4.
    alpha
        Weight of the soft term in ``[0, 1]``; ``1 - alpha`` goes to the cross-entropy. Default 0.9.
    """

    def __init__(self, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__()
        owner = type(self).__name__
        self.temperature = _checks.positive_float(owner, "temperature", temperature)
        self.alpha = _checks.float_in_range(owner, "alpha", alpha, 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature:g}, alpha={self.alpha:g}"

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        owner = type(self).__name__
        _checks.matrix(owner, "student_logits", student_logits)
        if not isinstance(teacher_logits, torch.Tensor) or teacher_logits.shape != student_logits.shape:
            shape = tuple(teacher_logits.shape) if isinstance(teacher_logits, torch.Tensor) else teacher_logits
            raise ValueError(f"{owner}: teacher_logits must have the student's shape {tuple(student_logits.shape)}; "
                             f"got {shape}.")
        student = _checks.full_precision(student_logits)
        teacher = _checks.full_precision(teacher_logits.detach())
        soft = F.kl_div((student / self.temperature).log_softmax(dim=1),
                        (teacher / self.temperature).log_softmax(dim=1),
                        reduction="batchmean", log_target=True) * self.temperature ** 2
        if labels is None:
            return soft
        if labels.shape != (student.shape[0],):
            raise ValueError(f"{owner}: labels must have shape ({student.shape[0]},); got {tuple(labels.shape)}.")
        return self.alpha * soft + (1.0 - self.alpha) * F.cross_entropy(student, labels)


class FeatureMatchingLoss(nn.Module):
    """Hint-based feature matching: a learnable linear regressor maps student features to the teacher's width,
    and the mean squared error to the teacher's features is minimised.

    Paper: A. Romero, N. Ballas, S. E. Kahou, A. Chassang, C. Gatta, Y. Bengio (2015), "FitNets: Hints for Thin
    Deep Nets", ICLR. (The paper's regressor is convolutional on feature maps; here it acts on the last axis, so it
    fits pooled features ``(N, D)`` and token features ``(N, L, D)`` alike.)

    Formula, with ``W`` ``(D_teacher, D_student)`` and ``b`` learnable:

        L = mean over all elements of (W s + b - t)^2

    or, once :meth:`set_target_statistics` has given the teacher features' per-dimension mean ``mu`` and standard
    deviation ``sigma``, the same on standardised targets, ``t' = (t - mu) / sigma``. Then ``L`` starts near 1
    whatever the teacher's feature scale (an L2-normalised sentence embedding has elements near 1/sqrt(D), whose raw
    squared errors are a thousand times smaller than a CNN's), so one weight means the same for every teacher.

    The projection's parameters belong to this module and must be given to the optimizer. The teacher's features
    are detached.

    Shapes: ``student_features`` ``(..., D_student)``, ``teacher_features`` ``(..., D_teacher)`` with the same
    leading shape -> a scalar.

    Parameters
    ----------
    student_dim, teacher_dim
        Widths of the student's and the teacher's features.
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        owner = type(self).__name__
        self.projection = nn.Linear(_checks.positive_int(owner, "student_dim", student_dim),
                                    _checks.positive_int(owner, "teacher_dim", teacher_dim))
        self.register_buffer("target_mean", None)
        self.register_buffer("target_scale", None)

    def set_target_statistics(self, teacher_features: torch.Tensor) -> None:
        """Standardise the targets from now on, with the per-dimension mean and standard deviation of
        ``teacher_features`` ``(N, D_teacher)`` (a dimension that barely varies keeps a floor of 1e-3 times the
        mean deviation, so it is not blown up)."""
        features = _checks.full_precision(teacher_features.detach())
        if features.ndim != 2 or features.shape[1] != self.projection.out_features or len(features) < 2:
            raise ValueError(f"{type(self).__name__}.set_target_statistics: expected (N >= 2, "
                             f"{self.projection.out_features}) teacher features; got {tuple(features.shape)}.")
        std = features.std(dim=0)
        self.target_mean = features.mean(dim=0)
        self.target_scale = std.clamp_min(1e-3 * float(std.mean()) + 1e-12)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        owner = type(self).__name__
        expected_student = (*teacher_features.shape[:-1], self.projection.in_features)
        if teacher_features.ndim < 1 or teacher_features.shape[-1] != self.projection.out_features \
                or student_features.shape != expected_student:
            raise ValueError(f"{owner}: expected student_features (..., {self.projection.in_features}) and "
                             f"teacher_features (..., {self.projection.out_features}) with the same leading shape; "
                             f"got {tuple(student_features.shape)} and {tuple(teacher_features.shape)}.")
        projected = self.projection(student_features)
        target = _checks.full_precision(teacher_features.detach())
        if self.target_mean is not None:
            target = (target - self.target_mean.to(target.device)) / self.target_scale.to(target.device)
        return F.mse_loss(_checks.full_precision(projected), target)


__all__ = ["DistillationLoss", "FeatureMatchingLoss"]
