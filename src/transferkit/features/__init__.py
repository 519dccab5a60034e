"""Batched feature extraction and the on-disk feature cache."""

from transferkit.features.cache import FeatureCache
from transferkit.features.extract import ExtractionStats, extract_features, run_backbone

__all__ = ["ExtractionStats", "FeatureCache", "extract_features", "run_backbone"]
