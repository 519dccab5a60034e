"""Transferability scores against their definitions, computed independently here, and their invariances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from transferkit.errors import ConfigError, DataError
from transferkit.selection import (
    SCORES,
    get_score,
    h_score,
    leep_score,
    logme_score,
    nce_score,
    shrinkage_h_score,
)
from transferkit.selection.scores import ledoit_wolf_shrinkage, logme_no_intercept_score


def _features(n: int, d: int, classes: int, seed: int = 0, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features whose mean depends on the class (fixed seed), and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    centres = rng.normal(size=(classes, d)) * signal
    return rng.normal(size=(n, d)) + centres[labels], labels


def _source_probabilities(n: int, z: int, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Softmax outputs of a fake source classifier, correlated with the labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, z)) * 2
    logits[np.arange(n), labels % z] += 2.0
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


# --- LogME ----------------------------------------------------------------------------------------------------

def _log_evidence(y: np.ndarray, covariance: np.ndarray, intercept: bool) -> float:
    """log N(y; 0, C), or with an intercept b (flat prior) integrated out: log of the integral over b of
    N(y - b 1; 0, C), by the Gaussian integral exp(-q/2) * sqrt(2 pi / (1^T C^-1 1))."""
    if not intercept:
        return multivariate_normal(np.zeros(len(y)), covariance).logpdf(y)
    ones = np.ones(len(y))
    inv_y, inv_1 = np.linalg.solve(covariance, y), np.linalg.solve(covariance, ones)
    precision_1 = ones @ inv_1
    quadratic = y @ inv_y - (ones @ inv_y) ** 2 / precision_1
    log_det = np.linalg.slogdet(covariance)[1]
    return -0.5 * (quadratic + log_det + (len(y) - 1) * np.log(2 * np.pi) + np.log(precision_1))


def _direct_logme(features: np.ndarray, labels: np.ndarray, intercept: bool = False) -> float:
    """Max over (alpha, beta) of the evidence of y under N(0, I/beta + F F^T/alpha) per class (optionally with a
    flat-prior intercept), by a generic optimiser, / N, mean over classes."""
    n = features.shape[0]
    gram = features @ features.T
    values = []
    for c in np.unique(labels):
        y = (labels == c).astype(float)

        def negative_evidence(log_params: np.ndarray) -> float:
            alpha, beta = np.exp(log_params)
            return -_log_evidence(y, np.eye(n) / beta + gram / alpha, intercept)

        best = minimize(negative_evidence, x0=[0.0, 0.0], method="Nelder-Mead",
                        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        values.append(-best.fun / n)
    return float(np.mean(values))


@pytest.mark.parametrize("intercept", [False, True])
@pytest.mark.parametrize("n, d", [(40, 6), (24, 50)])  # tall (eigendecomposition path) and wide (SVD path)
def test_logme_equals_the_evidence_maximised_by_a_generic_optimiser(n: int, d: int, intercept: bool) -> None:
    features, labels = _features(n, d, 3, seed=n)
    features += 0.7  # a common offset, which only the intercept absorbs
    expected = _direct_logme(features, labels, intercept)
    assert logme_score(features, labels, intercept=intercept) == pytest.approx(expected, abs=1e-6)


def test_logme_defaults_to_the_intercept_and_the_registry_has_both() -> None:
    features, labels = _features(50, 5, 3)
    assert logme_score(features, labels) == logme_score(features, labels, intercept=True)
    assert SCORES["logme"](features, labels) == logme_score(features, labels, intercept=True)
    assert SCORES["logme_no_intercept"](features, labels) == logme_score(features, labels, intercept=False)


def test_logme_with_intercept_ignores_a_constant_added_to_the_features() -> None:
    features, labels = _features(60, 10, 3, seed=6)
    shifted = features + np.random.default_rng(0).normal(size=10) * 10
    assert logme_score(shifted, labels) == pytest.approx(logme_score(features, labels), abs=1e-9)


def test_logme_stays_finite_when_targets_lie_in_the_span_of_rank_deficient_features() -> None:
    features, labels = _features(30, 40, 2, seed=4)
    features = np.vstack([features, features[:5]])  # duplicated examples: rank < N, y exactly in the span
    labels = np.concatenate([labels, labels[:5]])
    for intercept in (False, True):
        assert np.isfinite(logme_score(features, labels, intercept=intercept))


@pytest.mark.parametrize("intercept", [False, True])
def test_logme_is_invariant_to_global_feature_scale_and_rotation(intercept: bool) -> None:
    features, labels = _features(60, 12, 4)
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(12, 12)))[0]
    reference = logme_score(features, labels, intercept=intercept)
    for transformed in (features * 1e3, features * 1e-3, features @ rotation):
        assert logme_score(transformed, labels, intercept=intercept) == pytest.approx(reference, abs=1e-7)


def test_logme_prefers_informative_features() -> None:
    informative, labels = _features(200, 32, 5, signal=2.0)
    noise = np.random.default_rng(3).normal(size=informative.shape)
    assert logme_score(informative, labels) > logme_score(noise, labels) + 0.05


def test_logme_is_finite_for_wide_features_and_many_classes() -> None:
    features, labels = _features(300, 1280, 50, signal=0.3)
    value = logme_score(features.astype(np.float32), labels)
    assert np.isfinite(value) and -5 < value < 1
    # duplicated columns leave the rank unchanged: the dropped directions must not break the result
    doubled = np.hstack([features, features])
    assert np.isfinite(logme_score(doubled, labels))


# --- LEEP and NCE ---------------------------------------------------------------------------------------------

def _loop_leep(probabilities: np.ndarray, labels: np.ndarray) -> float:
    n, z = probabilities.shape
    classes = sorted(set(labels.tolist()))
    joint = {(y, k): 0.0 for y in classes for k in range(z)}
    for i in range(n):
        for k in range(z):
            joint[(labels[i], k)] += probabilities[i, k] / n
    marginal = {k: sum(joint[(y, k)] for y in classes) for k in range(z)}
    total = 0.0
    for i in range(n):
        total += np.log(sum(joint[(labels[i], k)] / marginal[k] * probabilities[i, k] for k in range(z)))
    return total / n


def test_leep_equals_the_explicit_loop() -> None:
    _, labels = _features(50, 2, 4, seed=5)
    probabilities = _source_probabilities(50, 7, labels, seed=5)
    assert leep_score(probabilities, labels) == pytest.approx(_loop_leep(probabilities, labels), abs=1e-12)


def test_leep_from_logits_equals_leep_of_the_softmax() -> None:
    _, labels = _features(30, 2, 3)
    logits = np.random.default_rng(0).normal(size=(30, 9)) * 5
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    assert leep_score(logits, labels, from_logits=True) == pytest.approx(leep_score(probabilities, labels), abs=1e-12)


def test_leep_is_zero_when_the_source_label_determines_the_target() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    onehot = np.eye(5)[[3, 3, 0, 0, 1, 1]]
    assert leep_score(onehot, labels) == pytest.approx(0.0, abs=1e-12)
    assert leep_score(np.full((6, 5), 0.2), labels) == pytest.approx(np.log(1 / 3), abs=1e-12)


def _loop_nce(source: np.ndarray, labels: np.ndarray) -> float:
    n = len(labels)
    pairs: dict[tuple, int] = {}
    counts: dict = {}
    for z, y in zip(source.tolist(), labels.tolist()):
        pairs[(y, z)] = pairs.get((y, z), 0) + 1
        counts[z] = counts.get(z, 0) + 1
    return sum(c / n * np.log(c / counts[z]) for (y, z), c in pairs.items())


def test_nce_equals_the_explicit_loop_and_uses_the_argmax_of_probabilities() -> None:
    _, labels = _features(80, 2, 4, seed=2)
    probabilities = _source_probabilities(80, 6, labels, seed=2)
    source = probabilities.argmax(axis=1)
    expected = _loop_nce(source, labels)
    assert nce_score(source, labels) == pytest.approx(expected, abs=1e-12)
    assert nce_score(probabilities, labels) == pytest.approx(expected, abs=1e-12)
    assert nce_score(labels, labels) == pytest.approx(0.0, abs=1e-12)  # perfect source labels
    assert nce_score(np.zeros(80, int), labels) == pytest.approx(_loop_nce(np.zeros(80, int), labels))


def test_leep_and_nce_do_not_depend_on_the_order_of_source_classes() -> None:
    _, labels = _features(60, 2, 3, seed=4)
    probabilities = _source_probabilities(60, 8, labels, seed=4)
    order = np.random.default_rng(0).permutation(8)
    assert leep_score(probabilities[:, order], labels) == pytest.approx(leep_score(probabilities, labels), abs=1e-12)
    assert nce_score(probabilities[:, order], labels) == pytest.approx(nce_score(probabilities, labels), abs=1e-12)


# --- H-score --------------------------------------------------------------------------------------------------

def _numpy_h_score(features: np.ndarray, labels: np.ndarray) -> float:
    cov_f = np.cov(features, rowvar=False)
    conditional = np.zeros_like(features)
    for c in np.unique(labels):
        conditional[labels == c] = features[labels == c].mean(axis=0)
    cov_g = np.cov(conditional, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f) @ cov_g))


def test_h_score_equals_the_numpy_covariance_formula() -> None:
    features, labels = _features(120, 10, 4, seed=7, signal=0.7)
    assert h_score(features, labels) == pytest.approx(_numpy_h_score(features, labels), rel=1e-9)


def test_h_score_is_invariant_to_invertible_linear_maps() -> None:
    features, labels = _features(150, 8, 3, seed=8)
    mixing = np.random.default_rng(9).normal(size=(8, 8)) + 3 * np.eye(8)
    reference = h_score(features, labels)
    assert h_score(features * 250.0, labels) == pytest.approx(reference, rel=1e-9)
    assert h_score(features @ mixing, labels) == pytest.approx(reference, rel=1e-7)
    assert 0 < reference < 2  # at most classes - 1


def test_h_score_is_stuck_at_classes_minus_one_with_fewer_examples_than_dimensions() -> None:
    features, labels = _features(30, 64, 4, seed=1)
    noise = np.random.default_rng(2).normal(size=features.shape)
    assert h_score(features, labels) == pytest.approx(3.0, abs=1e-6)
    assert h_score(noise, labels) == pytest.approx(3.0, abs=1e-6)
    # the shrinkage version still tells them apart
    assert shrinkage_h_score(features, labels) > shrinkage_h_score(noise, labels)


@pytest.mark.parametrize("n, d", [(200, 15), (25, 60)])
def test_ledoit_wolf_shrinkage_matches_scikit_learn(n: int, d: int) -> None:
    from sklearn.covariance import ledoit_wolf_shrinkage as sklearn_shrinkage

    features, _ = _features(n, d, 3, seed=n)
    features[:, 0] *= 5
    centred = features - features.mean(axis=0)
    assert ledoit_wolf_shrinkage(centred) == pytest.approx(sklearn_shrinkage(features), rel=1e-9)


@pytest.mark.parametrize("n, d", [(200, 15), (25, 60)])
def test_shrinkage_h_score_equals_its_definition_with_scikit_learn_ledoit_wolf(n: int, d: int) -> None:
    from sklearn.covariance import LedoitWolf

    features, labels = _features(n, d, 3, seed=d, signal=0.5)
    estimator = LedoitWolf().fit(features)
    shrinkage = estimator.shrinkage_
    centred = features - features.mean(axis=0)
    between = np.zeros((d, d))
    for c in np.unique(labels):
        mean = centred[labels == c].mean(axis=0)
        between += np.mean(labels == c) * np.outer(mean, mean)
    expected = np.trace(np.linalg.inv(estimator.covariance_) @ ((1 - shrinkage) * between))
    assert shrinkage_h_score(features, labels) == pytest.approx(expected, rel=1e-8)


def test_shrinkage_h_score_is_invariant_to_global_scale() -> None:
    features, labels = _features(50, 100, 5, seed=3)
    reference = shrinkage_h_score(features, labels)
    assert shrinkage_h_score(features * 1e4, labels) == pytest.approx(reference, rel=1e-9)
    assert shrinkage_h_score(features * 1e-4, labels) == pytest.approx(reference, rel=1e-9)


# --- every registered score -----------------------------------------------------------------------------------

def _inputs(info, features, probabilities):
    return features if info.input == "features" else probabilities


@pytest.mark.parametrize("name", sorted(SCORES))
def test_every_score_is_unchanged_by_renaming_and_permuting_the_classes(name: str) -> None:
    info = SCORES[name]
    features, labels = _features(90, 20, 3, seed=11)
    probabilities = _source_probabilities(90, 6, labels, seed=11)
    values = _inputs(info, features, probabilities)
    reference = info(values, labels)
    permuted = np.array([2, 0, 1])[labels]
    named = np.array(["zebra", "ant", "moth"])[labels]
    assert np.isfinite(reference)
    assert info(values, permuted) == pytest.approx(reference, abs=1e-10)
    assert info(values, named) == pytest.approx(reference, abs=1e-10)
    # and reordering the examples (rows and labels together) changes nothing either
    order = np.random.default_rng(0).permutation(90)
    assert info(values[order], labels[order]) == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_every_score_rejects_bad_input_with_a_data_error(name: str) -> None:
    info = SCORES[name]
    features, labels = _features(20, 4, 2)
    values = _inputs(info, features, _source_probabilities(20, 4, labels))
    with pytest.raises(DataError, match="labels"):
        info(values, labels[:-1])
    with pytest.raises(DataError, match="two classes"):
        info(values, np.zeros(20))
    broken = values.copy()
    broken[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        info(broken, labels)


def test_leep_names_the_fix_when_given_logits() -> None:
    _, labels = _features(10, 2, 2)
    with pytest.raises(DataError, match="from_logits=True"):
        leep_score(np.random.default_rng(0).normal(size=(10, 5)), labels)


def test_registry_lookup() -> None:
    assert get_score("logme").function is logme_score
    assert get_score("logme-no-intercept").function is logme_no_intercept_score
    assert get_score("Shrinkage-HScore").function is shrinkage_h_score
    with pytest.raises(ConfigError, match="logme, leep, nce, hscore, shrinkage_hscore, logme_no_intercept"):
        get_score("accuracy")
