"""How far apart two domains are, on features: a domain classifier, the proxy A-distance, a 2-D picture.

All functions take feature matrices ``source`` ``(N, D)`` and ``target`` ``(M, D)`` (float arrays) and are
seeded; none trains a network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from transferkit.errors import ConfigError

#: Rows per domain used by the diagnostics (a random subset beyond this, for speed).
MAX_DIAGNOSTIC_ROWS = 2000


def _subsample(features: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(features) <= limit:
        return np.asarray(features)
    return np.asarray(features)[np.sort(rng.choice(len(features), limit, replace=False))]


def _check_pair(source: np.ndarray, target: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ConfigError(f"{what}: source and target must be 2-D feature arrays of the same width; got "
                          f"{source.shape} and {target.shape}.")
    if len(source) < 4 or len(target) < 4:
        raise ConfigError(f"{what}: needs at least 4 examples per domain; got {len(source)} and {len(target)}.")
    return source, target


def domain_probabilities(source: np.ndarray, target: np.ndarray, *, folds: int = 5, C: float = 1.0,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities ``P(target | x)`` from a logistic-regression domain classifier on standardised
    features: ``(N,)`` for the source rows, ``(M,)`` for the target rows. Every row is scored by a classifier
    that did not see it, so the probabilities are not overfitted to the very examples they weigh."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source, target = _check_pair(source, target, "domain_probabilities")
    X = np.vstack([source, target])
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    out = np.empty(len(y))
    splitter = StratifiedKFold(n_splits=min(folds, len(source), len(target)), shuffle=True, random_state=seed)
    for train, test in splitter.split(X, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, class_weight="balanced"))
        model.fit(X[train], y[train])
        out[test] = model.predict_proba(X[test])[:, 1]
    return out[: len(source)], out[len(source):]


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, seed: int = 0,
                     max_rows: int = MAX_DIAGNOSTIC_ROWS) -> float:
    """Proxy A-distance ``2 (1 - 2 err)``, ``err`` the held-out error of a linear domain classifier.

    Paper: S. Ben-David, J. Blitzer, K. Crammer, F. Pereira (2007), "Analysis of Representations for Domain
    Adaptation", NeurIPS; the proxy as used by Ganin et al. (2016, DANN). Both domains are subsampled to the same
    size (at most ``max_rows``), split in half (train / test), and the classifier's regularisation is chosen by
    cross-validation on the training half (the linear probe). 0 means the domains cannot be told apart, 2 that they separate
    perfectly; values below 0 (worse than chance) are reported as 0.
    """
    from transferkit.estimators.linear_probe import LinearProbe

    source, target = _check_pair(source, target, "proxy_a_distance")
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_rows)
    source, target = _subsample(source, n, rng), _subsample(target, n, rng)
    X = np.vstack([source, target])
    y = np.r_[np.zeros(n), np.ones(n)]
    order = rng.permutation(len(y))
    half = len(y) // 2
    train, test = order[:half], order[half:]
    if len(np.unique(y[train])) < 2 or len(np.unique(y[test])) < 2:
        return 0.0
    model = LinearProbe(Cs=(0.001, 0.01, 0.1, 1.0), cv=3, random_state=seed).fit(X[train], y[train])
    error = float(np.mean(model.predict(X[test]) != y[test]))
    return max(0.0, 2.0 * (1.0 - 2.0 * error))


def embedding_2d(source: np.ndarray, target: np.ndarray, *, method: str = "pca", seed: int = 0,
                 max_rows: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of (subsampled) source and target rows: PCA of the pooled, standardised features, or
    t-SNE (``method="tsne"``, scikit-learn's, on the first 50 principal components)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if method not in ("pca", "tsne"):
        raise ConfigError(f"embedding method must be 'pca' or 'tsne'; got {method!r}.")
    source, target = _check_pair(source, target, "embedding_2d")
    rng = np.random.default_rng(seed)
    source, target = _subsample(source, max_rows, rng), _subsample(target, max_rows, rng)
    X = StandardScaler().fit_transform(np.vstack([source, target]))
    if method == "pca":
        points = PCA(n_components=2, random_state=seed).fit_transform(X)
    else:
        from sklearn.manifold import TSNE

        reduced = PCA(n_components=min(50, X.shape[1], len(X) - 1), random_state=seed).fit_transform(X)
        points = TSNE(n_components=2, init="pca", random_state=seed,
                      perplexity=min(30.0, (len(X) - 1) / 3)).fit_transform(reduced)
    return points[: len(source)], points[len(source):]


def plot_domain_embedding(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path, *,
                          method: str = "pca", seed: int = 0, title: str | None = None) -> Path:
    """Save a PNG with one scatter plot per ``(title, source features, target features)`` panel (typically
    "before" and "after" adaptation), source and target in two colours. Uses matplotlib's Agg backend (no
    display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
    for axis, (name, source, target) in zip(axes[0], panels):
        s2, t2 = embedding_2d(source, target, method=method, seed=seed)
        axis.scatter(s2[:, 0], s2[:, 1], s=6, alpha=0.5, c="tab:blue", label="source", linewidths=0)
        axis.scatter(t2[:, 0], t2[:, 1], s=6, alpha=0.5, c="tab:orange", label="target", linewidths=0)
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.legend(loc="best", markerscale=3, fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    from transferkit._io import save_figure

    save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path
