"""The analyses of ``explore`` on arrays of frozen features: neighbours, the 2-D map, clusters, duplicates,
outliers, label issues and suggested labels.

Every function takes features ``(N, D)`` (float32) and returns one value per example, so that the verb can write
them as columns of one table. Similarities are cosine similarities of *centred* features (the mean feature removed,
then each row scaled to unit length): features after a ReLU share a large common component, which makes every
pair look alike before centring.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from transferkit.errors import DataError

#: Examples per block of the exact neighbour search (a block's similarity row is ``BLOCK x N`` float32).
BLOCK = 1024
#: Above this many examples the silhouette score is computed on a random sample of this size.
SILHOUETTE_SAMPLE = 3000
#: Dimensions the features are reduced to (PCA) before clustering and the UMAP / t-SNE map.
REDUCED_DIMS = 50
#: Examples up to which ``map="auto"`` draws a t-SNE map (UMAP above).
TSNE_LIMIT = 5000
#: An outlier's score is above the median by more than this many robust standard deviations (1.4826 x MAD)...
OUTLIER_DEVIATIONS = 3.0
#: ... and more than this many times the median (tight data has a tiny spread: a small step is not an outlier).
OUTLIER_RATIO = 1.5


@dataclass
class Neighbours:
    """The ``k`` nearest other examples of each example: ``indices`` and cosine ``similarity`` ``(N, k)``, most
    similar first; ``method`` says how they were found."""

    indices: np.ndarray
    similarity: np.ndarray
    method: str


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Centred features scaled to unit length per row (float32); a row equal to the mean stays zero."""
    centred = np.asarray(features, dtype=np.float32) - np.asarray(features, dtype=np.float64).mean(0).astype(np.float32)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 1e-12)


def check_spread(features: np.ndarray, origin: str) -> None:
    """A DataError when every example has the same features (nothing to map, cluster or compare)."""
    if len(features) and float(np.ptp(features, axis=0).max()) <= 1e-6:
        raise DataError(f"{origin}: all {len(features)} examples have the same features (identical content, or "
                        "content this backbone cannot tell apart); there is nothing to map or cluster. Give varied "
                        "examples, or another backbone (--backbone).")


def nearest_neighbours(unit: np.ndarray, k: int, *, exact_limit: int, seed: int = 0) -> Neighbours:
    """The ``k`` most similar other examples of each row of ``unit`` (unit rows): exact (blocked matrix products)
    up to ``exact_limit`` rows, pynndescent above it (approximate); exact with a warning when pynndescent is not
    installed."""
    n = len(unit)
    k = min(k, n - 1)
    if n > exact_limit:
        try:
            import pynndescent
        except ImportError:
            warnings.warn(f"explore: {n:,} examples and pynndescent is not installed (pip install "
                          "'transferkit[explore]'): neighbours are searched exactly, which takes longer.", stacklevel=3)
        else:
            index = pynndescent.NNDescent(unit, metric="cosine", n_neighbors=k + 1, random_state=seed, n_jobs=1)
            indices, distances = index.neighbor_graph
            return _without_self(indices, 1.0 - distances, k, f"approximate (pynndescent, {k} neighbours)")
    indices = np.empty((n, k), dtype=np.int64)
    similarity = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        block = unit[start:stop] @ unit.T
        block[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-values, axis=1)
        indices[start:stop] = np.take_along_axis(top, order, axis=1)
        similarity[start:stop] = np.take_along_axis(values, order, axis=1)
    return Neighbours(indices, similarity, f"exact ({k} neighbours)")


def _without_self(indices: np.ndarray, similarity: np.ndarray, k: int, method: str) -> Neighbours:
    """Neighbour lists of k + 1 entries with each row's own index removed (or its last entry, when absent)."""
    keep = indices != np.arange(len(indices))[:, None]
    rows = [np.flatnonzero(r)[:k] for r in keep]
    picked = np.stack([idx[r] for idx, r in zip(indices, rows)])
    sims = np.stack([s[r] for s, r in zip(similarity, rows)]).astype(np.float32)
    return Neighbours(picked.astype(np.int64), sims, method)


def reduce(unit: np.ndarray, seed: int = 0) -> np.ndarray:
    """The first :data:`REDUCED_DIMS` principal components of ``unit`` (fewer for narrow or tiny data)."""
    from sklearn.decomposition import PCA

    dims = min(REDUCED_DIMS, unit.shape[1], len(unit) - 1)
    if dims >= unit.shape[1]:
        return unit
    return PCA(n_components=dims, random_state=seed).fit_transform(unit).astype(np.float32)


def _umap_map(reduced: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    import umap

    neighbours = min(15, len(reduced) - 1)
    coords = umap.UMAP(n_neighbors=neighbours, random_state=seed, n_jobs=1).fit_transform(reduced)
    return coords, f"UMAP ({neighbours} neighbours, PCA to {reduced.shape[1]} dims of centred unit features)"


def _tsne_map(reduced: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(reduced) - 1) / 3)))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    return coords, f"t-SNE (perplexity {perplexity:.3g}, PCA to {reduced.shape[1]} dims of centred unit features)"


