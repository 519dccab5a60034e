"""The linear probe is a scikit-learn estimator and converts exactly into a PyTorch head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from transferkit.errors import ConfigError
from transferkit.estimators.linear_probe import LinearProbe


@pytest.fixture
def data():
    return make_classification(n_samples=300, n_features=40, n_informative=10, n_classes=3, random_state=0)


def test_fit_returns_self_and_learned_state(data) -> None:
    X, y = data
    probe = LinearProbe(random_state=0)
    assert probe.fit(X, y) is probe
    assert list(probe.classes_) == [0, 1, 2]
    assert probe.C_ in probe.Cs and set(probe.validation_scores_) == set(probe.Cs)
    assert probe.score(X, y) > 0.8


def test_composes_with_sklearn_tools(data) -> None:
    X, y = data
    scores = cross_val_score(make_pipeline(FunctionTransformer(), LinearProbe(C=1.0)), X, y, cv=3)
    assert scores.mean() > 0.7
    search = GridSearchCV(LinearProbe(), {"C": [0.001, 1.0]}, cv=3).fit(X, y)
    assert search.best_params_["C"] in (0.001, 1.0)
    assert clone(LinearProbe(C=0.5)).get_params()["C"] == 0.5


def test_regularisation_chosen_on_the_validation_data(data) -> None:
    X, y = data
    rng = np.random.default_rng(0)
    y_val = rng.permutation(y[200:])  # labels unrelated to features: strong regularisation wins (ties -> smallest C)
    probe = LinearProbe(Cs=(1e-4, 1.0, 100.0)).fit(X[:200], y[:200], X[200:], y_val)
    scores = probe.validation_scores_
    assert probe.C_ == min(c for c, s in scores.items() if s == max(scores.values()))
    sensible = LinearProbe(Cs=(1e-4, 1.0, 100.0)).fit(X[:200], y[:200], X[200:], y[200:])
    assert sensible.validation_scores_[1.0] > sensible.validation_scores_[1e-4]


@pytest.mark.parametrize("n_classes", [2, 4])
def test_head_reproduces_the_probabilities(n_classes: int) -> None:
    X, y = make_classification(n_samples=200, n_features=16, n_informative=6, n_classes=n_classes, random_state=1)
    X = X * 5 + 3  # unstandardised input: the head carries the scaler
    probe = LinearProbe(C=1.0).fit(X, y)
    head = probe.to_head()
    with torch.no_grad():
        proba = torch.softmax(head(torch.tensor(X, dtype=torch.float32)), dim=1).numpy()
    np.testing.assert_allclose(proba, probe.predict_proba(X), atol=1e-5)


def test_sparse_input_without_centering() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = ["good film", "great film", "bad film", "awful film"] * 5
    labels = ["pos", "pos", "neg", "neg"] * 5
    X = TfidfVectorizer().fit_transform(texts)
    probe = LinearProbe(standardize=False).fit(X, labels)
    assert list(probe.predict(X[:4])) == ["pos", "pos", "neg", "neg"]


@pytest.mark.parametrize("params, message", [({"C": -1.0}, "C must be positive"), ({"Cs": ()}, "Cs"),
                                             ({"cv": 1}, "cv must be at least 2")])
def test_bad_parameters(params, message, data) -> None:
    X, y = data
    with pytest.raises(ConfigError, match=message):
        LinearProbe(**params).fit(X, y)


def test_single_class_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 2 classes"):
        LinearProbe().fit(np.zeros((4, 2)), [1, 1, 1, 1])


@pytest.mark.parametrize("n, scaler_rows", [(20000, 4096), (4000, 500)])  # one hold-out / five folds choose C
def test_fit_holds_about_one_copy_of_the_features(monkeypatch, n: int, scaler_rows: int) -> None:
    """Beyond the caller's features, the probe holds one standardised copy at a time (a split's copies while C is
    chosen, then the whole set's): no float64 copy, no copy of every fold at once."""
    import tracemalloc

    from sklearn.preprocessing import StandardScaler

    import transferkit.estimators.linear_probe as linear_probe

    monkeypatch.setattr(linear_probe, "SCALER_CHUNK_ROWS", scaler_rows)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, 64)) + 0.1 * y[:, None]).astype(np.float32)
    tracemalloc.start()
    try:
        probe = LinearProbe(Cs=(0.01, 1.0), max_iter=30).fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.6 * X.nbytes, f"peak {peak / X.nbytes:.2f}x the features"
    one_pass = StandardScaler().fit(X)  # the scaler fitted by blocks has the same statistics
    np.testing.assert_allclose(probe.scaler_.mean_, one_pass.mean_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probe.scaler_.scale_, one_pass.scale_, rtol=1e-6)
