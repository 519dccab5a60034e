"""The options of ``recommend fit``: typed, checked at construction, the same for the Python API, YAML files and flags.

Light on purpose (pydantic only): the CLI builds its flags from :class:`RecommendConfig` without importing torch.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from transferkit.modalities import get_modality
from transferkit.options import DataOptions, OutputOptions, RuntimeOptions, build_options


class RecommendConfig(DataOptions, RuntimeOptions, OutputOptions):
    """Everything that decides what ``recommend fit`` reads, trains, evaluates and writes."""

    items: str | None = Field(None, description="the item table: an item-id column and the items' content (text columns, or an image or audio path column); every item of the interactions must be in it")
    user_column: str | None = Field(None, description="user-id column of the interactions (default: user, user_id, userid, customer)")
    item_column: str | None = Field(None, description="item-id column of both tables (default: item, item_id, itemid, movie_id, product_id, id)")
    rating_column: str | None = Field(None, description="rating or event-strength column of the interactions (default: rating, score, weight when present; otherwise every row counts once)")
    time_column: str | None = Field(None, description="timestamp column of the interactions (default: timestamp, time, date when present); each user's latest interactions are the held-out test data")
    content_columns: list[str] | None = Field(None, description="item-table columns joined into each item's text (default: --text-column, else every column but the item id)")
    min_rating: float | None = Field(None, description="interactions with a lower rating are not counted as positive (default: every interaction counts)")
    backbone: str | None = Field(None, description="backbone whose frozen features describe the items (`transferkit models`, hf:MODEL_ID, a local folder); default: the modality's default backbone")
    factors: int = Field(64, ge=2, le=1024, description="width of the user and item vectors")
    iterations: int = Field(15, ge=1, description="alternating-least-squares sweeps of the id-only model")
    regularization: float = Field(0.05, ge=0, description="L2 weight of the id-only model's vectors")
    epochs: int = Field(30, ge=1, description="passes over the interactions that train the content projection")
    lr: float = Field(0.01, gt=0, description="learning rate of the content projection (Adam)")
    cold_items: float = Field(0.2, ge=0, lt=0.9, description="evaluation: share of items held out of training entirely (cold-start items); 0: none")
    cold_users: float = Field(0.1, ge=0, lt=0.9, description="evaluation: share of users held out of training entirely (cold-start users); each is scored from the items of their first --cold-user-likes interactions, without retraining; 0: none")
    cold_user_likes: int = Field(5, ge=1, description="evaluation: interactions of each cold user revealed (the earliest ones); the rest are the held-out items to find")
    test_fraction: float = Field(0.2, gt=0, lt=0.9, description="evaluation: share of each user's interactions held out (the latest ones when there is a time column)")
    k: int = Field(10, ge=1, description="length of the recommendation lists scored (recall@k, NDCG@k, MAP@k)")
    evaluate: bool = Field(True, description="hold out cold items and each user's latest interactions, train on the rest, score the models on them (then train the saved model on everything)")
    max_length: int = Field(64, gt=0, description="text backbones: maximum tokens per item text")
    image_size: int | None = Field(None, ge=16, le=2048, description="image backbones: input resolution in pixels (square) instead of the one the backbone was pretrained at")

    def backbone_options(self, modality: str) -> dict[str, Any]:
        """The ``create_backbone`` options of this run for ``modality`` (token limit, resolution)."""
        return get_modality(modality).backbone_options(max_length=self.max_length, image_size=self.image_size)


def make_recommend_config(origin: str = "recommend", **values: Any) -> RecommendConfig:
    """A :class:`RecommendConfig`; problems become one ConfigError naming each option and its flag."""
    return build_options(RecommendConfig, origin, **values)


__all__ = ["RecommendConfig", "make_recommend_config"]
