"""What the class names know: prototypes from the backbone's embedding of the label names (or of one-line class
descriptions), a zero-shot classifier on them, and a probe regularised towards them.

With a handful of labelled examples per class, a linear probe starts from nothing: every class direction is
learnt from those few points. When labels are words ("politics", "sandal", "animal"), the backbone already places
texts about a class near the embedding of its name. :class:`PrototypeProbe` uses that as a prior: its logits are
the zero-shot logits (a learnt scale times the cosine similarity to each class prototype) plus a linear correction
on the standardised features, and the L2 penalty pulls the *correction* to zero (not the weights). A small ``C``
gives the zero-shot classifier, a large one the plain linear probe; ``C`` is chosen by cross-validation on the
training examples, so the prior is used only as much as it helps on held-out folds.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from transferkit.errors import ConfigError, DataError, DataNotFoundError

DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
#: Columns of a label-description table: the label, then its description.
DESCRIPTION_COLUMNS = ("label", "description")


def label_text(label: str) -> str:
    """A label as words: separators (``_ - . /``) become spaces and a camel-case join is split
    (``noun.animal`` -> ``noun animal``, ``sciFi`` -> ``sci Fi``)."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", str(label))
    return re.sub(r"[\s_\-./]+", " ", text).strip() or str(label)


def read_label_descriptions(path: str | Path, classes: Sequence[str]) -> dict[str, str]:
    """A table ``label,description`` (CSV with a header; one row per class) as ``{label: description}``.

    Every label must be one of ``classes`` (a class without a row keeps its name as its text). Raises
    :class:`~transferkit.errors.DataNotFoundError` for a missing file and :class:`~transferkit.errors.DataError`
    naming the file and row for a missing column, an unknown or repeated label, or an empty description.
    """
    path = Path(path)
    option = "--label-descriptions"
    if not path.is_file():
        raise DataNotFoundError(f"{option}: {path} does not exist or is not a file; give a CSV table with the "
                                f"columns {', '.join(DESCRIPTION_COLUMNS)} (one row per class).")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = [str(name).strip().lower() for name in reader.fieldnames or []]
    except UnicodeDecodeError as exc:
        raise DataError(f"{option}: {path} is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV.") from None
    if not rows:
        raise DataError(f"{option}: {path} has no rows; give a header {','.join(DESCRIPTION_COLUMNS)} and one row "
                        "per class.")
    if [c for c in DESCRIPTION_COLUMNS if c not in header]:
        raise DataError(f"{option}: {path} must have the columns {', '.join(DESCRIPTION_COLUMNS)}; found "
                        f"{', '.join(header) or 'none'}. Put the header '{','.join(DESCRIPTION_COLUMNS)}' first.")
    known, found = {str(c) for c in classes}, {}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        label, description = row["label"], row["description"]
        if label not in known:
            raise DataError(f"{option}: {path} row {number}: label '{label}' is not a class of the training data "
                            f"(its classes: {', '.join(sorted(known))}); fix the label or drop the row.")
        if label in found:
            raise DataError(f"{option}: {path} row {number}: label '{label}' is described twice; keep one row.")
        if not description:
            raise DataError(f"{option}: {path} row {number}: the description of '{label}' is empty; write one "
                            "line about the class or drop the row.")
        found[label] = description
    return found


def class_texts(classes: Sequence[str], descriptions: dict[str, str] | None = None) -> list[str]:
    """The text embedded for each class: its description when given, else its name as words."""
    descriptions = descriptions or {}
    return [descriptions.get(str(c), label_text(str(c))) for c in classes]


