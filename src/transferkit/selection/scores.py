"""Transferability scores: how well will a pretrained model do on *these* labels, judged from its frozen outputs.

Every score is a plain function with a scikit-learn-metric signature, ``score(features, labels) -> float``
(higher means "expected to transfer better"), and is listed in :data:`SCORES` with what it needs as input:

========================  ==============================  ==============================================
name                      function                        first argument
========================  ==============================  ==============================================
``logme``                 :func:`logme_score`             pooled features ``(N, D)``
``leep``                  :func:`leep_score`              source-classifier probabilities ``(N, Z)``
``nce``                   :func:`nce_score`               source-classifier probabilities (or labels)
``hscore``                :func:`h_score`                 pooled features ``(N, D)``
``shrinkage_hscore``      :func:`shrinkage_h_score`       pooled features ``(N, D)``
``logme_no_intercept``    :func:`logme_no_intercept_score`  pooled features ``(N, D)`` (the paper's exact LogME)
========================  ==============================  ==============================================

``labels`` is any 1-D array of class labels (integers or strings); only which examples share a label matters, so
every score is unchanged when the class names are permuted. Computation is in float64 and vectorised over classes.
Scores are comparable between candidates on the *same* labelled data, not between datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from transferkit.errors import ConfigError, DataError

_EPS = np.finfo(np.float64).eps
_TINY = np.finfo(np.float64).tiny
_NOISE_FREE = 1e-8  # LogME: smallest alpha / (beta s_min) allowed, the noise-free limit


# --- input checks ---------------------------------------------------------------------------------------------

def _check_labels(labels, n: int, name: str) -> tuple[np.ndarray, int]:
    """Labels -> integer codes ``(N,)`` in ``0..C-1`` and ``C``; at least two classes."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"{name}: labels must be a 1-D array of class labels; got shape {labels.shape}.")
    if len(labels) != n:
        raise DataError(f"{name}: {n} rows of features but {len(labels)} labels; give one label per row.")
    _, codes = np.unique(labels, return_inverse=True)
    n_classes = int(codes.max()) + 1 if len(codes) else 0
    if n_classes < 2:
        raise DataError(f"{name}: needs at least two classes; the labels hold {n_classes}.")
    return codes.astype(np.int64), n_classes


