"""Probes on frozen features for the tasks beyond single-label classification, as scikit-learn estimators.

:class:`RidgeProbe` (regression): ridge regression on standardised features and a standardised target, ``alpha``
chosen on validation data or by efficient leave-one-out cross-validation (RidgeCV). :class:`MultiLabelProbe`
(multi-label): one logistic regression per label (one-vs-rest) sharing ``C``, chosen by cross-validated mean average
precision, and a per-label decision threshold chosen on validation data (or out-of-fold probabilities) to maximise
that label's F1. Both convert to a PyTorch head computing the same outputs (``to_head()``).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from transferkit.errors import ConfigError
from transferkit.estimators.linear_probe import DEFAULT_CS, _fit_scaler, _floor_scale, _require_finite

#: Ridge penalties tried (features are standardised, so one grid fits every backbone width).
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))


def _matrix(X):
    """Features as float64: a CSR matrix stays sparse (raw TF-IDF), anything else becomes a dense array."""
    import scipy.sparse as sp

    return X.tocsr().astype(np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)


def _scaler(X, standardize: bool = True) -> StandardScaler:
    """Feature standardisation (no centring for sparse features; the identity without ``standardize``)."""
    import scipy.sparse as sp

    if not standardize:
        return StandardScaler(with_mean=False, with_std=False).fit(X)
    scaler = _fit_scaler(X, with_mean=not sp.issparse(X))  # by blocks of rows: no float64 copy of X
    _floor_scale(scaler)
    return scaler


def _copy_scaler(head, scaler: StandardScaler) -> None:
    import torch

    if scaler.mean_ is not None and scaler.with_mean:
        head.mean.copy_(torch.as_tensor(scaler.mean_, dtype=torch.float32))
    if scaler.scale_ is not None:
        head.scale.copy_(torch.as_tensor(scaler.scale_, dtype=torch.float32))


class RidgeProbe(RegressorMixin, BaseEstimator):
    """Ridge regression of a standardised target on standardised features.

    ``alpha`` fixed, or chosen from ``alphas``: by the validation R² when ``fit`` gets ``(X_val, y_val)``, else by
    leave-one-out cross-validation on the training data (RidgeCV's closed form, no refits). Attributes:
    ``alpha_``, ``C_`` (``1 / alpha_``, the figure fit records for every probe), ``validation_scores_``
    (alpha -> R²), ``target_mean_``, ``target_scale_``. ``predict`` gives values ``(N,)`` and ``predict_proba``
    the same as ``(N, 1)``, the task's outputs.
    """

    def __init__(self, alpha: float | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS,
                 standardize: bool = True) -> None:
        self.alpha = alpha
        self.alphas = alphas
        self.standardize = standardize

    def fit(self, X, y, X_val=None, y_val=None) -> "RidgeProbe":
        from sklearn.linear_model import Ridge, RidgeCV

        if self.alpha is not None and not self.alpha > 0:
            raise ConfigError(f"RidgeProbe: alpha must be > 0; got {self.alpha}.")
        X = _matrix(X)
        y = np.asarray(y, dtype=np.float64).reshape(X.shape[0])
        _require_finite(X, "X")
        self.scaler_ = _scaler(X, self.standardize)
        self.target_mean_ = float(y.mean())
        self.target_scale_ = float(y.std()) or 1.0
        Xs, ys = self.scaler_.transform(X), (y - self.target_mean_) / self.target_scale_
        if self.alpha is not None:
            self.alpha_, self.validation_scores_ = float(self.alpha), {}
        elif X_val is not None:
            _require_finite(X_val, "X_val")
            Xv = self.scaler_.transform(_matrix(X_val))
            yv = (np.asarray(y_val, dtype=np.float64) - self.target_mean_) / self.target_scale_
            variance = float(np.var(yv)) or 1.0
            self.validation_scores_ = {
                float(a): float(1 - np.mean((Ridge(alpha=a).fit(Xs, ys).predict(Xv) - yv) ** 2) / variance)
                for a in self.alphas}
            best = max(self.validation_scores_.values())
            self.alpha_ = max(a for a, s in self.validation_scores_.items() if s >= best - 1e-12)
        else:
            search = RidgeCV(alphas=list(self.alphas), store_cv_results=True).fit(Xs, ys)
            errors = search.cv_results_.mean(axis=0)  # mean leave-one-out squared error per alpha
            variance = float(np.var(ys)) or 1.0
            self.validation_scores_ = {float(a): float(1 - e / variance) for a, e in zip(self.alphas, errors)}
            self.alpha_ = float(search.alpha_)
        self.C_ = 1.0 / self.alpha_
        self.model_ = Ridge(alpha=self.alpha_).fit(Xs, ys)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        z = self.model_.predict(self.scaler_.transform(_matrix(X)))
        return z * self.target_scale_ + self.target_mean_

    def predict_proba(self, X) -> np.ndarray:
        return self.predict(X)[:, None]

    def to_head(self):
        """The fitted probe as a :class:`~transferkit.models.heads.RegressionHead` giving the same values."""
        import torch

        from transferkit.models.heads import RegressionHead

        head = RegressionHead(self.n_features_in_, 1, self.target_mean_, self.target_scale_)
        with torch.no_grad():
            _copy_scaler(head, self.scaler_)
            head.linear.weight.copy_(torch.as_tensor(self.model_.coef_.reshape(1, -1), dtype=torch.float32))
            head.linear.bias.copy_(torch.as_tensor([float(self.model_.intercept_)], dtype=torch.float32))
        return head


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def best_thresholds(y_true: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per label, the probability threshold that maximises that label's F1 on ``(y_true, proba)`` ``(N, labels)``
    (the midpoint between neighbouring probabilities; 0.5 for a label with no positive example here)."""
    thresholds = np.full(proba.shape[1], 0.5)
    for j in range(proba.shape[1]):
        truth = y_true[:, j] > 0
        if not truth.any():
            continue
        values = np.unique(proba[:, j])
        candidates = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2 if len(values) > 1 else []])
        best, best_f1 = 0.5, -1.0
        for t in candidates:
            predicted = proba[:, j] >= t
            tp = float((predicted & truth).sum())
            f1 = 2 * tp / (predicted.sum() + truth.sum())
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(t), f1
        thresholds[j] = best
    return thresholds


