"""Held-out evaluation of a recommender: the split, the scores of each scorer, and the verdicts.

The split makes real cold starts: a share of the items with interactions (``cold_items``) is held out of training
entirely, with all their interactions, and so is a share of the users (``cold_users``); of the rest, each user's
latest ``test_fraction`` of interactions (by the time column; a seeded random share without one) is held out, at
least one kept for training. Pairs seen in training are not test pairs.

Three views, each scored for the users with training history and at least one held-out item there:

- ``warm``: lists among the items with history; relevant = the user's held-out items with history;
- ``cold``: lists among the cold items only; relevant = the user's interactions with cold items;
- ``all``: lists among the whole catalogue; relevant = every held-out item; catalogue coverage and cold share;
- ``new users``: ``cold_users`` of the users are held out of training entirely; each reveals the items of their
  earliest ``cold_user_likes`` interactions, from which :meth:`~transferkit.models.recommender.Recommender.fold_in`
  makes a user vector (per scorer, against its item vectors); relevant = the user's other items; lists among the
  whole catalogue.

Each scorer (popularity, id-only, content-only, hybrid) gets recall / NDCG / MAP at ``k``; content and hybrid are
compared with the reference of each view (id-only on ``warm`` and ``all``, popularity on ``cold``, where id-only
cannot score) by a paired bootstrap over users, in the words of ``fit``'s verdicts; catalogue coverage, which is not
a mean over users, by a paired permutation test over users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transferkit.data.interactions import Interactions
from transferkit.evaluation.verdict import HELPED, HURT, NO_DIFFERENCE, paired_bootstrap_interval, verdict_of
from transferkit.models.recommender import SCORERS, Recommender
from transferkit.recommendation.metrics import coverage, coverage_test, per_user_metrics

#: Each view's reference scorer, that the content and hybrid scorers are compared with.
REFERENCE = {"warm": "id", "cold": "popularity", "all": "id", "new users": "id"}
COMPARED = ("content", "hybrid")
NAMES = {"id": "id-only", "popularity": "popularity", "content": "content", "hybrid": "hybrid"}
VIEW_NAMES = {"warm": "warm items", "cold": "cold items", "all": "all items", "new users": "new users"}
METRICS = ("recall", "ndcg", "map")


@dataclass
class Split:
    """Row indices of the interactions used for training and held out, the cold items ``(I,)`` and, for the cold
    users ``(U,)`` (none of whose rows is trained on), the rows revealed at scoring time and the rows to find."""

    train: np.ndarray
    test: np.ndarray
    cold: np.ndarray
    cold_users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    revealed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cold_user_test: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _by_user(rows: np.ndarray, interactions: Interactions, order_key: np.ndarray) -> list[np.ndarray]:
    """``rows`` grouped by user, each group in ``order_key`` order (time, or a seeded random order)."""
    ordered = rows[np.lexsort((order_key[rows], interactions.users[rows]))]
    starts = np.flatnonzero(np.r_[True, np.diff(interactions.users[ordered]) != 0]) if ordered.size else []
    return [ordered[a:b] for a, b in zip(starts, np.r_[starts[1:], ordered.size])]


def split_interactions(interactions: Interactions, n_items: int, config: Any, seed: int) -> Split:
    """Hold out ``config.cold_items`` of the items, ``config.cold_users`` of the users and ``config.test_fraction``
    of each other user's other interactions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    used = np.unique(interactions.items)
    cold = np.zeros(n_items, dtype=bool)
    cold[rng.choice(used, size=int(round(config.cold_items * used.size)), replace=False)] = True
    people = np.unique(interactions.users)
    n_cold_users = min(int(round(config.cold_users * people.size)), max(people.size - 2, 0))
    cold_users = np.zeros(len(interactions.user_ids), dtype=bool)
    cold_users[rng.choice(people, size=n_cold_users, replace=False)] = True
    order_key = interactions.times if interactions.times is not None else rng.random(len(interactions))
    outside = cold_users[interactions.users]
    is_test = cold[interactions.items] & ~outside
    for rows in _by_user(np.flatnonzero(~is_test & ~outside), interactions, order_key):
        held = min(int(np.ceil(config.test_fraction * rows.size)), rows.size - 1)
        if held > 0:
            is_test[rows[rows.size - held:]] = True
    train = np.flatnonzero(~is_test & ~outside)
    trained_pairs = set(zip(interactions.users[train].tolist(), interactions.items[train].tolist()))
    test = np.array([n for n in np.flatnonzero(is_test)
                     if (int(interactions.users[n]), int(interactions.items[n])) not in trained_pairs], dtype=np.int64)
    groups = _by_user(np.flatnonzero(outside), interactions, order_key)
    revealed = [rows[:config.cold_user_likes] for rows in groups]
    to_find = [rows[config.cold_user_likes:] for rows in groups]
    return Split(train, test, cold, cold_users, np.concatenate(revealed or [np.zeros(0, np.int64)]),
                 np.concatenate(to_find or [np.zeros(0, np.int64)]))


