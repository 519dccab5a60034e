"""Multi-kernel maximum mean discrepancy (the alignment term of DAN)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from transferkit.errors import ConfigError
from transferkit.losses import _checks

DEFAULT_KERNEL_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def squared_distances(points: torch.Tensor) -> torch.Tensor:
    """``(P, D) -> (P, P)`` squared Euclidean distances, exactly zero on the diagonal, never negative.

    Computed as ``|x|^2 + |y|^2 - 2 x.y`` (memory ``P^2``, not ``P^2 D``)."""
    norms = points.pow(2).sum(dim=1)
    distances = (norms[:, None] + norms[None, :] - 2.0 * points @ points.T).clamp_min(0.0)
    off_diagonal = ~torch.eye(points.shape[0], dtype=torch.bool, device=points.device)
    return distances * off_diagonal


class MultiKernelMMD(nn.Module):
    """Squared maximum mean discrepancy between source and target features with a family of Gaussian kernels.

    Paper: M. Long, Y. Cao, J. Wang, M. I. Jordan (2015), "Learning Transferable Features with Deep Adaptation
    Networks" (DAN), ICML. The estimators are those of A. Gretton et al. (2012), "A Kernel Two-Sample Test".

    Formula. With the pooled sample ``z = [x_1..x_N, y_1..y_M]`` and ``d_ij = ||z_i - z_j||^2``, a base bandwidth
    ``gamma`` (the median or the mean of ``d_ij`` over the ``(N+M)(N+M-1)/2`` pairs ``i < j``, computed without
    gradient; the median of an even count is the lower middle value, as ``torch.median`` gives it; or a fixed
    number) and multipliers ``m_1..m_K``, the kernel is the average of Gaussians

        k(a, b) = 1/K * sum_k exp(-||a - b||^2 / (m_k * gamma))

    (``m_k * gamma`` plays the role of ``2 sigma_k^2``). Biased estimate (a V-statistic; >= 0, and exactly 0 when
    the two samples are equal):

        MMD^2 = mean_{i,i'} k(x_i, x_i') + mean_{j,j'} k(y_j, y_j') - 2 mean_{i,j} k(x_i, y_j)

    Unbiased estimate (a U-statistic): the same with the diagonal terms ``k(x_i, x_i)`` and ``k(y_j, y_j)`` left out
    of the first two means (divided by ``N(N-1)`` and ``M(M-1)``); it estimates the population MMD^2 without the
    ``O(1/N)`` bias, and can therefore be slightly negative.

    Shapes: ``source`` ``(N, D)``, ``target`` ``(M, D)`` (``N != M`` is fine; the unbiased estimate needs
    ``N, M >= 2``) -> a scalar. Half-precision inputs (and autocast regions) are computed in float32.
    Cost ``O((N+M)^2 (D + K))``.

    Parameters
    ----------
    kernel_multipliers
        Multipliers ``m_k`` of the base bandwidth, one Gaussian kernel each (default ``(0.25, 0.5, 1, 2, 4)``).
    bandwidth
        ``"median"`` or ``"mean"`` of the pooled pairwise squared distances of each batch, or a fixed positive
        number (in squared feature units).
    unbiased
        Use the unbiased estimate instead of the biased one (default ``False``).
    """

    def __init__(self, kernel_multipliers: Sequence[float] = DEFAULT_KERNEL_MULTIPLIERS,
                 bandwidth: str | float = "median", unbiased: bool = False) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(kernel_multipliers, (int, float)) or not isinstance(kernel_multipliers, Sequence) \
                or len(kernel_multipliers) == 0:
            raise ConfigError(f"{owner}: kernel_multipliers must be a non-empty sequence of numbers > 0; "
                              f"got {kernel_multipliers!r}.")
        for value in kernel_multipliers:
            if not _checks.is_number(value) or not 0 < value < float("inf"):
                raise ConfigError(f"{owner}: every entry of kernel_multipliers must be a finite number > 0; got "
                                  f"{value!r} in {tuple(kernel_multipliers)!r}.")
        if isinstance(bandwidth, str):
            if bandwidth not in ("median", "mean"):
                raise ConfigError(f"{owner}: bandwidth must be 'median', 'mean' or a number > 0; got {bandwidth!r}.")
        else:
            bandwidth = _checks.positive_float(owner, "bandwidth", bandwidth)
        self.kernel_multipliers = tuple(float(m) for m in kernel_multipliers)
        self.bandwidth = bandwidth
        self.unbiased = _checks.boolean(owner, "unbiased", unbiased)

    def extra_repr(self) -> str:
        return f"kernel_multipliers={self.kernel_multipliers}, bandwidth={self.bandwidth!r}, unbiased={self.unbiased}"

    def _base_bandwidth(self, distances: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.bandwidth, str):
            return distances.new_tensor(self.bandwidth)
        with torch.no_grad():
            rows, columns = torch.triu_indices(*distances.shape, offset=1, device=distances.device)
            pairs = distances[rows, columns]
            gamma = pairs.median() if self.bandwidth == "median" else pairs.mean()
            # Identical points everywhere: any bandwidth gives k = 1 and MMD = 0; avoid 0 / 0.
            return gamma.clamp_min(torch.finfo(distances.dtype).tiny)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        owner = type(self).__name__
        min_rows = 2 if self.unbiased else 1
        _checks.matrix(owner, "source", source, min_rows=min_rows)
        _checks.matrix(owner, "target", target, min_rows=min_rows)
        _checks.same_width(owner, source, target)
        n, m = source.shape[0], target.shape[0]
        points = _checks.full_precision(torch.cat([source, target], dim=0))
        with _checks.without_autocast(points):
            distances = squared_distances(points)
        gamma = self._base_bandwidth(distances)
        kernel = sum(torch.exp(-distances / (multiplier * gamma)) for multiplier in self.kernel_multipliers)
        kernel = kernel / len(self.kernel_multipliers)
        k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
        if self.unbiased:
            # The diagonal of each block is exactly 1 (zero distance).
            within_source = (k_ss.sum() - n) / (n * (n - 1))
            within_target = (k_tt.sum() - m) / (m * (m - 1))
        else:
            within_source, within_target = k_ss.mean(), k_tt.mean()
        return within_source + within_target - 2.0 * k_st.mean()


__all__ = ["MultiKernelMMD", "DEFAULT_KERNEL_MULTIPLIERS"]
