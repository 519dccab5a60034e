"""Knowledge distillation: soft targets from a teacher (Hinton et al.) and feature matching (FitNets), and the
per-batch terms of each task's distillation loss (class probabilities, values, per-label probabilities)."""

from __future__ import annotations

import math

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


#: Class index of an unlabelled example in a batch of class indices (ignored by the cross-entropy term, as in
#: ``F.cross_entropy``); value and label-matrix targets mark an unlabelled example by NaN instead.
UNLABELLED = -100


def _batch_weights(labelled: torch.Tensor, alpha: float, like: torch.Tensor) -> torch.Tensor:
    """``alpha`` for labelled examples, 1 for unlabelled ones (their soft term is the whole objective)."""
    return torch.where(labelled, torch.full_like(like, alpha), torch.ones_like(like))


def ensemble_soft_logits(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits whose tempered softmax is the teachers' mean tempered probability.

    ``teacher_logits`` ``(K, N, C)`` (``K`` teachers) -> ``(N, C)`` equal to ``T * log(mean_k softmax(t_k / T))``.
    With one teacher this is its logits up to a per-row constant (the same soft targets).
    """
    if teacher_logits.shape[0] == 1:
        return teacher_logits[0]
    log_probs = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return temperature * (torch.logsumexp(log_probs, dim=0) - math.log(teacher_logits.shape[0]))


def classification_distillation_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                      labels: torch.Tensor, *, temperature: float,
                                      alpha: float) -> dict[str, torch.Tensor]:
    """Hinton et al.'s loss for one batch, as two named terms.

    Shapes: ``student_logits`` and ``teacher_logits`` ``(N, C)``, ``labels`` ``(N,)`` class indices with
    :data:`UNLABELLED` for unlabelled examples. With ``soft_i = T^2 KL(softmax(t_i / T) || softmax(s_i / T))``
    returns ``soft_targets`` = ``1/N sum_i w_i soft_i`` (``w_i = alpha`` when labelled, 1 otherwise) and
    ``cross_entropy`` = ``1/N sum_{i labelled} (1 - alpha) CE_i``; their sum is the batch loss. Float32.
    """
    student = student_logits.float()
    teacher = teacher_logits.detach().float()
    log_p_student = torch.log_softmax(student / temperature, dim=1)
    log_p_teacher = torch.log_softmax(teacher / temperature, dim=1)
    soft = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1) * temperature ** 2
    labelled = labels != UNLABELLED
    n = max(1, len(labels))
    terms = {"soft_targets": (_batch_weights(labelled, alpha, soft) * soft).sum() / n}
    if labelled.any():
        ce = F.cross_entropy(student[labelled], labels[labelled], reduction="sum")
        terms["cross_entropy"] = (1.0 - alpha) * ce / n
    else:
        terms["cross_entropy"] = student.sum() * 0.0
    return terms


def regression_distillation_terms(student_values: torch.Tensor, teacher_values: torch.Tensor,
                                  targets: torch.Tensor, *, alpha: float, scale: float | torch.Tensor = 1.0,
                                  hard_name: str = "mse") -> dict[str, torch.Tensor]:
    """Distillation of a regression model: the student matches the teachers' mean value, mixed with the targets.

    Shapes: ``student_values`` ``(N,)`` or ``(N, 1)``, ``teacher_values`` ``(K, N)`` or ``(K, N, 1)`` (``K``
    teachers, averaged), ``targets`` ``(N,)`` with NaN for unlabelled examples; ``scale`` is the training target's
    standard deviation, so both terms are squared errors in standardised units (unit-free, like the task's loss):

        soft_i = ((s_i - mean_k t_ki) / scale)^2
        soft_targets = 1/N sum_i w_i soft_i                  (w_i = alpha when labelled, 1 otherwise)
        <hard_name>  = 1/N sum_{i labelled} (1 - alpha) ((s_i - y_i) / scale)^2

    A temperature has no meaning for values and is not taken. Float32.
    """
    n = student_values.shape[0]
    scale = torch.as_tensor(scale, dtype=torch.float32, device=student_values.device).reshape(())
    student = student_values.float().reshape(n)
    teacher = teacher_values.detach().float().reshape(teacher_values.shape[0], n).mean(dim=0)
    y = targets.float().reshape(n)
    labelled = ~torch.isnan(y)
    soft = ((student - teacher) / scale) ** 2
    terms = {"soft_targets": (_batch_weights(labelled, alpha, soft) * soft).sum() / max(1, n)}
    hard = ((student - torch.where(labelled, y, student.detach())) / scale) ** 2
    terms[hard_name] = (1.0 - alpha) * hard[labelled].sum() / max(1, n) if labelled.any() else student.sum() * 0.0
    return terms


def multilabel_distillation_terms(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                  targets: torch.Tensor, *, temperature: float, alpha: float,
                                  hard_name: str = "binary_cross_entropy") -> dict[str, torch.Tensor]:
    """Distillation of a multi-label model: per-label tempered sigmoids of the teachers as soft targets.

    Shapes: ``student_logits`` ``(N, L)``, ``teacher_logits`` ``(K, N, L)`` (``K`` teachers), ``targets``
    ``(N, L)`` 0/1 with NaN rows for unlabelled examples. With ``q = 1/K sum_k sigmoid(t_k / T)`` and
    ``p = sigmoid(s / T)``, the soft term of an example is ``T^2`` times the mean over labels of the binary KL
    divergence ``KL(q || p) = BCE(p, q) - H(q)`` (zero when the student matches; ``T^2`` keeps its gradient's
    size, as in Hinton et al.):

        soft_targets = 1/N sum_i w_i soft_i                  (w_i = alpha when labelled, 1 otherwise)
        <hard_name>  = 1/N sum_{i labelled} (1 - alpha) mean_l BCE(sigmoid(s_il), y_il)

    Float32.
    """
    student = student_logits.float()
    n = student.shape[0]
    q = torch.sigmoid(teacher_logits.detach().float() / temperature).mean(dim=0).reshape(student.shape)
    entropy = -(torch.xlogy(q, q) + torch.xlogy(1 - q, 1 - q))
    bce = F.binary_cross_entropy_with_logits(student / temperature, q, reduction="none")
    soft = (bce - entropy).mean(dim=1) * temperature ** 2
    y = targets.float().reshape(student.shape)
    labelled = ~torch.isnan(y).any(dim=1)
    terms = {"soft_targets": (_batch_weights(labelled, alpha, soft) * soft).sum() / max(1, n)}
    if labelled.any():
        hard = F.binary_cross_entropy_with_logits(student[labelled], y[labelled], reduction="none").mean(dim=1)
        terms[hard_name] = (1.0 - alpha) * hard.sum() / max(1, n)
    else:
        terms[hard_name] = student.sum() * 0.0
    return terms


__all__ = ["DistillationLoss", "FeatureMatchingLoss", "UNLABELLED", "classification_distillation_terms",
           "ensemble_soft_logits", "multilabel_distillation_terms", "regression_distillation_terms"]