@dataclass
class RecommendEvaluation:
    """Figures of every view and scorer, the comparisons, and the split's sizes."""

    k: int
    views: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "views": self.views, "comparisons": self.comparisons, "facts": self.facts}

    def table(self) -> str:
        """The figures as a plain-text table: a row per view and scorer."""
        k = self.k
        head = f"{'view':<9} {'model':<11} {'recall@' + str(k):>10} {'NDCG@' + str(k):>9} {'MAP@' + str(k):>9} " \
               f"{'coverage':>9} {'cold share':>10} {'users':>6}"
        lines = [head, "-" * len(head)]
        for view, rows in self.views.items():
            for scorer, row in rows.items():
                cells = [_cell(row.get(m)) for m in (*METRICS, "coverage", "cold_share")]
                lines.append(f"{view:<9} {scorer:<11} {cells[0]:>10} {cells[1]:>9} {cells[2]:>9} {cells[3]:>9} "
                             f"{cells[4]:>10} {row.get('users', 0):>6}")
        return "\n".join(lines)

    def sentences(self) -> list[str]:
        return [c["sentence"] for c in self.comparisons]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _relevant(interactions: Interactions, rows: np.ndarray, mask: np.ndarray, n_users: int) -> list[set[int]]:
    relevant: list[set[int]] = [set() for _ in range(n_users)]
    for n in rows:
        item = int(interactions.items[n])
        if mask[item]:
            relevant[int(interactions.users[n])].add(item)
    return relevant


def evaluate_recommender(model: Recommender, interactions: Interactions, split: Split, k: int, *,
                         seed: int = 0, n_boot: int = 2000) -> RecommendEvaluation:
    """Score every scorer of ``model`` (trained on ``split.train``) on the held-out rows, in each view."""
    n_users, n_items = len(interactions.user_ids), len(model.item_ids)
    trained_users = model.seen_indptr[1:] > model.seen_indptr[:-1]
    candidates = {"warm": model.has_history & ~split.cold, "cold": split.cold.copy(),
                  "all": np.ones(n_items, dtype=bool)}
    result = RecommendEvaluation(k, facts={
        "train_interactions": int(split.train.size), "test_interactions": int(split.test.size),
        "cold_items": int(split.cold.sum()), "cold_users": int(split.cold_users.sum()), "items": n_items,
        "users": n_users})
    for view, allowed in candidates.items():
        relevant = _relevant(interactions, split.test, allowed, n_users)
        users = np.flatnonzero(trained_users & np.array([bool(r) for r in relevant]))
        if users.size == 0 or not allowed.any():
            continue
        lists = {scorer: model.top_indices(users, k, scorer, candidates=allowed) for scorer in SCORERS}
        _score_view(result, view, lists, [relevant[u] for u in users], split.cold, n_items, seed, n_boot)
    liked = _relevant(interactions, split.revealed, np.ones(n_items, dtype=bool), n_users)
    to_find = _relevant(interactions, split.cold_user_test, np.ones(n_items, dtype=bool), n_users)
    users = [u for u in range(n_users) if liked[u] and to_find[u] - liked[u]]
    if users:
        lists = {}
        for scorer in SCORERS:
            vectors = np.stack([model.fold_in(sorted(liked[u]), scorer) for u in users])
            lists[scorer] = model.top_of_scores(model.score_vectors(vectors, scorer), k,
                                                excluded=[np.array(sorted(liked[u])) for u in users])
        _score_view(result, "new users", lists, [to_find[u] - liked[u] for u in users], split.cold, n_items, seed,
                    n_boot)
    return result