def _pca_map(reduced: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed).fit_transform(reduced), "PCA (first two principal components)"


#: The maps ``explore`` draws, by the name of the ``map`` option; each ``(reduced, seed) -> (coords, description)``.
MAPS = {"umap": _umap_map, "tsne": _tsne_map, "pca": _pca_map}
#: Maps that need an optional module (the ``explore`` extra).
MAP_MODULES = {"umap": "umap"}


def map_method(requested: str, n: int) -> str:
    """The map drawn for the ``map`` option on ``n`` examples: ``auto`` (any name not in :data:`MAPS`) is t-SNE up
    to :data:`TSNE_LIMIT` examples, UMAP above (PCA with a warning when umap-learn is not installed); a map named
    explicitly whose module is missing is refused. Below five examples, PCA."""
    import importlib.util

    chosen = requested if requested in MAPS else ("tsne" if n <= TSNE_LIMIT else "umap")
    module = MAP_MODULES.get(chosen)
    if module is not None and importlib.util.find_spec(module) is None:
        if requested in MAPS:
            from transferkit.errors import ConfigError

            raise ConfigError(f"option 'map': {chosen} needs {module} (pip install 'transferkit[explore]'); or "
                              "choose --map tsne or --map pca.")
        warnings.warn(f"explore: {n:,} examples and {module} is not installed (pip install 'transferkit[explore]'): "
                      "the map is PCA's first two components.", stacklevel=3)
        chosen = "pca"
    return "pca" if n < 5 else chosen


