"""Feature aligners (scikit-learn transformers) for transfer without training: align cached features, then fit the
linear probe.

``source-probe`` is the reference without alignment (the plain probe on the source features). Both aligners are
fitted on source and target features and end in a
:class:`~transferkit.models.heads.LinearHead` that reads the *raw* target features, so the adapted model is an ordinary
backbone + linear head (saved, loaded and exported like a linear probe).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from transferkit.errors import ConfigError


def _matrix_power(covariance: np.ndarray, power: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(covariance)
    values = np.clip(values, 1e-12, None)
    return (vectors * values ** power) @ vectors.T


def _standardiser(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale < 1e-6 * max(float(scale.max()), 1e-12), 1.0, scale)
    return mean, scale


class CoralRecoloring(TransformerMixin, BaseEstimator):
    """CORAL: whiten the source features, then re-colour them with the target covariance.

    Paper: B. Sun, J. Feng, K. Saenko (2016), "Return of Frustratingly Easy Domain Adaptation", AAAI.

    Formula, in the space standardised by the pooled mean and deviation, with ``C_S = cov(X_S) + lambda I`` and
    ``C_T = cov(X_T) + lambda I``:

        X_S' = (X_S - mu_S) C_S^{-1/2} C_T^{1/2} + mu_T

    (the paper's formula, plus the mean shift, which the paper gets from standardising each domain). A classifier
    trained on ``X_S'`` applies to the raw target features. ``fit(source, target)``; ``transform(source)``.
    Shapes: ``(N, D)``, ``(M, D)`` -> ``(N, D)``.

    Parameters
    ----------
    regularization : float
        ``lambda`` (1.0 as in the paper, in standardised units).
    """

    def __init__(self, regularization: float = 1.0) -> None:
        self.regularization = regularization

    def fit(self, source: np.ndarray, target: np.ndarray) -> "CoralRecoloring":
        if not self.regularization > 0:
            raise ConfigError(f"CoralRecoloring: regularization must be > 0; got {self.regularization!r}.")
        source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
        self.mean_, self.scale_ = _standardiser(np.vstack([source, target]))
        s, t = (source - self.mean_) / self.scale_, (target - self.mean_) / self.scale_
        eye = np.eye(s.shape[1])
        cs = np.cov(s, rowvar=False) + self.regularization * eye
        ct = np.cov(t, rowvar=False) + self.regularization * eye
        self.source_mean_, self.target_mean_ = s.mean(axis=0), t.mean(axis=0)
        self.transform_ = _matrix_power(cs, -0.5) @ _matrix_power(ct, 0.5)
        return self

    def transform(self, source: np.ndarray) -> np.ndarray:
        s = (np.asarray(source, np.float64) - self.mean_) / self.scale_
        aligned = (s - self.source_mean_) @ self.transform_ + self.target_mean_
        return (aligned * self.scale_ + self.mean_).astype(np.float32)

    def head_from_probe(self, probe_head):
        """The probe trained on re-coloured source features already reads raw target features."""
        return probe_head


class SubspaceAlignment(TransformerMixin, BaseEstimator):
    """Subspace alignment: map the source PCA basis onto the target's.

    Paper: B. Fernando, A. Habrard, M. Sebban, T. Tuytelaars (2013), "Unsupervised Visual Domain Adaptation Using
    Subspace Alignment", ICCV.

    Formula, each domain z-scored by its own mean and deviation, ``P_S`` and ``P_T`` the ``(D, d)`` bases of their
    first ``d`` principal components and ``M = P_S^T P_T`` ``(d, d)``:

        source -> z(X_S) P_S M        target -> z(X_T) P_T            (both ``(., d)``)

    ``fit(source, target)``; ``transform(source)`` and ``transform_target(target)``. The probe fitted on the
    aligned source composes with the target projection into one linear head on raw target features.
    """

    def __init__(self, n_components: int = 64) -> None:
        self.n_components = n_components

    def fit(self, source: np.ndarray, target: np.ndarray) -> "SubspaceAlignment":
        from sklearn.decomposition import PCA

        source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
        d = int(min(self.n_components, source.shape[1], len(source) - 1, len(target) - 1))
        if d < 1:
            raise ConfigError(f"SubspaceAlignment: n_components must be >= 1 and below the number of examples; "
                              f"got {self.n_components} with {len(source)} source and {len(target)} target rows.")
        self.source_mean_, self.source_scale_ = _standardiser(source)
        self.target_mean_, self.target_scale_ = _standardiser(target)
        ps = PCA(n_components=d).fit((source - self.source_mean_) / self.source_scale_).components_.T
        pt = PCA(n_components=d).fit((target - self.target_mean_) / self.target_scale_).components_.T
        self.source_basis_, self.target_basis_ = ps, pt
        self.alignment_ = ps.T @ pt
        return self

    def transform(self, source: np.ndarray) -> np.ndarray:
        z = (np.asarray(source, np.float64) - self.source_mean_) / self.source_scale_
        return (z @ self.source_basis_ @ self.alignment_).astype(np.float32)

    def transform_target(self, target: np.ndarray) -> np.ndarray:
        z = (np.asarray(target, np.float64) - self.target_mean_) / self.target_scale_
        return (z @ self.target_basis_).astype(np.float32)

    def head_from_probe(self, probe_head):
        """One :class:`LinearHead` on raw target features ``(N, D)`` computing ``probe_head(transform_target(x))``."""
        import torch

        from transferkit.models.heads import LinearHead

        weight = probe_head.linear.weight.detach().double().numpy() / probe_head.scale.double().numpy()
        bias = probe_head.linear.bias.detach().double().numpy() - weight @ probe_head.mean.double().numpy()
        head = LinearHead(self.target_basis_.shape[0], weight.shape[0])
        with torch.no_grad():
            head.mean.copy_(torch.as_tensor(self.target_mean_, dtype=torch.float32))
            head.scale.copy_(torch.as_tensor(self.target_scale_, dtype=torch.float32))
            head.linear.weight.copy_(torch.as_tensor(weight @ self.target_basis_.T, dtype=torch.float32))
            head.linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        return head


class NoAlignment(TransformerMixin, BaseEstimator):
    """The identity: the linear probe on the source features as they are (``source-probe``), the source-only
    reference of the feature methods, often stronger than a trained head on frozen features."""

    def fit(self, source: np.ndarray, target: np.ndarray) -> "NoAlignment":
        return self

    def transform(self, source: np.ndarray) -> np.ndarray:
        return np.asarray(source, np.float32)

    def head_from_probe(self, probe_head):
        return probe_head