def _score_view(result: RecommendEvaluation, view: str, lists: dict[str, np.ndarray], wanted: list[set[int]],
                cold: np.ndarray, n_items: int, seed: int, n_boot: int) -> None:
    """The figures of each scorer's ``lists`` against the ``wanted`` items, and the comparisons, into ``result``."""
    per_user, rows = {}, {}
    for scorer in SCORERS:
        per_user[scorer] = per_user_metrics(lists[scorer], wanted, result.k, cold)
        scored = not (scorer == "id" and view == "cold")  # id-only has no vector for a cold item
        rows[scorer] = {**{m: float(per_user[scorer][m].mean()) if scored else None for m in METRICS},
                        "coverage": coverage(lists[scorer], n_items),
                        "cold_share": float(per_user[scorer]["cold_share"].mean()), "users": len(wanted)}
    result.views[view] = rows
    result.comparisons += _compare(view, per_user, lists, n_items, seed, n_boot)


def _compare(view: str, per_user: dict, lists: dict, n_items: int, seed: int, n_boot: int) -> list[dict[str, Any]]:
    reference = REFERENCE[view]
    out = []
    for scorer in COMPARED:
        for metric in METRICS:
            diff = per_user[scorer][metric] - per_user[reference][metric]
            low, high = paired_bootstrap_interval(diff, n_boot=n_boot, seed=seed)
            out.append(_comparison(view, scorer, reference, metric, float(diff.mean()), low, high))
        if view == "all":
            out.append(_coverage_comparison(scorer, reference, lists, n_items, seed))
    return out


def _coverage_comparison(scorer: str, reference: str, lists: dict, n_items: int, seed: int) -> dict[str, Any]:
    """Coverage is compared by a paired permutation test (:func:`coverage_test`): a verdict at p < 0.05."""
    diff, p = coverage_test(lists[scorer], lists[reference], n_items, seed=seed)
    verdict = NO_DIFFERENCE if p >= 0.05 else HELPED if diff > 0 else HURT
    sentence = (f"all items, coverage: {NAMES[scorer]} vs {NAMES[reference]} {100 * diff:+.1f} points (paired "
                f"permutation test over users, p = {p:.3f}): {verdict}")
    return {"view": "all", "model": scorer, "baseline": reference, "metric": "coverage", "difference": diff,
            "p_value": p, "verdict": verdict, "sentence": sentence}


def _comparison(view: str, scorer: str, reference: str, metric: str, diff: float, low: float,
                high: float) -> dict[str, Any]:
    verdict = verdict_of(low, high)
    sentence = (f"{VIEW_NAMES[view]}, {metric}@k: {NAMES[scorer]} vs {NAMES[reference]} {100 * diff:+.1f} points "
                f"(95% interval {100 * low:+.1f} to {100 * high:+.1f}): {verdict}")
    return {"view": view, "model": scorer, "baseline": reference, "metric": metric, "difference": diff,
            "ci_low": low, "ci_high": high, "confidence": 0.95, "verdict": verdict, "sentence": sentence}


__all__ = ["RecommendEvaluation", "Split", "evaluate_recommender", "split_interactions"]
