"""Transferability scores and the ranking of candidate backbones on the user's data, before any training.

``logme_score``, ``leep_score``, ``nce_score``, ``h_score`` and ``shrinkage_h_score`` are plain functions of
``(features or source probabilities, labels)``, registered in ``SCORES``; :mod:`~transferkit.selection.ranking`
scores candidate backbones (and the raw input) on a dataset for the ``rank`` verb
(:func:`transferkit.workflows.rank.rank`). Importing this package does not import torch.
"""

from transferkit.selection.scores import (
    SCORES,
    ScoreInfo,
    get_score,
    h_score,
    leep_score,
    logme_score,
    nce_score,
    register_score,
    shrinkage_h_score,
)

__all__ = ["SCORES", "ScoreInfo", "get_score", "h_score", "leep_score", "logme_score", "nce_score",
           "register_score", "shrinkage_h_score", "Ranking"]


def __getattr__(name: str):
    if name in ("Ranking", "CandidateResult"):
        from transferkit.selection import ranking

        return getattr(ranking, name)
    raise AttributeError(f"module 'transferkit.selection' has no attribute {name!r}")
