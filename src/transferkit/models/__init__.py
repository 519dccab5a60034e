"""What a run produces and a model folder holds: the adapted model (:mod:`~transferkit.models.model`), the multi-task
model (:mod:`~transferkit.models.multitask_model`), ensemble and stacked models (:mod:`~transferkit.models.combined`),
their heads (:mod:`~transferkit.models.heads`), and saving and loading them (:mod:`~transferkit.models.artifacts`,
with one registry of model-folder kinds in :mod:`~transferkit.models.artifact_kinds`).

Nothing here trains or evaluates: strategies, fusion, evaluation and the verbs import this package, never the other
way round. torch loads when a name below is first used, not at import.
"""

from __future__ import annotations

from transferkit._lazy import lazy_getattr

_LAZY = {
    "TransferModel": "transferkit.models.model",
    "MultiTaskModel": "transferkit.models.multitask_model",
    "EnsembleModel": "transferkit.models.combined",
    "StackedModel": "transferkit.models.combined",
    "save_model": "transferkit.models.artifacts",
    "load_model": "transferkit.models.artifacts",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
