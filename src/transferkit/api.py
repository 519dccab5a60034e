"""The user's verbs as Python functions: ``fit``, ``evaluate``, ``predict``, ``list_models``. Each lives in its
module under :mod:`transferkit.workflows`; this module only gathers them (the names ``transferkit.fit`` etc.
resolve here)."""

from __future__ import annotations

from transferkit.backbones.registry import list_backbones as list_models
from transferkit.features.cache import default_cache_dir
from transferkit.workflows.evaluate import evaluate
from transferkit.workflows.explain import ExplainResult, explain
from transferkit.workflows.fit import FitResult, fit
from transferkit.workflows.predict import predict
from transferkit.workflows.recommend import RecommendResult, recommend_evaluate, recommend_fit, recommend_top
from transferkit.workflows.steps import load_splits, resolve_model, source_origin

__all__ = ["ExplainResult", "FitResult", "default_cache_dir", "evaluate", "explain", "fit", "list_models",
           "load_splits", "predict", "recommend_evaluate", "recommend_fit", "recommend_top", "RecommendResult",
           "resolve_model", "source_origin"]
