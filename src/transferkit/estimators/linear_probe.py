"""The linear probe: logistic regression on frozen (cached) features, as a scikit-learn estimator."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from transferkit.errors import ConfigError

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
#: Above this many examples ``C`` is chosen on one stratified 20 % hold-out instead of k folds: 1,000 or more
#: held-out examples compare the values of ``C`` well enough, at a fifth of the cost.
LARGE_DATA = 5_000


#: Features whose spread is below this fraction of the largest one are constant (float32 features carry about seven
#: significant digits): they are scaled by 1, not by their near-zero deviation.
RELATIVE_SCALE_FLOOR = 1e-6
#: Rows per step when the standardisation statistics are accumulated: scikit-learn's one-pass ``fit`` makes float64
#: temporaries of the whole matrix (twice the size of float32 features, plus a mask); by steps they stay ~40 MB.
SCALER_CHUNK_ROWS = 4096


def _floor_scale(scaler: StandardScaler) -> None:
    """Scale near-constant features by 1. Some encoders have dead dimensions (all-MiniLM-L6-v2 has two whose
    deviation is about 1e-33): dividing by it turns any rounding difference into logits of 1e20 or more, and makes
    fine-tuning from the probe (lp-ft) diverge at once."""
    scale = scaler.scale_
    if scale is not None and scale.size:
        scaler.scale_ = np.where(scale < RELATIVE_SCALE_FLOOR * float(np.max(scale)), 1.0, scale)


def _fit_scaler(X, with_mean: bool) -> StandardScaler:
    """A StandardScaler fitted on ``X`` a block of :data:`SCALER_CHUNK_ROWS` rows at a time (the same mean and
    scale as one ``fit``, to float rounding), so that its temporaries do not grow with the number of examples."""
    scaler = StandardScaler(with_mean=with_mean)
    for start in range(0, X.shape[0], SCALER_CHUNK_ROWS):
        scaler.partial_fit(X[start:start + SCALER_CHUNK_ROWS])
    return scaler


def _require_finite(X, name: str) -> None:
    """A :class:`~transferkit.errors.DataError` naming the rows of ``X`` that hold NaN or infinite values."""
    if sp.issparse(X):
        coo = X.tocoo()
        rows = np.unique(coo.row[~np.isfinite(coo.data)])
    else:
        values = np.asarray(X)
        if values.ndim == 0 or not np.issubdtype(values.dtype, np.number):
            return  # validate_data reports the other problems
        rows = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
    if len(rows):
        from transferkit.errors import DataError

        raise DataError(f"LinearProbe: {name} holds NaN or infinite values in {len(rows)} rows (first: row "
                        f"{int(rows[0])}); features must be finite (features from a backbone with broken weights, "
                        "or from a diverged model, cannot be probed).")


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression on standardised features, with the inverse regularisation strength ``C``
    chosen on validation data.

    Parameters
    ----------
    C : float or None
        Fixed inverse regularisation strength; ``None`` chooses it from ``Cs``.
    Cs : sequence of float
        Candidates for ``C`` (default ``1e-4 .. 1e2``, 7 values on a log scale).
    cv : int
        Folds of the stratified cross-validation that chooses ``C`` when no validation data is passed to ``fit``
        (fewer when the smallest class has fewer examples). Above 5,000 examples one stratified 20 % hold-out is used.
    standardize : bool
        Scale features to zero mean and unit variance first (scale only, for sparse input).
    max_iter : int
        Iterations of the L-BFGS solver.
    tol : float
        Stopping tolerance of the solver (scikit-learn's ``tol``; larger stops sooner).
    random_state : int
        Seed of the folds.

    Attributes: ``classes_``, ``C_`` (the chosen C), ``validation_scores_`` (C -> mean validation accuracy),
    ``scaler_``, ``model_``.
    """

    def __init__(self, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS, cv: int = 5,
                 standardize: bool = True, max_iter: int = 1000, random_state: int = 0, tol: float = 1e-4) -> None:
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.standardize = standardize
        self.max_iter = max_iter
        self.random_state = random_state
        self.tol = tol

    def _check_params(self) -> None:
        if self.C is not None and not self.C > 0:
            raise ConfigError(f"LinearProbe: C must be positive; got {self.C}.")
        if self.C is None and (len(self.Cs) == 0 or any(not c > 0 for c in self.Cs)):
            raise ConfigError(f"LinearProbe: Cs must be a non-empty list of positive numbers; got {list(self.Cs)}.")
        if self.cv < 2:
            raise ConfigError(f"LinearProbe: cv must be at least 2; got {self.cv}.")

    def _new_model(self, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, solver="lbfgs", max_iter=self.max_iter, tol=self.tol)

    def _transform(self, X):
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def fit(self, X, y, X_val=None, y_val=None, sample_weight=None) -> "LinearProbe":
        """Fit on ``(X, y)``; ``C`` is chosen on ``(X_val, y_val)`` when given, else by cross-validation on ``X``.

        ``sample_weight`` ``(N,)`` weighs the training examples (importance weights of source examples for domain
        adaptation); the cross-validation folds are then scored by weighted accuracy, which estimates the accuracy
        under the distribution the weights describe."""
        self._check_params()
        _require_finite(X, "X")
        if X_val is not None:
            _require_finite(X_val, "X_val")
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32])
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (len(y),) or not np.all(np.isfinite(sample_weight)) or sample_weight.min() < 0:
                raise ConfigError(f"LinearProbe: sample_weight must be {len(y)} finite numbers >= 0; got shape "
                                  f"{sample_weight.shape}.")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ConfigError(f"LinearProbe: needs at least 2 classes; got {len(self.classes_)}.")
        sparse = sp.issparse(X)
        self.scaler_ = _fit_scaler(X, with_mean=not sparse) if self.standardize else None
        if self.scaler_ is not None:
            _floor_scale(self.scaler_)
        if self.C is not None:
            self.C_ = float(self.C)
            self.validation_scores_ = {}
        else:
            # Before the standardised copy of X exists: the search holds its own split copies, then frees them.
            self.validation_scores_ = self._select_C(X, y, X_val, y_val, sample_weight)
            best = max(self.validation_scores_.values())
            # Among equally good values, the strongest regularisation (smallest C) generalises best.
            self.C_ = min(c for c, s in self.validation_scores_.items() if s >= best - 1e-12)
        Xs = self._transform(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_ = self._new_model(self.C_).fit(Xs, y, sample_weight=sample_weight)
        return self

    def _scaled_rows(self, X, rows):
        """The standardised rows ``rows`` of ``X``: one copy, scaled in place."""
        part = X[rows]
        return self.scaler_.transform(part, copy=False) if self.scaler_ is not None else part

    def _select_C(self, X, y, X_val, y_val, sample_weight=None) -> dict[float, float]:
        """Validation accuracy per candidate C: on ``(X_val, y_val)``, else on folds (or one hold-out) of ``X``.
        Each split's standardised copies are made when the split's turn comes, so at most one split's exist."""
        w = np.ones(len(y)) if sample_weight is None else sample_weight
        if X_val is not None:
            Xv = self._transform(validate_data(self, X_val, reset=False, accept_sparse="csr"))
            splits = iter([(self._transform(X), y, w, Xv, np.asarray(y_val), np.ones(len(y_val)))])
        else:
            counts = np.unique(y, return_counts=True)[1]
            if counts.min() < 2:
                return {1.0: 0.0}
            if len(y) > LARGE_DATA:
                splitter = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=self.random_state)
            else:
                splitter = StratifiedKFold(n_splits=min(self.cv, int(counts.min())), shuffle=True,
                                           random_state=self.random_state)
            splits = ((self._scaled_rows(X, a), y[a], w[a], self._scaled_rows(X, b), y[b], w[b])
                      for a, b in splitter.split(np.zeros(len(y)), y))
        # One regularisation path per split, from the strongest regularisation up: each fit starts from the last
        # one's solution (warm start), which the solver is then close to. On 5,000 x 1,280 Lite0 features this
        # halved the search (113 -> 56 s, same C chosen; benchmarks/results/probe_path.json).
        accs: dict[float, list[float]] = {float(C): [] for C in self.Cs}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for xa, ya, wa, xb, yb, wb in splits:
                model = self._new_model(min(self.Cs))
                model.set_params(warm_start=True)
                for C in sorted(accs):
                    model.set_params(C=C).fit(xa, ya, sample_weight=wa)
                    accs[C].append(float(np.average(model.predict(xb) == yb, weights=wb if wb.sum() > 0 else None)))
                del xa, xb  # before the next split's copies are made
        return {C: float(np.mean(values)) for C, values in accs.items()}

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, accept_sparse="csr")
        return self.model_.decision_function(self._transform(X))

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, accept_sparse="csr")
        return self.model_.predict_proba(self._transform(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def to_head(self):
        """The fitted probe as a :class:`~transferkit.models.heads.LinearHead` computing the same probabilities."""
        import torch

        from transferkit.models.heads import LinearHead

        check_is_fitted(self, "model_")
        coef, intercept = self.model_.coef_, self.model_.intercept_
        if coef.shape[0] == 1:  # binary: softmax([0, z]) equals sigmoid(z)
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        head = LinearHead(coef.shape[1], coef.shape[0])
        with torch.no_grad():
            if self.scaler_ is not None:
                if self.scaler_.mean_ is not None:
                    head.mean.copy_(torch.as_tensor(self.scaler_.mean_, dtype=torch.float32))
                head.scale.copy_(torch.as_tensor(self.scaler_.scale_, dtype=torch.float32))
            head.linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
            head.linear.bias.copy_(torch.as_tensor(intercept, dtype=torch.float32))
        return head
