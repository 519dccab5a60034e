"""The service's ``POST /recommend`` for a recommender folder (``transferkit recommend fit``).

The request is a JSON object with exactly one of

- ``"user"``: the best items for a known user (items the user interacted with left out), by ``"scorer"``
  (``hybrid`` by default; ``id``, ``content``, ``popularity``);
- ``"likes"``: the best items for a new user who liked these catalogue items (by ``"scorer"``);
- ``"item"``: the catalogue items whose content is nearest a catalogue item's;
- ``"content"``: the catalogue items nearest a new item's text (text catalogues; the service reads no file path);

and ``"k"`` (default 10, at most the settings' ``max_batch`` x 10). The answer is ``{"model", "items": [{"item",
"score", "cold"}]}``. An unknown user or item, or a request that is not one of these, is a 422 whose detail names
the field and the fix.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transferkit.errors import ArtifactError, TransferkitError
from transferkit.serving.body import body_problems

#: The most items one answer lists.
MAX_K = 1000


class RecommendRequest(BaseModel):
    """The JSON body of ``POST /recommend``."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, description="a user known to the model")
    likes: list[str] | None = Field(None, max_length=MAX_K, description="a new user's liked items (catalogue ids)")
    item: str | None = Field(None, description="a catalogue item: its nearest items by content")
    content: str | None = Field(None, description="a new item's text: the catalogue items nearest it")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items to list")
    scorer: Literal["hybrid", "id", "content", "popularity"] = Field("hybrid", description="scores for a user")


class RecommendPredictor:
    """A loaded recommender behind the service: ``recommend(request)`` answers ``POST /recommend``; classifier
    endpoints refuse it (``recommends``)."""

    recommends = True
    task = "recommendation"

    def __init__(self, folder: str | Path, *, runtime: str = "torch", device: str = "cpu", threads: int = 1) -> None:
        from transferkit.models.artifacts import load_model
        from transferkit.models.recommender import Recommender

        self.folder = Path(folder)
        self.model = load_model(self.folder)
        if not isinstance(self.model, Recommender):
            raise ArtifactError(f"{self.folder}: not a recommender folder.")
        self.modality = self.model.modality
        self.classes = self.model.item_ids
        self.runtime = "numpy"
        self.device = device
        self.checked = False
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Score the first user once: vectors that give non-finite scores are refused before the service starts."""
        import numpy as np

        scores = self.model.score_users(np.array([0]), "hybrid")
        if not np.isfinite(scores).all():
            raise ArtifactError(f"{self.folder}: the model gives non-finite scores; re-save it (run recommend fit "
                                "again).")
        self.checked = True

    def predict_proba(self, items: Any) -> Any:
        raise TransferkitError("a recommender has no class probabilities; POST /recommend.")

    def info(self) -> dict[str, Any]:
        model = self.model
        return {"kind": "recommender", "task": self.task, "modality": self.modality, "users": len(model.user_ids),
                "items": len(model.item_ids), "cold_items": int((~model.has_history).sum()),
                "backbone": model.backbone.get("name"), "endpoints": ["/recommend", "/health", "/info"]}

    def recommend(self, body: bytes) -> list[dict[str, Any]]:
        """The rows answering the JSON ``body``; an HTTPException (422) for a request that cannot be answered."""
        request = parse_request(body)
        asked = [name for name in ("user", "likes", "item", "content") if getattr(request, name) is not None]
        if len(asked) != 1:
            raise _unprocessable("give exactly one of the fields 'user', 'likes', 'item' or 'content'"
                                 + (f" (got {', '.join(asked)})" if asked else "") + ".")
        model = self.model
        try:
            with self._lock:
                if request.user is not None:
                    return model.recommend(request.user, request.k, request.scorer)
                if request.likes is not None:
                    return model.recommend_for_items(request.likes, request.k, request.scorer)
                if request.item is not None:
                    index = model.item_index(request.item)
                    return model.similar(model.item_content_vectors[index], request.k, exclude=index)
                if not _takes_text(model.modality):
                    raise _unprocessable(f"this model's items are {model.modality} files; the service takes a new "
                                         "item's content as text only (use `transferkit recommend top --content`).")
                return model.similar_to_content(request.content, request.k, self.device)
        except TransferkitError as exc:
            raise _unprocessable(str(exc).replace("--likes", "'likes'").replace("--item", "'item'")
                                 .replace("--content", "'content'")) from None


def _takes_text(modality: str) -> bool:
    from transferkit.modalities import get_modality

    return bool(get_modality(modality).strings_are_items)


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(status_code=422, detail=detail)


def parse_request(body: bytes) -> RecommendRequest:
    """The checked :class:`RecommendRequest` of a JSON body (400: not JSON; 422: a field wrong or unknown)."""
    example = 'send a JSON object like {"user": "42", "k": 10}, {"item": "7"} or {"content": "a new title"}'
    try:
        data = json.loads(body.decode("utf-8-sig") or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(status_code=400, detail=f"the body is not UTF-8 JSON ({exc}); {example}.") from None
    if not isinstance(data, dict):
        raise _unprocessable(f"the JSON body must be an object; {example}.")
    try:
        return RecommendRequest.model_validate(data)
    except ValidationError as exc:
        raise _unprocessable(body_problems(exc, RecommendRequest) + f"; {example}.") from None


def folder_recommends(folder: str | Path) -> bool:
    """Whether ``folder`` holds a recommender (asked of its kind's model class, without loading the weights)."""
    import importlib

    from transferkit.models.artifact_kinds import REGISTRY
    from transferkit.models.folder import read_config

    name = read_config(folder).get("kind", "single")
    kind = REGISTRY.find(name) if isinstance(name, str) else None
    if kind is None:
        return False
    module, _, cls = kind.model_class.partition(":")
    return bool(getattr(getattr(importlib.import_module(module), cls), "recommends", False))


__all__ = ["MAX_K", "RecommendPredictor", "RecommendRequest", "folder_recommends", "parse_request"]
