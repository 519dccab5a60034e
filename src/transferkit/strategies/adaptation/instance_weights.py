"""Instance-based transfer: weights for source examples so that the weighted source looks like the target.

Each function takes cached features ``source`` ``(N, D)`` and ``target`` ``(M, D)`` and returns weights ``(N,)``
with mean 1 (zero for dropped examples). The weights go to the linear probe (``LinearProbe.fit(...,
sample_weight=w)``) or to the engine's cross-entropy (``adapt(method="iw", train_backbone=True)``).
"""

from __future__ import annotations

import numpy as np

from transferkit.errors import ConfigError

WEIGHTINGS = ("density-ratio", "kmm", "selection")
#: Source and target rows used by kernel mean matching (an N x N kernel; a seeded subset of the target beyond).
KMM_MAX_ROWS = 3000


def _normalise(weights: np.ndarray) -> np.ndarray:
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    total = weights.sum()
    if not total > 0:
        return np.ones_like(weights)
    return weights * (len(weights) / total)


def density_ratio_weights(source: np.ndarray, target: np.ndarray, *, clip: float = 10.0, flatten: float = 0.5,
                          C: float = 0.05, seed: int = 0) -> np.ndarray:
    """``w(x) = p_target(x) / p_source(x)`` estimated by a domain classifier, flattened.

    With ``q(x) = P(target | x)`` from a logistic regression (inverse regularisation ``C``) trained to tell the
    domains apart (out of fold, see :func:`~transferkit.evaluation.domain_gap.domain_probabilities`), Bayes' rule
    gives ``r(x) = (N / M) * q(x) / (1 - q(x))`` (Bickel, Brückner and Scheffer 2007, "Discriminative Learning for
    Differing Training and Test Distributions", ICML). The weights are ``w = r ** flatten`` (Shimodaira 2000,
    "Improving predictive inference under covariate shift by weighting the log-likelihood function": ``flatten``
    in ``[0, 1]`` trades the bias of no weighting against the variance of the full ratio; on wide features the
    domains separate almost perfectly and the full ratio leaves a handful of examples with all the weight), then
    clipped at ``clip`` times the mean and rescaled to mean 1.
    """
    from transferkit.evaluation.domain_gap import domain_probabilities

    if not clip > 0:
        raise ConfigError(f"density_ratio_weights: clip must be > 0; got {clip!r}.")
    if not 0 <= flatten <= 1:
        raise ConfigError(f"density_ratio_weights: flatten must be in [0, 1]; got {flatten!r}.")
    q_source, _ = domain_probabilities(source, target, C=C, seed=seed)
    q_source = np.clip(q_source, 1e-6, 1 - 1e-6)
    weights = _normalise((len(source) / len(target) * q_source / (1.0 - q_source)) ** flatten)
    return _normalise(np.minimum(weights, clip))


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2``: how many unweighted examples the weights are worth."""
    weights = np.asarray(weights, dtype=np.float64)
    return float(weights.sum() ** 2 / max((weights ** 2).sum(), 1e-300))


def kernel_mean_matching(source: np.ndarray, target: np.ndarray, *, bound: float = 10.0, epsilon: float | None = None,
                         components: int = 50, seed: int = 0) -> np.ndarray:
    """Kernel mean matching: weights ``beta`` that make the kernel mean of the weighted source equal the target's.

    Paper: J. Huang, A. Smola, A. Gretton, K. Borgwardt, B. Schölkopf (2006), "Correcting Sample Selection Bias by
    Unlabeled Data", NeurIPS.

    Formula, with a Gaussian kernel ``k`` (bandwidth: the median squared distance), ``K_ij = k(x_i, x_j)`` over
    source rows and ``kappa_i = (N / M) sum_j k(x_i, t_j)``:

        minimise  1/2 beta^T K beta - kappa^T beta
        subject to 0 <= beta_i <= bound,  |sum_i beta_i - N| <= N epsilon    (epsilon = bound / sqrt(N) by default)

    Solved with L-BFGS-B under the box constraint, the sum constraint as a quadratic penalty outside its band;
    the result is rescaled to mean 1. Features are standardised and reduced to ``components`` principal
    components first (the kernel is computed in that space); at most :data:`KMM_MAX_ROWS` target rows are used.
    """
    from scipy.optimize import minimize
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if len(target) > KMM_MAX_ROWS:
        target = target[rng.choice(len(target), KMM_MAX_ROWS, replace=False)]
    scaler = StandardScaler().fit(np.vstack([source, target]))
    s, t = scaler.transform(source), scaler.transform(target)
    k = min(components, s.shape[1], len(s) + len(t) - 1)
    pca = PCA(n_components=k, random_state=seed).fit(np.vstack([s, t]))
    s, t = pca.transform(s), pca.transform(t)

    def sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)

    pool = np.vstack([s, t])
    sample = pool[rng.choice(len(pool), min(len(pool), 1000), replace=False)]
    width = float(np.median(sq(sample, sample))) or 1.0
    K = np.exp(-sq(s, s) / width)
    n, m = len(s), len(t)
    kappa = (n / m) * np.exp(-sq(s, t) / width).sum(axis=1)
    epsilon = bound / np.sqrt(n) if epsilon is None else epsilon
    penalty = 10.0 * float(np.abs(K).max())

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        Kb = K @ beta
        value = 0.5 * beta @ Kb - kappa @ beta
        grad = Kb - kappa
        excess = abs(beta.sum() - n) - n * epsilon
        if excess > 0:
            value += penalty * excess ** 2
            grad = grad + 2 * penalty * excess * np.sign(beta.sum() - n)
        return float(value), grad

    result = minimize(objective, np.ones(n), jac=True, method="L-BFGS-B", bounds=[(0.0, bound)] * n,
                      options={"maxiter": 500})
    return _normalise(result.x)


def source_selection(source: np.ndarray, target: np.ndarray, *, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Keep the ``fraction`` of source examples that look most like the target (the highest ``P(target | x)`` of
    a domain classifier); weight 1 for those (rescaled to mean 1 over all rows), 0 for the rest."""
    from transferkit.evaluation.domain_gap import domain_probabilities

    if not 0 < fraction <= 1:
        raise ConfigError(f"source_selection: fraction must be in (0, 1]; got {fraction!r}.")
    q_source, _ = domain_probabilities(source, target, seed=seed)
    keep = max(1, int(round(fraction * len(source))))
    chosen = np.argsort(-q_source, kind="stable")[:keep]
    weights = np.zeros(len(source))
    weights[chosen] = 1.0
    return _normalise(weights)


def instance_weights(weighting: str, source: np.ndarray, target: np.ndarray, *, fraction: float = 0.5,
                     seed: int = 0) -> np.ndarray:
    """Weights ``(N,)`` by ``weighting``: ``density-ratio``, ``kmm`` or ``selection``."""
    if weighting == "density-ratio":
        return density_ratio_weights(source, target, seed=seed)
    if weighting == "kmm":
        return kernel_mean_matching(source, target, seed=seed)
    if weighting == "selection":
        return source_selection(source, target, fraction=fraction, seed=seed)
    raise ConfigError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}.")


def classes_kept(weights: np.ndarray, labels: np.ndarray, num_classes: int) -> list[int]:
    """Classes that still have weight (a selection may drop a class entirely; callers warn)."""
    return [c for c in range(num_classes) if weights[labels == c].sum() > 0]
