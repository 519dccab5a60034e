"""Training a :class:`~transferkit.models.recommender.Recommender` from interactions and item features.

Two steps: the id-only model (implicit's alternating least squares on the user x item matrix of positives), then
the content projection: a linear map ``W`` ``(D, F)`` from frozen item features to the id model's space, trained with
the Bayesian personalised ranking loss (``-log sigmoid(p_u . W c_pos - p_u . W c_neg)``, a sampled item the user
did not interact with as ``neg``) with the users' vectors ``p_u`` held fixed, so that content vectors and id
vectors score items for the same users. Last, a scale and an offset give the content scores of items with history
the mean and spread of their id scores, so that the hybrid's cold items compete with warm ones on one scale (the
scale alone, an offset alone or a regression of id scores on content scores were measured on MovieLens-100k: see
benchmarks/README.md).

The projection trains on the shared engine (:mod:`transferkit.recommendation.projection`: a ranking pair is a
two-class example whose cross-entropy is the BPR loss), with its optimiser, schedule, early stopping on held-out
pairs and device handling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transferkit.data.interactions import Interactions
from transferkit.errors import ConfigError
from transferkit.models.recommender import Recommender


def interaction_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> Any:
    """The ``(n_users, n_items)`` CSR matrix of positives (1 per pair; repeats count once)."""
    from scipy.sparse import csr_matrix

    matrix = csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items))
    matrix.data[:] = 1.0
    return matrix


def check_recommend_installed() -> None:
    """The id-only model's library is installed (the recommend extra), else a ConfigError saying how to add it."""
    import importlib.util

    if importlib.util.find_spec("implicit") is None:
        raise ConfigError("recommend needs the implicit package (the id-only collaborative-filtering model); install "
                          "it with: pip install 'transferkit[recommend]'.")
    if importlib.util.find_spec("lightning") is None:
        raise ConfigError("recommend trains the content projection on the training engine, which needs lightning; "
                          "install it with: pip install 'transferkit[train]'.")


def train_id_model(matrix: Any, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(U, F)`` user and ``(I, F)`` item vectors of alternating least squares on ``matrix``; items without any
    interaction get zero vectors."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(factors=config.factors, regularization=config.regularization,
                                    iterations=config.iterations, random_state=config.seed,
                                    calculate_training_loss=False)
    with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS threads inside them only contend
        model.fit(matrix, show_progress=False)
    users = np.asarray(model.user_factors, dtype=np.float32)
    items = np.asarray(model.item_factors, dtype=np.float32)
    items[np.asarray(matrix.sum(axis=0)).ravel() == 0] = 0.0
    return users, items


def content_calibration(user_vectors: np.ndarray, id_vectors: np.ndarray, content_vectors: np.ndarray,
                        has_history: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """``(scale, offset)`` that give the content scores of items with history the mean and spread of their id
    scores (over up to 500 users x 2,000 items drawn with ``seed``); ``(1, 0)`` without any such item."""
    warm = np.flatnonzero(has_history)
    if warm.size == 0:
        return 1.0, 0.0
    rng = np.random.default_rng(seed)
    users = user_vectors[rng.permutation(len(user_vectors))[:500]]
    items = rng.permutation(warm)[:2000]
    id_scores = users @ id_vectors[items].T
    content_scores = users @ content_vectors[items].T
    spread = float(content_scores.std())
    scale = float(id_scores.std()) / spread if spread > 0 else 1.0
    return scale, float(id_scores.mean() - scale * content_scores.mean())


def build_recommender(interactions: Interactions, rows: np.ndarray, item_ids: list[str], features: np.ndarray,
                      backbone: dict[str, Any], modality: str, config: Any,
                      run_name: str = "recommend") -> Recommender:
    """A :class:`Recommender` trained on the interactions ``rows`` (indices into ``interactions``) over the whole
    catalogue ``item_ids`` (``features`` ``(I, D)``: every item's frozen backbone features)."""
    from transferkit.recommendation.projection import train_projection

    n_users, n_items = len(interactions.user_ids), len(item_ids)
    matrix = interaction_matrix(interactions.users[rows], interactions.items[rows], n_users, n_items)
    user_vectors, id_vectors = train_id_model(matrix, config)
    feature_mean = features.mean(axis=0)
    projection = train_projection(features - feature_mean, user_vectors, matrix, config, run_name)  # on the engine
    has_history = np.asarray(matrix.sum(axis=0)).ravel() > 0
    scale, offset = content_calibration(user_vectors, id_vectors, (features - feature_mean) @ projection,
                                        has_history, config.seed)
    projection = projection * scale
    return Recommender(user_ids=interactions.user_ids, item_ids=item_ids, user_vectors=user_vectors,
                       item_id_vectors=id_vectors, has_history=has_history, projection=projection,
                       feature_mean=feature_mean, item_features=features, content_offset=offset,
                       popularity=np.asarray(matrix.sum(axis=0)).ravel(), seen_indptr=matrix.indptr,
                       seen_items=matrix.indices, backbone=backbone, modality=modality,
                       regularization=config.regularization)


__all__ = ["build_recommender", "check_recommend_installed", "content_calibration", "interaction_matrix",
           "train_id_model"]
