"""The options of ``explore``: typed, checked at construction, the same for the Python API, YAML files and flags.

Light on purpose (pydantic only): the CLI builds its flags from :class:`ExploreConfig` without importing torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.options import DataOptions, RuntimeOptions


class ExploreConfig(DataOptions, RuntimeOptions):
    """Everything that decides what ``explore`` computes and where it writes. ``None`` means "chosen for you"."""

    backbone: str | None = Field(None, description="backbone whose frozen features are explored (`transferkit models`, timm:ARCH, hf:MODEL_ID, a local folder); default: the modality's default backbone")
    unlabelled: str | None = Field(None, description="unlabelled data explored beside DATA (a folder of images or clips, or a table with a text or path column); --suggest-labels proposes a label for each of its examples")
    test: str | None = Field(None, description="another split of the same task (same form as DATA): explored beside it, so that duplicates across the splits (leakage) are found")
    output: str | None = Field(None, description="folder for explore.html, explore.csv (and explore.parquet when pyarrow is installed) and summary.json; nothing is written when not given (Python API); the CLI's default is ./explore")
    overwrite: bool = Field(False, description="replace the outputs of an earlier explore run in the output folder")
    map: Literal["auto", "umap", "tsne", "pca"] = Field("auto", description="2-D map of the features: umap (umap-learn, the explore extra), tsne (scikit-learn) or pca; auto is t-SNE up to 5,000 examples, UMAP above (PCA when umap-learn is not installed)")
    cluster_method: Literal["kmeans", "hdbscan"] = Field("kmeans", description="kmeans (the number of clusters chosen by the silhouette score, or --clusters) or hdbscan (scikit-learn; examples in no dense group get cluster -1)")
    clusters: int | None = Field(None, ge=2, description="number of k-means clusters (default: the k in 2..max-clusters with the best silhouette score)")
    max_clusters: int = Field(20, ge=2, description="largest number of clusters the silhouette choice tries")
    duplicate_similarity: float = Field(0.97, gt=0, le=1, description="cosine similarity of features at or above which two examples are near-duplicates (identical content is always an exact duplicate)")
    neighbours: int = Field(10, ge=1, description="nearest neighbours per example for the outlier score (mean cosine distance to them) and the duplicate search")
    exact_search_limit: int = Field(20000, ge=2, description="up to this many examples neighbours are found exactly (blocked matrix products); above it by pynndescent (approximate; the explore extra)")
    folds: int = Field(5, ge=2, description="folds of the out-of-fold probe whose probabilities find label issues and make suggested labels")
    suggest_labels: bool = Field(False, description="propose a label and its probability for each unlabelled example (from --unlabelled), from a probe trained on the labelled examples")
    max_length: int = Field(256, gt=0, description="text backbones: maximum tokens per text")
    image_size: int | None = Field(None, ge=16, le=2048, description="image backbones: input resolution in pixels (square) instead of the one the backbone was pretrained at")
    map_points: int = Field(5000, ge=10, description="most points drawn on the page's map (a random sample, flagged examples always among them); the tables hold every example")

    def backbone_options(self, modality: str) -> dict[str, Any]:
        """The ``create_backbone`` options of this run for ``modality`` (token limit, resolution)."""
        return get_modality(modality).backbone_options(max_length=self.max_length, image_size=self.image_size)


def make_explore_config(origin: str = "explore", **values: Any) -> ExploreConfig:
    """An :class:`ExploreConfig`; problems become one ConfigError naming each option, what was given and what is
    allowed."""
    try:
        return ExploreConfig(**values)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "(options)"
            if error["type"] == "extra_forbidden":
                allowed = ", ".join(ExploreConfig.model_fields)
                lines.append(f"unknown option '{field}'; allowed options are: {allowed}")
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
                lines.append(f"option '{field}': {message} (got {error.get('input')!r})")
        raise ConfigError(f"{origin}: " + "; ".join(lines)) from None


__all__ = ["ExploreConfig", "make_explore_config"]
