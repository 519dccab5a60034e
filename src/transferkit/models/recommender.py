"""A recommender whose item side comes from ids where an item has history and from its content where it has none.

:class:`Recommender` holds, for ``U`` users and ``I`` items of width ``F``:

- ``user_vectors`` ``(U, F)`` and ``item_id_vectors`` ``(I, F)``: the id-only collaborative-filtering model
  (alternating least squares on the interactions); rows of items without history are zero and ``has_history``
  ``(I,)`` is False for them;
- ``projection`` ``(D, F)`` and ``feature_mean`` ``(D,)``: the linear map from a backbone's frozen ``D``-wide item
  features to the same space, trained on the interactions with the users' vectors held fixed;
  ``item_content_vectors`` ``(I, F)`` are the catalogue's projected features; the projection's scale and the
  constant ``content_offset`` put their scores on the id scores' scale (mean and spread over items with history);
- ``popularity`` ``(I,)``: interactions per item in training; ``seen`` the items each user interacted with.

A user outside training (a cold user) who liked some items gets a vector by the least-squares user step against
those items' vectors (:meth:`Recommender.fold_in`), without retraining.

Scores: ``id`` = user . id vector (items without history cannot be scored), ``content`` = user . content vector,
``hybrid`` = the id score where an item has history, the content score where it has none, ``popularity``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from transferkit.errors import ConfigError, DataError

#: The scorers a :class:`Recommender` offers, in the order results list them.
SCORERS = ("popularity", "id", "content", "hybrid")


class Recommender:
    """User and item vectors from ids and content (see the module docstring); scores, top-k lists, similar items."""

    modality: str
    task = "recommendation"
    #: answers ``POST /recommend`` of the service rather than ``/predict``
    recommends = True

    def __init__(self, *, user_ids: Sequence[str], item_ids: Sequence[str], user_vectors: np.ndarray,
                 item_id_vectors: np.ndarray, has_history: np.ndarray, projection: np.ndarray,
                 feature_mean: np.ndarray, item_features: np.ndarray, content_offset: float,
                 popularity: np.ndarray, seen_indptr: np.ndarray, seen_items: np.ndarray,
                 backbone: dict[str, Any], modality: str, regularization: float = 0.05) -> None:
        self.user_ids = list(user_ids)
        self.item_ids = list(item_ids)
        self.user_vectors = np.asarray(user_vectors, dtype=np.float32)
        self.item_id_vectors = np.asarray(item_id_vectors, dtype=np.float32)
        self.has_history = np.asarray(has_history, dtype=bool)
        self.projection = np.asarray(projection, dtype=np.float32)
        self.feature_mean = np.asarray(feature_mean, dtype=np.float32)
        self.item_features = np.asarray(item_features, dtype=np.float32)
        self.content_offset = float(content_offset)
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.seen_indptr = np.asarray(seen_indptr, dtype=np.int64)
        self.seen_items = np.asarray(seen_items, dtype=np.int64)
        self.backbone = dict(backbone)
        self.modality = modality
        self.regularization = float(regularization)
        self.item_content_vectors = self.project(self.item_features)
        #: below one interaction: ties of popularity (items without history, all at 0) in a fixed random order
        self._ties = np.random.default_rng(0).random(len(self.item_ids)) * 0.5
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {it: i for i, it in enumerate(self.item_ids)}

    @property
    def classes(self) -> list[str]:
        return self.item_ids

    def project(self, features: np.ndarray) -> np.ndarray:
        """``(N, D)`` backbone features -> ``(N, F)`` content vectors."""
        return (np.asarray(features, dtype=np.float32) - self.feature_mean) @ self.projection

    def item_vectors(self, scorer: str) -> np.ndarray:
        """``(I, F)`` item vectors of ``scorer`` (``id``, ``content`` or ``hybrid``)."""
        if scorer == "content":
            return self.item_content_vectors
        if scorer == "id":
            return self.item_id_vectors
        return np.where(self.has_history[:, None], self.item_id_vectors, self.item_content_vectors)

    def score_users(self, users: np.ndarray, scorer: str = "hybrid") -> np.ndarray:
        """``(len(users), I)`` scores of known users; see :meth:`score_vectors`."""
        return self.score_vectors(self.user_vectors[np.asarray(users, dtype=np.int64)], scorer)

    def score_vectors(self, vectors: np.ndarray, scorer: str = "hybrid") -> np.ndarray:
        """``(N, I)`` scores of users given by their vectors ``(N, F)``; ``-inf`` where ``scorer`` cannot score an
        item (``id``: no history)."""
        check_scorer(scorer)
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if scorer == "popularity":
            return np.tile(self.popularity + self._ties, (len(vectors), 1)).astype(np.float64)
        scores = (vectors @ self.item_vectors(scorer).T).astype(np.float64)
        if scorer == "id":
            scores[:, ~self.has_history] = -np.inf
        elif scorer == "hybrid":
            scores[:, ~self.has_history] += self.content_offset
        return scores

    def fold_in(self, items: Sequence[int], scorer: str = "hybrid") -> np.ndarray:
        """``(F,)`` vector of a user outside training who interacted with ``items`` (catalogue indices): the
        alternating-least-squares user step against ``scorer``'s item vectors ``Y`` (the hybrid's for popularity),
        ``(Y^T Y + regularization I)^-1 sum_{i in items} y_i``; an item ``id`` has no vector for adds nothing."""
        check_scorer(scorer)
        vectors = self.item_vectors("hybrid" if scorer == "popularity" else scorer)
        gram = vectors.T @ vectors + self.regularization * np.eye(vectors.shape[1], dtype=np.float32)
        return np.linalg.solve(gram, vectors[np.asarray(items, dtype=np.int64)].sum(axis=0))

    def seen(self, user: int) -> np.ndarray:
        return self.seen_items[self.seen_indptr[user]:self.seen_indptr[user + 1]]

    def top_indices(self, users: np.ndarray, k: int, scorer: str = "hybrid", *,
                    candidates: np.ndarray | None = None, exclude_seen: bool = True) -> np.ndarray:
        """``(len(users), k)`` item indices, best first, among ``candidates`` (a ``(I,)`` mask; default all) and
        without each user's seen items; -1 fills slots no item could take (nothing left, or no score)."""
        users = np.asarray(users, dtype=np.int64)
        excluded = [self.seen(int(u)) for u in users] if exclude_seen else None
        return self.top_of_scores(self.score_users(users, scorer), k, candidates, excluded)

    @staticmethod
    def top_of_scores(scores: np.ndarray, k: int, candidates: np.ndarray | None = None,
                      excluded: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """``(N, k)`` indices of the best ``scores`` ``(N, I)`` among ``candidates``, without ``excluded[n]``;
        -1 where no item is left."""
        scores = np.array(scores, dtype=np.float64)
        if candidates is not None:
            scores[:, ~np.asarray(candidates, dtype=bool)] = -np.inf
        for row, items in enumerate(excluded or ()):
            scores[row, items] = -np.inf
        k = min(k, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.where(np.take_along_axis(scores, order, axis=1) > -np.inf, order, -1)

    def recommend_for_items(self, items: Sequence[str], k: int = 10, scorer: str = "hybrid") -> list[dict[str, Any]]:
        """The ``k`` best items for a new user who liked ``items`` (catalogue ids; see :meth:`fold_in`), those
        items left out."""
        liked = np.array([self.item_index(str(item)) for item in items], dtype=np.int64)
        if liked.size == 0:
            raise DataError("--likes is empty; give the ids of items the new user liked, comma-separated.")
        vector = self.fold_in(liked, scorer) if scorer != "popularity" else np.zeros(self.user_vectors.shape[1])
        scores = self.score_vectors(vector[None, :], scorer)
        top = self.top_of_scores(scores, k, excluded=[liked])[0]
        return [self._row(int(i), float(scores[0, i])) for i in top if i >= 0]

    def user_index(self, user: str) -> int:
        if user not in self._user_index:
            raise DataError(f"user '{user}' has no interactions in this model's training data; give a known user "
                            f"(such as '{self.user_ids[0]}'), or the items the user liked (--likes ITEM,ITEM).")
        return self._user_index[user]

    def item_index(self, item: str) -> int:
        if item not in self._item_index:
            raise DataError(f"item '{item}' is not in this model's catalogue; give a catalogue item, or describe a new "
                            "item by its content (--content: its text, or its image or audio file).")
        return self._item_index[item]

    def recommend(self, user: str, k: int = 10, scorer: str = "hybrid") -> list[dict[str, Any]]:
        """The ``k`` best items for a known ``user`` not yet seen, each with its score and whether it is cold."""
        index = self.user_index(user)
        top = self.top_indices(np.array([index]), k, scorer)[0]
        scores = self.score_users(np.array([index]), scorer)[0]
        return [self._row(int(i), float(scores[i])) for i in top if i >= 0]

    def similar(self, vector: np.ndarray, k: int = 10, exclude: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` catalogue items whose content vectors are nearest ``vector`` ``(F,)`` (cosine)."""
        items = self.item_content_vectors
        norms = np.linalg.norm(items, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
        cosine = items @ vector / np.maximum(norms, 1e-12)
        if exclude is not None:
            cosine[exclude] = -np.inf
        order = np.argsort(-cosine, kind="stable")[:k]
        return [self._row(int(i), float(cosine[i])) for i in order if np.isfinite(cosine[i])]

    def content_features(self, content: str, device: str = "auto") -> np.ndarray:
        """``(1, D)`` backbone features of a new item given as the catalogue's items are: its text, or the path of
        its image or audio file (the modality's entry says which); the backbone is built on first use."""
        from pathlib import Path

        from transferkit.data.dataset import Dataset
        from transferkit.features.extract import extract_features
        from transferkit.modalities import get_modality

        entry = get_modality(self.modality)
        if not str(content).strip():
            raise DataError("--content is empty; give the new item's text, or the path of its file.")
        if entry.strings_are_items:
            data = Dataset(self.modality, [str(content)], None, "new item (--content)")
        else:
            if not Path(content).is_file():
                raise DataError(f"{content}: no such file (--content); this model's items are {self.modality} "
                                "files: give the new item's file.")
            data = entry.files_dataset([str(content)], "new item (--content)")
        if getattr(self, "_backbone", None) is None:
            import torch

            from transferkit.backbones import create_backbone

            with torch.random.fork_rng():  # random:... backbones: the weights the catalogue's features came from
                torch.manual_seed(int(self.backbone.get("seed", 0)))
                self._backbone = create_backbone(self.backbone["name"], **self.backbone.get("options", {}))
        return extract_features(self._backbone, data, cache=None, device=device, progress=False)

    def similar_to_content(self, content: str, k: int = 10, device: str = "auto") -> list[dict[str, Any]]:
        """The ``k`` catalogue items nearest a new item's ``content`` (see :meth:`content_features`)."""
        return self.similar(self.project(self.content_features(content, device))[0], k)

    def _row(self, index: int, score: float) -> dict[str, Any]:
        return {"item": self.item_ids[index], "score": round(score, 6), "cold": not bool(self.has_history[index])}

    def tensors(self) -> dict[str, np.ndarray]:
        """What the model folder's weights file holds."""
        return {"user_vectors": self.user_vectors, "item_id_vectors": self.item_id_vectors,
                "has_history": self.has_history.astype(np.uint8), "projection": self.projection,
                "feature_mean": self.feature_mean, "item_features": self.item_features,
                "popularity": self.popularity, "seen_indptr": self.seen_indptr, "seen_items": self.seen_items}


def check_scorer(scorer: str) -> None:
    if scorer not in SCORERS:
        raise ConfigError(f"option 'scorer': unknown scorer {scorer!r}; known scorers: {', '.join(SCORERS)}.")


# --- the model folder (kind "recommender") ---------------------------------------------------------------------

def save_recommender(model: Recommender, folder: Any, *, metrics: dict | None = None, run_config: dict | None = None,
                     overwrite: bool = False, extra_files: dict[str, str] | None = None,
                     keep_beside: bool = False) -> Any:
    """Write ``model``: its arrays in ``model.safetensors``, ids, backbone and offsets in ``config.json``."""
    import torch

    from transferkit.models.folder import write_model_folder

    tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in model.tensors().items()}
    header = {"format_version": 2, "kind": "recommender", "task": model.task, "modality": model.modality,
              "user_ids": model.user_ids, "item_ids": model.item_ids, "backbone": model.backbone,
              "content_offset": model.content_offset, "regularization": model.regularization,
              "factors": int(model.user_vectors.shape[1])}
    test = (metrics or {}).get("summary", {})
    lines = [f"# Recommender: {len(model.item_ids)} items, {len(model.user_ids)} users", "",
             f"Item content from the frozen backbone `{model.backbone.get('name')}` ({model.modality}); ids where an "
             "item has interactions, content where it has none.", ""]
    lines += [f"- {name}: {value:.4f}" for name, value in test.items() if isinstance(value, float)]
    lines += ["", "Recommend with `transferkit recommend top FOLDER --user USER`.", ""]
    return write_model_folder(folder, tensors, header, metrics=metrics, run_config=run_config, overwrite=overwrite,
                              card=lambda config: "\n".join(lines), weights_metadata={"kind": "recommender"},
                              extra_files=extra_files, keep_beside=keep_beside)


def load_recommender(folder: Any, config: dict[str, Any], task: str | None = None) -> Recommender:
    """Read a folder written by :func:`save_recommender`; every array checked against the ids it must match."""
    from transferkit.errors import ArtifactError
    from transferkit.models.folder import RESAVE, read_weights

    tensors = {k: v.numpy() for k, v in read_weights(folder, ("",)).items()}
    users, items = config["user_ids"], config["item_ids"]
    shapes = {"user_vectors": (len(users), None), "item_id_vectors": (len(items), None), "has_history": (len(items),),
              "item_features": (len(items), None), "popularity": (len(items),), "seen_indptr": (len(users) + 1,)}
    for name, shape in shapes.items():
        value = tensors.get(name)
        if value is None or value.ndim != len(shape) or value.shape[0] != shape[0]:
            raise ArtifactError(f"{folder}/model.safetensors: '{name}' is missing or does not match the "
                                f"{len(users)} users and {len(items)} items of config.json; restore the saved files, "
                                f"or {RESAVE}.")
    return Recommender(user_ids=users, item_ids=items, user_vectors=tensors["user_vectors"],
                       item_id_vectors=tensors["item_id_vectors"], has_history=tensors["has_history"].astype(bool),
                       projection=tensors["projection"], feature_mean=tensors["feature_mean"],
                       item_features=tensors["item_features"], content_offset=float(config["content_offset"]),
                       popularity=tensors["popularity"], seen_indptr=tensors["seen_indptr"],
                       seen_items=tensors["seen_items"], backbone=config["backbone"], modality=config["modality"],
                       regularization=float(config.get("regularization", 0.05)))


__all__ = ["Recommender", "SCORERS", "check_scorer", "load_recommender", "save_recommender"]