class MultiLabelProbe(BaseEstimator):
    """One-vs-rest logistic regression on standardised features for 0/1 targets ``(N, labels)``.

    ``C`` fixed, or chosen from ``Cs`` by mean average precision over labels (on ``(X_val, y_val)`` when given,
    else 3-fold cross-validation). Each label's decision threshold is chosen to maximise its F1 on the validation
    data (else on out-of-fold probabilities) and folded into its bias, so that 0.5 decides every label of the
    probe, of its head and of the saved model. A label present in every training row is predicted always.
    Attributes: ``C_``, ``validation_scores_`` (C -> mAP), ``thresholds_`` (per label, on the unshifted
    probabilities), ``coef_`` ``(labels, features)``, ``intercept_`` ``(labels,)`` (thresholds folded in).
    """

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, cv: int = 3, random_state: int = 0,
                 max_iter: int = 500, tol: float = 1e-4, standardize: bool = True) -> None:
        self.C, self.Cs, self.cv, self.random_state, self.max_iter = C, Cs, cv, random_state, max_iter
        self.tol, self.standardize = tol, standardize

    def _fit_labels(self, Xs: np.ndarray, Y: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        coef = np.zeros((Y.shape[1], Xs.shape[1]))
        intercept = np.zeros(Y.shape[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for j in range(Y.shape[1]):
                column = Y[:, j]
                if column.min() == column.max():  # always (or never) present: a constant answer
                    intercept[j] = 10.0 if column[0] else -10.0
                    continue
                model = LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol).fit(Xs, column)
                coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        return coef, intercept

    @staticmethod
    def _proba(Xs: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(Xs @ coef.T + intercept)))

    def fit(self, X, Y, X_val=None, Y_val=None) -> "MultiLabelProbe":
        from sklearn.metrics import average_precision_score
        from sklearn.model_selection import KFold

        X = _matrix(X)
        Y = (np.asarray(Y) > 0).astype(np.int64)
        if Y.ndim != 2 or len(Y) != X.shape[0]:
            raise ConfigError(f"MultiLabelProbe: targets must be a 0/1 matrix (N, labels) with N = {X.shape[0]}; got "
                              f"shape {Y.shape}.")
        _require_finite(X, "X")
        self.scaler_ = _scaler(X, self.standardize)
        Xs = self.scaler_.transform(X)

        def mean_ap(truth: np.ndarray, proba: np.ndarray) -> float:
            present = [j for j in range(truth.shape[1]) if truth[:, j].any() and not truth[:, j].all()]
            return float(np.mean([average_precision_score(truth[:, j], proba[:, j]) for j in present])) \
                if present else 0.0

        if X_val is not None:
            _require_finite(X_val, "X_val")
            Xv = self.scaler_.transform(_matrix(X_val))
            Yv = (np.asarray(Y_val) > 0).astype(np.int64)
            splits = []
        else:
            Xv, Yv = None, None
            folds = min(self.cv, Xs.shape[0])
            splits = list(KFold(folds, shuffle=True, random_state=self.random_state).split(Xs)) if folds >= 2 else []
        Cs = [float(self.C)] if self.C is not None else [float(c) for c in self.Cs]
        scores, held_out = {}, {}
        for C in Cs:
            if Xv is not None:
                proba = self._proba(Xv, *self._fit_labels(Xs, Y, C))
                truth = Yv
            elif splits:
                proba = np.zeros(Y.shape)
                for a, b in splits:
                    proba[b] = self._proba(Xs[b], *self._fit_labels(Xs[a], Y[a], C))
                truth = Y
            else:
                proba, truth = None, None
            scores[C] = mean_ap(truth, proba) if proba is not None else 0.0
            held_out[C] = (truth, proba)
        best = max(scores.values())
        self.C_ = min(c for c, s in scores.items() if s >= best - 1e-12)
        self.validation_scores_ = {} if self.C is not None else scores
        coef, intercept = self._fit_labels(Xs, Y, self.C_)
        truth, proba = held_out[self.C_]
        self.thresholds_ = best_thresholds(truth, proba) if proba is not None else np.full(Y.shape[1], 0.5)
        self.coef_, self.intercept_ = coef, intercept - _logit(self.thresholds_)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Per-label probabilities ``(N, labels)`` with the thresholds folded in (0.5 decides each label)."""
        return self._proba(self.scaler_.transform(_matrix(X)), self.coef_, self.intercept_)

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X) >= 0.5).astype(np.int64)

    def to_head(self):
        """The fitted probe as a :class:`~transferkit.models.heads.LinearHead` whose logits give the same
        probabilities through a sigmoid."""
        import torch

        from transferkit.models.heads import LinearHead

        head = LinearHead(self.n_features_in_, self.coef_.shape[0])
        with torch.no_grad():
            _copy_scaler(head, self.scaler_)
            head.linear.weight.copy_(torch.as_tensor(self.coef_, dtype=torch.float32))
            head.linear.bias.copy_(torch.as_tensor(self.intercept_, dtype=torch.float32))
        return head