def _check_matrix(values, name: str, what: str = "features") -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise DataError(f"{name}: {what} must be a 2-D array (examples x dimensions); got shape {values.shape}.")
    if values.shape[0] < 2 or values.shape[1] < 1:
        raise DataError(f"{name}: needs at least 2 examples and 1 dimension; got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise DataError(f"{name}: {what} contain NaN or infinite values.")
    return values


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _check_probabilities(values, name: str, from_logits: bool) -> np.ndarray:
    values = _check_matrix(values, name, "source-classifier outputs")
    if from_logits:
        return _softmax(values)
    if values.min() < 0 or not np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        raise DataError(
            f"{name}: the source-classifier outputs are not probabilities (rows must be non-negative and sum to 1). "
            "Pass softmax probabilities, or pass logits with from_logits=True."
        )
    return values / values.sum(axis=1, keepdims=True)


def _spectrum(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Non-zero squared singular values ``sigma`` (r,), the right singular vectors ``V`` (D, r), and a function
    mapping targets ``Y`` (N, k) to ``U^T Y`` (r, k), for ``features = U diag(sqrt(sigma)) V^T``.

    Uses the thin SVD of ``features`` when N <= D, else the eigendecomposition of the D x D Gram matrix
    ``features^T features`` (cheaper for tall data). Directions below ``max(N, D) * eps`` of the largest are dropped.
    """
    n, d = features.shape
    if n <= d:
        u, s, vt = np.linalg.svd(features, full_matrices=False)
        sigma = s * s
        keep = s > s.max(initial=0.0) * max(n, d) * _EPS
        u, sigma, v = u[:, keep], sigma[keep], vt[keep].T
        return sigma, v, lambda targets: u.T @ targets
    sigma, v = np.linalg.eigh(features.T @ features)
    keep = sigma > sigma.max(initial=0.0) * max(n, d) * _EPS
    sigma, v = sigma[keep], v[:, keep]
    root = np.sqrt(sigma)
    return sigma, v, lambda targets: (v.T @ (features.T @ targets)) / root[:, None]


# --- LogME ----------------------------------------------------------------------------------------------------

def logme_score(features, labels, *, intercept: bool = True, max_iter: int = 100, tol: float = 1e-6) -> float:
    """LogME: the maximum log evidence of a Bayesian linear model on the features, per example.

    You, Liu, Wang, Long. *LogME: Practical Assessment of Pre-trained Models for Transfer Learning*, ICML 2021.

    For each class ``c`` the target is its one-vs-rest indicator ``y_c`` (N,), modelled as ``y_c = F w + e`` with
    prior ``w ~ N(0, I / alpha)`` and noise ``e ~ N(0, I / beta)``, ``F`` the features (N, D). The evidence is

        log p(y | F, alpha, beta) = N/2 log beta + D/2 log alpha - N/2 log 2 pi
                                    - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log |A|,

    with ``A = alpha I + beta F^T F`` and ``m = beta A^-1 F^T y``. It is maximised over ``(alpha, beta)`` by the
    fixed-point iteration of the paper (MacKay's updates): with ``gamma = sum_i beta s_i / (alpha + beta s_i)``
    over the eigenvalues ``s_i`` of ``F^T F``, ``alpha <- gamma / ||m||^2`` and ``beta <- (N - gamma) / ||F m - y||^2``.
    Everything is written in the singular basis of ``F`` (one SVD, or one eigendecomposition of ``F^T F`` when
    N > D), so each iteration costs O(rank x classes) and all classes iterate together. The score is the mean
    over classes of the maximised evidence divided by N.

    By default (``intercept=True``) the model also has an intercept, ``y_c = b 1 + F w + e`` with a flat prior on
    ``b``, integrated out exactly: the evidence is that of the centred targets on the centred features in the
    N - 1 dimensions orthogonal to ``1``, minus ``1/2 log N``. The paper's model (``intercept=False``) has none,
    so every candidate must also explain the mean of the one-vs-rest targets (the class frequency) through its
    features; that favours features with a strong common component and ranked TF-IDF (LSA) features below a
    random-weight text encoder on both VADER domains of ``benchmarks/rank_transferability.py``, against their
    measured accuracy. With the intercept the score is also unchanged when a constant is added to the features.

    When N <= D the maximum can lie at ``beta -> infinity`` (the noise-free limit; the evidence converges there).
    When the targets lie exactly in the span of rank-deficient features (duplicated examples, say) the evidence
    has no finite maximum; ``beta`` is then held at ``1e8 alpha / s_min``.

    Parameters
    ----------
    features : array (N, D)
        Pooled features, as they come from the backbone (no standardisation: the score is invariant to a global
        rescaling of the features, not to per-dimension rescaling).
    labels : array (N,)
        Class labels; at least two classes.
    intercept : bool
        Add a flat-prior intercept (see above); ``False`` is the paper's exact formula.
    max_iter, tol : int, float
        The iteration stops for a class when ``alpha / beta`` changes by less than ``tol`` (relative), or its
        evidence by less than ``tol / 1000`` per example.

    Returns
    -------
    float
        Mean log evidence per example; typically in (-2, 0] for one-hot targets; higher is better.
    """
    features = _check_matrix(features, "logme_score")
    codes, n_classes = _check_labels(labels, features.shape[0], "logme_score")
    n = features.shape[0]
    targets = np.zeros((n, n_classes))
    targets[np.arange(n), codes] = 1.0
    return _logme_of_targets(features, targets, intercept=intercept, max_iter=max_iter, tol=tol)


def logme_regression_score(features, targets, *, intercept: bool = True, max_iter: int = 100,
                           tol: float = 1e-6) -> float:
    """LogME for regression (You et al., ICML 2021, the real-valued form): the same Bayesian linear model as
    :func:`logme_score`, fitted to each target column itself instead of one-vs-rest indicators; the score is the
    mean over columns of the maximised log evidence per example. Each column is standardised first (zero mean,
    unit deviation), so the figure does not depend on the target's units and reads like the classification one.

    ``features`` (N, D) as they come from the backbone; ``targets`` (N,) or (N, K) real values (a 0/1 label matrix
    of a multi-label task is K indicator targets). A constant target column is a DataError. Higher is better."""
    features = _check_matrix(features, "logme_regression_score")
    values = np.asarray(targets, dtype=np.float64)
    values = values.reshape(len(values), -1)
    if values.shape[0] != features.shape[0]:
        raise DataError(f"logme_regression_score: {features.shape[0]} feature rows but {values.shape[0]} targets.")
    if not np.isfinite(values).all():
        raise DataError("logme_regression_score: the targets hold NaN or infinite values.")
    spread = values.std(axis=0)
    if np.any(spread == 0):
        raise DataError("logme_regression_score: a target is constant; it carries nothing to explain.")
    values = (values - values.mean(axis=0)) / spread
    return _logme_of_targets(features, values, intercept=intercept, max_iter=max_iter, tol=tol)


def _logme_of_targets(features: np.ndarray, targets: np.ndarray, *, intercept: bool, max_iter: int,
                      tol: float) -> float:
    """Mean over the columns of ``targets`` (N, K) of LogME's maximised evidence per example (see
    :func:`logme_score`)."""
    n, n_classes = targets.shape
    targets = targets.copy()
    if intercept:
        features = features - features.mean(axis=0)
        targets -= targets.mean(axis=0)
    dims = n - 1 if intercept else n                             # dimensions the (centred) targets live in
    sigma, _, project = _spectrum(features)
    rank = len(sigma)
    if rank == 0:
        raise DataError("logme_score: the features are constant; no linear model can use them.")
    z2 = project(targets) ** 2                                   # (r, C): squared coordinates of y in U's basis
    norms = (targets * targets).sum(axis=0)
    if rank >= dims:  # U spans the targets' space: no part of y lies outside (rounding must not invent one)
        outside = np.zeros(n_classes)
    else:              # ||y||^2 - ||U^T y||^2, (C,); differences at rounding level are zero
        outside = norms - z2.sum(axis=0)
        outside[outside <= 16 * n * _EPS * norms] = 0.0
    s, sigma_min = sigma[:, None], sigma.min()                   # (r, 1)
    alpha, beta = np.ones(n_classes), np.ones(n_classes)
    evidence = _logme_evidence(alpha, beta, sigma, z2, outside, dims, rank)
    for _ in range(max_iter):
        denom = alpha + beta * s                                 # (r, C)
        gamma = (beta * s / denom).sum(axis=0)
        m2 = (s * z2 * (beta / denom) ** 2).sum(axis=0)          # ||m||^2
        res2 = (z2 * (alpha / denom) ** 2).sum(axis=0) + outside  # ||F m - y||^2
        new_alpha = gamma / np.maximum(m2, _TINY)
        new_beta = np.maximum(dims - gamma, _TINY) / np.maximum(res2, _TINY)
        new_beta = np.minimum(new_beta, new_alpha / (_NOISE_FREE * sigma_min))
        ratio, new_ratio = alpha / beta, new_alpha / new_beta
        alpha, beta = new_alpha, new_beta
        new_evidence = _logme_evidence(alpha, beta, sigma, z2, outside, dims, rank)
        # Stop when alpha / beta settles, or when the evidence does (its maximum may lie at beta -> infinity,
        # the noise-free limit: then beta grows without bound while the evidence converges).
        settled = np.abs(new_ratio - ratio) <= tol * np.abs(ratio)
        flat = np.abs(new_evidence - evidence) <= tol * 1e-3 * n
        evidence = new_evidence
        if np.all(settled | flat):
            break
    if intercept:
        evidence = evidence - 0.5 * np.log(n)
    return float(np.mean(evidence) / n)


def logme_no_intercept_score(features, labels) -> float:
    """LogME exactly as in You et al. (ICML 2021): no intercept (:func:`logme_score` with ``intercept=False``)."""
    return logme_score(features, labels, intercept=False)


def _logme_evidence(alpha, beta, sigma, z2, outside, n: int, rank: int) -> np.ndarray:
    """The log evidence (C,) at ``(alpha, beta)`` (C,) each, in the singular basis (see :func:`logme_score`);
    ``n`` is the dimension of the targets' space (N, or N - 1 with an intercept).

    ``log|A| = sum_i log(alpha + beta s_i) + (D - r) log alpha``; its ``(D - r) log alpha`` cancels against part of
    ``D/2 log alpha``, leaving ``r/2 log alpha``.
    """
    s = sigma[:, None]
    denom = alpha + beta * s
    m2 = (s * z2 * (beta / denom) ** 2).sum(axis=0)
    res2 = (z2 * (alpha / denom) ** 2).sum(axis=0) + outside
    log_det = np.log(denom).sum(axis=0)
    return (n / 2 * np.log(beta) + rank / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * res2 - alpha / 2 * m2 - log_det / 2)


# --- LEEP and NCE ---------------------------------------------------------------------------------------------

def leep_score(source_probabilities, labels, *, from_logits: bool = False) -> float:
    """LEEP: log expected empirical prediction of the source classifier, re-labelled to the target classes.

    Nguyen, Hassner, Seeger, Archambeau. *LEEP: A New Measure to Evaluate Transferability of Learned
    Representations*, ICML 2020.

    With ``theta(x_i)`` the source classifier's distribution over its Z classes (N, Z), the empirical joint of
    target label y and source label z is ``P(y, z) = 1/N sum_{i: y_i = y} theta(x_i)_z``, ``P(y | z) = P(y, z) /
    sum_y P(y, z)``, and

        LEEP = 1/N sum_i log( sum_z P(y_i | z) theta(x_i)_z ).

    It is the average log-likelihood of the simple classifier "predict the source class, then map it to target
    classes by P(y | z)"; at most 0, higher is better. Needs a source classifier: backbones without one have no LEEP.

    Parameters
    ----------
    source_probabilities : array (N, Z)
        Rows are probabilities (or logits with ``from_logits=True``).
    labels : array (N,)
        Target class labels.
    """
    probabilities = _check_probabilities(source_probabilities, "leep_score", from_logits)
    codes, n_classes = _check_labels(labels, probabilities.shape[0], "leep_score")
    n = probabilities.shape[0]
    joint = np.zeros((n_classes, probabilities.shape[1]))
    np.add.at(joint, codes, probabilities)                      # (C, Z): sum of theta over examples of each class
    joint /= n
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), _TINY)   # P(y | z), (C, Z)
    # Only the entry of each example's own label is needed: sum_z theta(x_i)_z P(y_i | z).
    expected = np.einsum("nz,nz->n", probabilities, conditional[codes])
    return float(np.mean(np.log(np.maximum(expected, _TINY))))


def nce_score(source_output, labels) -> float:
    """NCE: negative conditional entropy of the target labels given the source classifier's predicted labels.

    Tran, Nguyen, Hassner. *Transferability and Hardness of Supervised Classification Tasks*, ICCV 2019.

    With ``z_i`` the source label of example i (the argmax of the source classifier) and the empirical joint
    ``P(y, z) = #{i: y_i = y, z_i = z} / N``,

        NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) ).

    At most 0 (0 when the source label determines the target label); higher is better.

    Parameters
    ----------
    source_output : array (N, Z) or (N,)
        Source-classifier probabilities or logits (the argmax of each row is taken), or integer source labels.
    labels : array (N,)
        Target class labels.
    """
    source_output = np.asarray(source_output)
    if source_output.ndim == 2:
        source_labels = _check_matrix(source_output, "nce_score", "source-classifier outputs").argmax(axis=1)
    elif source_output.ndim == 1:
        source_labels = np.unique(source_output, return_inverse=True)[1]
    else:
        raise DataError(f"nce_score: source outputs must be (N, Z) scores or (N,) labels; got shape {source_output.shape}.")
    codes, n_classes = _check_labels(labels, len(source_labels), "nce_score")
    _, source_codes = np.unique(source_labels, return_inverse=True)
    n_source = int(source_codes.max()) + 1
    counts = np.bincount(codes * n_source + source_codes, minlength=n_classes * n_source)
    joint = counts.reshape(n_classes, n_source) / len(codes)    # P(y, z)
    marginal = np.broadcast_to(joint.sum(axis=0, keepdims=True), joint.shape)  # P(z)
    present = joint > 0
    return float(np.sum(joint[present] * np.log(joint[present] / marginal[present])))


# --- H-score and its shrinkage version ------------------------------------------------------------------------

def _class_means(centred: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class means of centred features (C, D) and class frequencies n_c / N (C,)."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, centred.shape[1]))
    np.add.at(sums, codes, centred)
    return sums / counts[:, None], counts / len(codes)


def h_score(features, labels) -> float:
    """H-score: how much of the features' variance lies between classes, in the features' own metric.

    Bao, Li, Huang, Zheng, Wang, Tong. *An Information-Theoretic Approach to Transferability in Task Transfer
    Learning*, ICIP 2019.

        H(f) = tr( cov(f)^+ cov(E[f | y]) ),

    ``cov(f)`` the covariance of the features (D, D), ``E[f | y]`` each example's feature vector replaced by its
    class mean, ``^+`` the pseudo-inverse (directions of zero variance dropped). Both covariances use the same
    normalisation, which cancels. Computed from one thin SVD of the centred features ``F_c = U S V^T`` (or the
    eigendecomposition of ``F_c^T F_c`` when N > D):
    with ``mu_c`` the centred class means and ``p_c = n_c / N``, ``H = N sum_c p_c || S^-1 V^T mu_c ||^2``.

    Between 0 and C - 1. Invariant to any invertible linear map of the features. When N <= D the sample
    covariance is singular and H equals C - 1 for almost any features: use :func:`shrinkage_h_score` there.

    Parameters
    ----------
    features : array (N, D)
    labels : array (N,)
    """
    features = _check_matrix(features, "h_score")
    codes, n_classes = _check_labels(labels, features.shape[0], "h_score")
    centred = features - features.mean(axis=0)
    means, freq = _class_means(centred, codes, n_classes)
    sigma, v, _ = _spectrum(centred)                            # sigma = s^2, v = V (D, r)
    if len(sigma) == 0:
        return 0.0
    coords2 = (means @ v) ** 2 / sigma                          # (C, r): (S^-1 V^T mu_c)^2
    return float(len(codes) * np.sum(freq * np.sum(coords2, axis=1)))


def ledoit_wolf_shrinkage(centred: np.ndarray) -> float:
    """The Ledoit-Wolf shrinkage intensity ``a`` in [0, 1] for centred data (N, D).

    Ledoit, Wolf. *A well-conditioned estimator for large-dimensional covariance matrices*, J. Multivariate
    Analysis 2004. With ``S = X^T X / N`` and ``mu = tr(S) / D``, ``d^2 = ||S - mu I||_F^2`` and
    ``b^2 = min(d^2, 1/N^2 sum_k ||x_k x_k^T - S||_F^2)``, ``a = b^2 / d^2``. All terms are computed from the
    smaller of the two Gram matrices (N x N or D x D), so wide features cost O(N^2 D).
    """
    n, d = centred.shape
    sq_norms = np.einsum("nd,nd->n", centred, centred)          # ||x_k||^2
    small = centred @ centred.T if n <= d else centred.T @ centred
    frob_s2 = np.sum(small * small) / n ** 2                    # ||S||_F^2 (X X^T and X^T X share it)
    mu = sq_norms.sum() / (n * d)
    delta2 = frob_s2 - d * mu ** 2
    if delta2 <= 0:
        return 1.0
    # sum_k ||x_k x_k^T - S||^2 = sum_k ||x_k||^4 - 2/N sum_k x_k^T (X^T X) x_k + N ||S||^2
    #                           = sum_k ||x_k||^4 - N ||S||_F^2
    beta2 = (np.sum(sq_norms ** 2) - n * frob_s2) / n ** 2
    return float(min(max(beta2, 0.0), delta2) / delta2)


def shrinkage_h_score(features, labels) -> float:
    """Shrinkage-regularised H-score: the H-score with a Ledoit-Wolf estimate of the feature covariance.

    Ibrahim, Ponomareva, Mazumder. *Newer is not always better: Rethinking transferability metrics, their
    peculiarities, stability and performance*, ECML-PKDD 2022.

        H_a(f) = tr( cov_a(f)^-1 (1 - a) cov(E[f | y]) ),   cov_a(f) = (1 - a) cov(f) + a (tr(cov(f)) / D) I,

    with ``a`` the Ledoit-Wolf shrinkage intensity (:func:`ledoit_wolf_shrinkage`) and covariances normalised by
    N. The shrunk covariance is invertible for any N, so the score stays informative for wide features with few
    examples, where the plain H-score is stuck at C - 1. With the thin SVD of the centred features
    ``F_c = U S V^T`` (``lambda_i = s_i^2 / N``), the class means lie in the span of V and

        H_a = (1 - a) sum_c p_c sum_i (V^T mu_c)_i^2 / ((1 - a) lambda_i + a tr(cov) / D).

    Invariant to a global rescaling of the features (not to per-dimension rescaling); higher is better.

    Parameters
    ----------
    features : array (N, D)
    labels : array (N,)
    """
    features = _check_matrix(features, "shrinkage_h_score")
    codes, n_classes = _check_labels(labels, features.shape[0], "shrinkage_h_score")
    n, d = features.shape
    centred = features - features.mean(axis=0)
    shrinkage = ledoit_wolf_shrinkage(centred)
    means, freq = _class_means(centred, codes, n_classes)
    sigma, v, _ = _spectrum(centred)                            # the class means have no part outside V
    if len(sigma) == 0:
        return 0.0
    eigen = sigma / n
    level = np.sum(centred * centred) / (n * d)                 # tr(cov) / D
    coords2 = (means @ v) ** 2                                  # (C, r)
    shrunk = (1 - shrinkage) * eigen + shrinkage * level
    return float((1 - shrinkage) * np.sum(freq * np.sum(coords2 / shrunk, axis=1)))


# --- the registry ---------------------------------------------------------------------------------------------

ScoreInput = Literal["features", "source_probabilities"]


@dataclass(frozen=True)
class ScoreInfo:
    """A registered score: its function and what its first argument is."""

    name: str
    function: Callable[..., float]
    input: ScoreInput
    title: str
    reference: str

    def __call__(self, values, labels) -> float:
        return self.function(values, labels)


SCORES: dict[str, ScoreInfo] = {}


def register_score(name: str, function: Callable[..., float], *, input: ScoreInput, title: str,
                   reference: str = "") -> None:
    """Add a score ``function(values, labels) -> float`` (higher is better) under ``name``."""
    if input not in ("features", "source_probabilities"):
        raise ConfigError(f"register_score: input must be 'features' or 'source_probabilities'; got {input!r}.")
    SCORES[name] = ScoreInfo(name, function, input, title, reference)


def get_score(name: str) -> ScoreInfo:
    """The registered score called ``name`` (``-`` and ``_`` are interchangeable)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in SCORES:
        raise ConfigError(f"unknown transferability score '{name}' (--scores); choose from {', '.join(SCORES)}.")
    return SCORES[key]


register_score("logme", logme_score, input="features", title="LogME",
               reference="You et al., ICML 2021; with a flat-prior intercept")
register_score("leep", leep_score, input="source_probabilities", title="LEEP",
               reference="Nguyen et al., ICML 2020")
register_score("nce", nce_score, input="source_probabilities", title="NCE",
               reference="Tran et al., ICCV 2019")
register_score("hscore", h_score, input="features", title="H-score",
               reference="Bao et al., ICIP 2019")
register_score("shrinkage_hscore", shrinkage_h_score, input="features", title="H-score (shrinkage)",
               reference="Ibrahim et al., ECML-PKDD 2022")
register_score("logme_no_intercept", logme_no_intercept_score, input="features", title="LogME (no intercept)",
               reference="You et al., ICML 2021, exactly")
