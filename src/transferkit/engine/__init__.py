"""The one training engine every strategy uses; the only package that imports Lightning.

A strategy hands the engine a :class:`~transferkit.engine.plan.TrainingPlan` (what is trainable, the parameter
groups and their learning rates, the loss terms) and the engine owns the rest: the Trainer, mixed precision,
gradient accumulation, early stopping, best-checkpoint selection, resuming, seeding, progress, MLflow and CSV logs,
and multi-process (DDP) runs. ``freezing`` and ``param_groups`` are plain PyTorch helpers that load no Lightning.
"""

from __future__ import annotations

from transferkit._lazy import lazy_getattr
_LAZY = {
    "EngineSettings": "transferkit.engine.settings",
    "TrainingOutcome": "transferkit.engine.trainer",
    "run_training": "transferkit.engine.trainer",
    "ParamGroup": "transferkit.engine.plan",
    "TrainingPlan": "transferkit.engine.plan",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
