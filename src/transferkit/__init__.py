"""transferkit: take pretrained models and a small labelled dataset, get the best adapted model and an honest
account of how much transfer helped.

The verbs are functions: ``transferkit.fit``, ``evaluate``, ``predict``, ``load_model``, ``list_models``. Heavy
libraries (torch, timm, transformers) load on first use, not at import.
"""

from __future__ import annotations

import os

from transferkit._lazy import lazy_getattr
from transferkit._version import __version__
from transferkit.errors import (
    ArtifactError,
    BackboneError,
    ConfigError,
    DataError,
    DataNotFoundError,
    TransferkitError,
)

# MLflow configures its own loggers at INFO when it is first imported (after any level set before): database
# set-up messages would interleave with results. A user's own MLFLOW_LOGGING_LEVEL wins.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

_LAZY = {
    "fit": "transferkit.workflows.fit",
    "evaluate": "transferkit.workflows.evaluate",
    "predict": "transferkit.workflows.predict",
    "list_models": "transferkit.api",
    "FitResult": "transferkit.workflows.fit",
    "FitConfig": "transferkit.config",
    "FineTuneConfig": "transferkit.strategies.options",
    "LoraConfig": "transferkit.strategies.options",
    "L2SPConfig": "transferkit.strategies.options",
    "load_model": "transferkit.models.artifacts",
    "save_model": "transferkit.models.artifacts",
    "load_data": "transferkit.data.sources",
    "from_arrays": "transferkit.data.sources",
    "create_backbone": "transferkit.backbones.registry",
    "LinearProbe": "transferkit.estimators.linear_probe",
    "rank": "transferkit.workflows.rank",
    "explain": "transferkit.workflows.explain",
    "ExplainResult": "transferkit.workflows.explain",
    "ExplainConfig": "transferkit.explanations.config",
    "explore": "transferkit.workflows.explore",
    "ExploreConfig": "transferkit.exploration.config",
    "ExploreResult": "transferkit.exploration.result",
    "write_report": "transferkit.reporting.report",
    "serve": "transferkit.workflows.serve",
    "distill": "transferkit.workflows.distill",
    "DistillConfig": "transferkit.strategies.distill_setup",
    "DistillResult": "transferkit.workflows.distill",
    "compress_model": "transferkit.workflows.compress",
    "export_model_folder": "transferkit.workflows.export",
    "adapt": "transferkit.workflows.adapt",
    "AdaptConfig": "transferkit.strategies.adaptation.config",
    "AdaptResult": "transferkit.workflows.adapt",
    "multitask": "transferkit.workflows.multitask",
    "MultiTaskResult": "transferkit.workflows.multitask",
    "MultiTaskConfig": "transferkit.strategies.multitask_options",
    "fuse": "transferkit.workflows.fuse",
    "cross_validate": "transferkit.workflows.cv",
    "CVResult": "transferkit.evaluation.cross_validation",
    "tune": "transferkit.workflows.tune",
    "TuneConfig": "transferkit.tuning.search",
    "TuneResult": "transferkit.tuning.search",
    "recommend_fit": "transferkit.workflows.recommend",
    "recommend_evaluate": "transferkit.workflows.recommend",
    "recommend_top": "transferkit.workflows.recommend",
    "RecommendResult": "transferkit.workflows.recommend",
    "RecommendConfig": "transferkit.recommendation.config",
}

__all__ = ["__version__", "ArtifactError", "BackboneError", "ConfigError", "DataError", "DataNotFoundError",
           "TransferkitError", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