def two_d_map(reduced: np.ndarray, method: str, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates ``(N, 2)`` of the examples by the map ``method`` of :data:`MAPS`, and a sentence saying how
    they were drawn."""
    coords, description = MAPS[method](reduced, seed)
    return np.asarray(coords, dtype=np.float32), description


def _hdbscan(reduced: np.ndarray, *, clusters: int | None, max_clusters: int,
             seed: int) -> tuple[np.ndarray, str, dict[int, float]]:
    from sklearn.cluster import HDBSCAN

    size = max(3, len(reduced) // 50)
    ids = HDBSCAN(min_cluster_size=size).fit_predict(reduced)
    return ids, f"HDBSCAN (minimum cluster size {size}; -1: in no dense group)", {}


def _kmeans(reduced: np.ndarray, *, clusters: int | None, max_clusters: int,
            seed: int) -> tuple[np.ndarray, str, dict[int, float]]:
    from sklearn.cluster import KMeans

    if clusters is not None:
        k = min(clusters, len(reduced))
        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(reduced), \
            f"k-means, {k} clusters (as given)", {}
    scores: dict[int, float] = {}
    best: tuple[float, np.ndarray] | None = None
    for k in range(2, min(max_clusters, len(reduced) - 1) + 1):
        ids = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(reduced)
        scores[k] = _silhouette(reduced, ids, seed)
        if best is None or scores[k] > best[0]:
            best = (scores[k], ids)
    if best is None:  # fewer than three examples: the caller refuses them; one cluster here
        return np.zeros(len(reduced), dtype=np.int64), "one cluster (too few examples to choose)", scores
    k = int(best[1].max()) + 1
    return best[1], (f"k-means, {k} clusters: the best silhouette score ({best[0]:.3f}) among "
                     f"k = 2..{max(scores)}"), scores


#: Clustering methods by the name of the ``cluster_method`` option.
CLUSTERERS = {"kmeans": _kmeans, "hdbscan": _hdbscan}


def cluster(reduced: np.ndarray, method: str, *, clusters: int | None, max_clusters: int,
            seed: int = 0) -> tuple[np.ndarray, str, dict[int, float]]:
    """Cluster ids ``(N,)`` by ``method`` of :data:`CLUSTERERS` (``-1``: no cluster, HDBSCAN's noise), how they
    were chosen, and the silhouette score of each number of clusters tried (k-means without a given number)."""
    ids, description, scores = CLUSTERERS[method](reduced, clusters=clusters, max_clusters=max_clusters, seed=seed)
    return np.asarray(ids, dtype=np.int64), description, scores


def _silhouette(reduced: np.ndarray, ids: np.ndarray, seed: int) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(ids)) < 2:
        return -1.0
    sample = min(len(reduced), SILHOUETTE_SAMPLE)
    return float(silhouette_score(reduced, ids, sample_size=sample, random_state=seed))


def central_examples(reduced: np.ndarray, ids: np.ndarray, count: int) -> dict[int, list[int]]:
    """The ``count`` examples nearest their cluster's centre, per cluster (noise excluded)."""
    central = {}
    for cid in sorted(set(ids.tolist()) - {-1}):
        members = np.flatnonzero(ids == cid)
        distance = np.linalg.norm(reduced[members] - reduced[members].mean(0), axis=1)
        central[cid] = members[np.argsort(distance)[:count]].tolist()
    return central


def duplicate_groups(keys: Sequence[str], neighbours: Neighbours, threshold: float
                     ) -> tuple[np.ndarray, list[str]]:
    """A duplicate group id per example (``-1``: none) and its kind: ``exact`` (another example has the same
    content), ``near`` (features at or above ``threshold`` cosine similarity to another), or ``""``. Groups are the
    connected components of both relations."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(keys)
    first: dict[str, int] = {}
    rows, cols = [], []
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j != i:
            rows.append(i), cols.append(j)
    exact = np.zeros(n, dtype=bool)
    exact[rows] = exact[cols] = True
    near_i, near_j = np.nonzero(neighbours.similarity >= threshold)
    rows += near_i.tolist()
    cols += neighbours.indices[near_i, near_j].tolist()
    linked = np.zeros(n, dtype=bool)
    linked[rows] = linked[cols] = True
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    group = np.full(n, -1, dtype=np.int64)
    names: dict[int, int] = {}
    for i in np.flatnonzero(linked):
        group[i] = names.setdefault(int(component[i]), len(names))
    kinds = ["exact" if exact[i] else "near" if linked[i] else "" for i in range(n)]
    return group, kinds


def outlier_scores(neighbours: Neighbours) -> tuple[np.ndarray, np.ndarray, float]:
    """The outlier score of each example (mean cosine distance to its nearest neighbours), whether it is flagged,
    and the threshold: the larger of the median plus :data:`OUTLIER_DEVIATIONS` robust standard deviations (1.4826 x
    the median absolute deviation) and :data:`OUTLIER_RATIO` times the median."""
    score = (1.0 - neighbours.similarity.astype(np.float64)).mean(axis=1)
    median = float(np.median(score))
    spread = 1.4826 * float(np.median(np.abs(score - median)))
    threshold = max(median + OUTLIER_DEVIATIONS * spread, OUTLIER_RATIO * median)
    return score, score > threshold, threshold


def out_of_fold_probabilities(features: np.ndarray, targets: np.ndarray, task: Any, *, folds: int,
                              seed: int = 0) -> tuple[np.ndarray, float]:
    """Class probabilities ``(N, C)`` of each labelled example from the task's probe trained on the other folds
    (stratified), and the probe's regularisation ``C``, chosen once on all examples by the probe's own
    cross-validation and kept fixed for the folds."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(targets)
    folds = int(min(folds, counts[counts > 0].min())) if counts[counts > 0].min() >= 2 else 2
    chosen = task.new_probe(seed=seed).fit(features, targets).C_
    proba = np.zeros((len(targets), int(targets.max()) + 1), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class smaller than the folds: sklearn's warning, said by the caller
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, targets)
        for train_rows, held_rows in splits:
            probe = task.new_probe(C=chosen, seed=seed).fit(features[train_rows], targets[train_rows])
            proba[np.ix_(held_rows, probe.classes_)] = probe.predict_proba(features[held_rows])
    return proba, float(chosen)


def label_issues(targets: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Per labelled example: the probability that its label is wrong (``1 - p(given label)`` out of fold), whether
    confident learning flags it, and the method: cleanlab's ``find_label_issues`` (prune by noise rate) when
    installed, else the confident joint written here (:func:`confident_learning_issues`)."""
    score = 1.0 - proba[np.arange(len(targets)), targets]
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return score, confident_learning_issues(targets, proba), "confident learning (confident joint, off-diagonal)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = find_label_issues(labels=targets, pred_probs=proba, filter_by="prune_by_noise_rate")
    return score, np.asarray(flagged, dtype=bool), "confident learning (cleanlab find_label_issues, prune by noise rate)"


def confident_learning_issues(targets: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Confident learning (Northcutt et al., 2021) without cleanlab: class ``j``'s threshold ``t_j`` is the mean
    probability of ``j`` among the examples labelled ``j``; an example is flagged when the classes whose
    probability reaches their threshold exist and the most probable of them is not its label."""
    classes = proba.shape[1]
    thresholds = np.array([proba[targets == j, j].mean() if (targets == j).any() else 1.0 for j in range(classes)])
    above = proba >= thresholds[None, :]
    masked = np.where(above, proba, -1.0)
    confident = masked.argmax(axis=1)
    return above.any(axis=1) & (confident != targets)


def suggested_labels(features: np.ndarray, targets: np.ndarray, others: np.ndarray, task: Any, *,
                     seed: int = 0) -> np.ndarray:
    """Class probabilities ``(M, C)`` of the unlabelled examples ``others`` from the task's probe trained on every
    labelled example."""
    probe = task.new_probe(seed=seed).fit(features, targets)
    proba = np.zeros((len(others), int(targets.max()) + 1), dtype=np.float64)
    proba[:, probe.classes_] = probe.predict_proba(others)
    return proba