def label_prototypes(backbone: Any, texts: Sequence[str], *, batch_size: int = 64, device: str = "auto",
                     progress: bool = False) -> np.ndarray:
    """``(classes, features)``: the backbone's pooled embedding of each class text (a text backbone)."""
    from transferkit.data import from_arrays
    from transferkit.features.extract import extract_features

    data = from_arrays(list(texts), None, origin="label names")
    return extract_features(backbone, data, cache=None, batch_size=batch_size, device=device, progress=progress)


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def cosine_logits(X: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """``(n, classes)`` cosine similarities of the rows of ``X`` to the prototypes."""
    return _unit_rows(np.asarray(X, dtype=np.float64)) @ _unit_rows(np.asarray(prototypes, dtype=np.float64)).T


def zero_shot_predict(X: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """Class index of the nearest prototype (cosine) for each row of ``X``."""
    return np.argmax(cosine_logits(X, prototypes), axis=1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class PrototypeProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression whose logits start from the zero-shot classifier on label prototypes.

    Logits: ``s * cos(x, p_c) + x_std . v_c + b_c`` with ``x_std`` the standardised features, ``s`` a learnt scale
    and ``v`` the correction the penalty ``||v||^2 / 2`` (against ``C`` times the summed cross-entropy, as
    scikit-learn's ``C``) pulls to zero. ``y`` holds class indices ``0 .. len(prototypes) - 1``: the prototype of
    class ``k`` is row ``k``.

    Parameters
    ----------
    prototypes : array (classes, features)
        The embedding of each class's name or description.
    C : float or None
        Inverse strength of the pull to the zero-shot classifier; None: chosen among ``Cs`` by stratified
        cross-validation (accuracy; ties go to the smaller ``C``, the stronger prior).
    """

    def __init__(self, prototypes: Any = None, C: float | None = None, Cs: Sequence[float] = DEFAULT_CS,
                 cv: int = 5, max_iter: int = 500, random_state: int = 0) -> None:
        self.prototypes = prototypes
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.random_state = random_state

    # -- the fit for one C -----------------------------------------------------------------------------------------
    @staticmethod
    def _solve(Xs: np.ndarray, O: np.ndarray, y: np.ndarray, k: int, C: float, max_iter: int,
               start: np.ndarray | None = None) -> np.ndarray:
        from scipy.optimize import minimize

        n, d = Xs.shape
        Y = np.eye(k)[y]

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            V, b, s = theta[:k * d].reshape(k, d), theta[k * d:k * d + k], theta[-1]
            logits = s * O + Xs @ V.T + b
            log_norm = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            loss = C * float(np.sum(log_norm - logits[np.arange(n), y])) + 0.5 * float(np.sum(V * V))
            G = C * (_softmax(logits) - Y)
            grad = np.concatenate([(G.T @ Xs + V).ravel(), G.sum(0), [float(np.sum(G * O))]])
            return loss, grad

        if start is None:
            start = np.zeros(k * d + k + 1)
            start[-1] = PrototypeProbe._zero_shot_scale(O, y)
        result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
        return result.x

    @staticmethod
    def _zero_shot_scale(O: np.ndarray, y: np.ndarray) -> float:
        """The scale of the cosine logits that best fits the training labels alone (a grid; the start of s)."""
        scales = np.logspace(0, 2.5, 16)
        nll = [-np.mean(np.log(_softmax(s * O)[np.arange(len(y)), y] + 1e-12)) for s in scales]
        return float(scales[int(np.argmin(nll))])

    def _offsets(self, X: np.ndarray) -> np.ndarray:
        return cosine_logits(X, self.prototypes_)

    def fit(self, X, y, X_val=None, y_val=None) -> "PrototypeProbe":
        """Fit on ``(X, y)``; ``C`` is chosen on ``(X_val, y_val)`` when given, else by cross-validation on ``X``."""
        X = validate_data(self, X, reset=True, dtype=np.float64)
        y = np.asarray(y)
        if self.prototypes is None:
            raise ConfigError("PrototypeProbe: prototypes (one row per class) are required.")
        self.prototypes_ = np.asarray(self.prototypes, dtype=np.float64)
        k = self.prototypes_.shape[0]
        if self.prototypes_.ndim != 2 or self.prototypes_.shape[1] != X.shape[1]:
            raise ConfigError(f"PrototypeProbe: prototypes must be (classes, {X.shape[1]}); got "
                              f"{self.prototypes_.shape}.")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= k:
            raise ConfigError(f"PrototypeProbe: y must hold class indices 0 .. {k - 1} (one prototype each).")
        if len(np.unique(y)) < 2:
            raise ConfigError("PrototypeProbe: needs at least 2 classes in the training labels.")
        self.classes_ = np.arange(k)
        self.scaler_ = StandardScaler().fit(X)
        scale = self.scaler_.scale_
        self.scaler_.scale_ = np.where(scale < 1e-6 * float(np.max(scale)), 1.0, scale)
        Xs, O = self.scaler_.transform(X), self._offsets(X)
        if self.C is not None:
            self.C_, self.validation_scores_ = float(self.C), {}
        else:
            self.validation_scores_ = (self._select_C(Xs, O, y, k) if X_val is None else
                                       self._select_C_on(Xs, O, y, k, np.asarray(X_val, dtype=np.float64),
                                                         np.asarray(y_val)))
            best = max(self.validation_scores_.values())
            self.C_ = min(c for c, s in self.validation_scores_.items() if s >= best - 1e-12)
        theta = self._solve(Xs, O, y, k, self.C_, self.max_iter)
        d = X.shape[1]
        self.coef_, self.intercept_, self.scale_ = theta[:k * d].reshape(k, d), theta[k * d:k * d + k], theta[-1]
        return self

    def _select_C(self, Xs: np.ndarray, O: np.ndarray, y: np.ndarray, k: int) -> dict[float, float]:
        counts = np.bincount(y, minlength=k)
        present = counts[counts > 0]
        if present.min() < 2:
            return {min(self.Cs): 0.0}
        folds = StratifiedKFold(n_splits=min(self.cv, int(present.min())), shuffle=True,
                                random_state=self.random_state)
        scores: dict[float, list[float]] = {float(c): [] for c in self.Cs}
        d = Xs.shape[1]
        for a, b in folds.split(Xs, y):
            start = None
            for C in sorted(scores):  # from the strongest prior up, each fit starting from the last solution
                start = self._solve(Xs[a], O[a], y[a], k, C, self.max_iter, start)
                V, bias, s = start[:k * d].reshape(k, d), start[k * d:k * d + k], start[-1]
                predicted = np.argmax(s * O[b] + Xs[b] @ V.T + bias, axis=1)
                scores[C].append(float(np.mean(predicted == y[b])))
        return {C: float(np.mean(values)) for C, values in scores.items()}

    def _select_C_on(self, Xs: np.ndarray, O: np.ndarray, y: np.ndarray, k: int, X_val: np.ndarray,
                     y_val: np.ndarray) -> dict[float, float]:
        """Validation accuracy of each ``C`` on held-out data."""
        Xv, Ov, d = self.scaler_.transform(X_val), self._offsets(X_val), Xs.shape[1]
        scores, start = {}, None
        for C in sorted(float(c) for c in self.Cs):
            start = self._solve(Xs, O, y, k, C, self.max_iter, start)
            V, bias, s = start[:k * d].reshape(k, d), start[k * d:k * d + k], start[-1]
            scores[C] = float(np.mean(np.argmax(s * Ov + Xv @ V.T + bias, axis=1) == y_val))
        return scores

    def to_head(self):
        """The fitted probe as a :class:`~transferkit.models.heads.PrototypeHead` computing the same logits."""
        import torch

        from transferkit.models.heads import PrototypeHead

        check_is_fitted(self, "coef_")
        head = PrototypeHead(self.coef_.shape[1], self.coef_.shape[0])
        with torch.no_grad():
            for name, value in (("mean", self.scaler_.mean_), ("scale", self.scaler_.scale_),
                                ("prototypes", _unit_rows(self.prototypes_)), ("prior_scale", self.scale_)):
                getattr(head, name).copy_(torch.as_tensor(np.asarray(value), dtype=torch.float32))
            head.linear.weight.copy_(torch.as_tensor(self.coef_, dtype=torch.float32))
            head.linear.bias.copy_(torch.as_tensor(self.intercept_, dtype=torch.float32))
        return head

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self.scale_ * self._offsets(X) + self.scaler_.transform(X) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return _softmax(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


def labels_are_words(classes: Sequence[str]) -> bool:
    """Whether most class names hold a word (two letters or more), not codes such as ``0``, ``1``, ``A3``."""
    wordless = [c for c in classes if len(re.findall(r"[A-Za-z]", str(c))) < 2]
    return len(wordless) <= len(classes) / 2


def warn_if_labels_are_not_words(classes: Sequence[str]) -> None:
    """One warning when most class names hold no letters (codes such as ``0``, ``1``, ``A3``): their embedding
    says little, and the label-name prior then only costs time."""
    wordless = [c for c in classes if len(re.findall(r"[A-Za-z]", str(c))) < 2]
    if len(wordless) > len(classes) / 2:
        warnings.warn(f"label names such as {', '.join(map(str, wordless[:3]))} are not words: a prior from "
                      "their embedding carries little; give --label-descriptions (label,description) instead.",
                      stacklevel=2)


__all__ = ["PrototypeProbe", "class_texts", "cosine_logits", "label_prototypes", "label_text", "labels_are_words",
           "read_label_descriptions", "warn_if_labels_are_not_words", "zero_shot_predict"]
