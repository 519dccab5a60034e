"""Ranking metrics of top-k recommendation lists, per user, and their paired comparison.

For one user with relevant (held-out) items ``R`` and a list ``L`` of ``k`` items, ``hit_r`` is 1 when the item at
rank ``r`` (1-based) is in ``R``:

- recall@k = sum(hit) / |R|
- NDCG@k = sum(hit_r / log2(r + 1)) / sum_{r <= min(|R|, k)} 1 / log2(r + 1)
- AP@k = sum_r hit_r * precision@r / min(|R|, k); MAP@k is its mean over users

Catalogue coverage is the share of the catalogue that appears in at least one user's list; the cold share is the
share of list slots that hold cold (never interacted) items. Users without relevant items are not scored.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

PER_USER = ("recall", "ndcg", "map", "cold_share")


def per_user_metrics(lists: np.ndarray, relevant: Sequence[set[int]], k: int,
                     cold: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``lists`` ``(U, k)`` item indices (-1: an empty slot), ``relevant[u]`` the held-out items of user ``u``;
    ``cold`` ``(I,)`` marks cold items. Returns ``(U,)`` arrays: recall, ndcg, map (AP@k) and cold_share."""
    lists = np.asarray(lists)[:, :k]
    users = len(lists)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    out = {name: np.zeros(users) for name in PER_USER}
    for u in range(users):
        wanted = relevant[u]
        hits = np.array([item in wanted for item in lists[u]], dtype=np.float64)
        if hits.size < k:
            hits = np.pad(hits, (0, k - hits.size))
        n_rel = len(wanted)
        if n_rel:
            out["recall"][u] = hits.sum() / n_rel
            out["ndcg"][u] = (hits * discount).sum() / discount[:min(n_rel, k)].sum()
            precision = np.cumsum(hits) / np.arange(1, k + 1)
            out["map"][u] = (hits * precision).sum() / min(n_rel, k)
        filled = lists[u][lists[u] >= 0]
        if cold is not None and filled.size:
            out["cold_share"][u] = float(np.mean(cold[filled]))
    return out


def coverage(lists: np.ndarray, n_items: int) -> float:
    """Share of the ``n_items`` catalogue that appears in at least one list."""
    items = np.unique(np.asarray(lists)[np.asarray(lists) >= 0])
    return float(items.size / n_items) if n_items else 0.0


def coverage_test(lists: np.ndarray, baseline_lists: np.ndarray, n_items: int, n_perm: int = 1000,
                  seed: int = 0) -> tuple[float, float]:
    """``(d, p)``: ``d = coverage(lists) - coverage(baseline_lists)`` and its two-sided p-value by a paired
    permutation test over users (each user's two lists swapped with probability 1/2).

    Coverage is not a mean over users: a bootstrap resample repeats some users and drops others, so it covers fewer
    items than the whole set, and percentile intervals of the difference can miss ``d`` itself (measured: +2.1
    points observed, interval -1.0 to +1.7). The permutation test needs no resampling of users."""
    lists, baseline_lists = np.asarray(lists), np.asarray(baseline_lists)
    observed = coverage(lists, n_items) - coverage(baseline_lists, n_items)
    rng = np.random.default_rng(seed)
    extreme = 0
    for _ in range(n_perm):
        swap = rng.random(len(lists)) < 0.5
        first = np.where(swap[:, None], baseline_lists, lists)
        second = np.where(swap[:, None], lists, baseline_lists)
        extreme += abs(coverage(first, n_items) - coverage(second, n_items)) >= abs(observed) - 1e-12
    return float(observed), float((1 + extreme) / (1 + n_perm))


__all__ = ["PER_USER", "coverage", "coverage_test", "per_user_metrics"]
