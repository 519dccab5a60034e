"""Save and load a model as a folder: the public entry points. Loading never unpickles.

:func:`load_model` reads any kind of model folder (the kind in ``config.json`` picks the reader from the registry
in :mod:`transferkit.models.artifact_kinds`); :func:`save_model` writes a single model (backbone + head) and
:func:`save_any` a model of any kind. The folder format and its checks are in :mod:`transferkit.models.folder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.models.artifact_kinds import load_any, save_any, save_single
from transferkit.models.folder import read_config


def save_model(model: Any, folder: str | Path, *, metrics: dict | None = None, run_config: dict | None = None,
               include_backbone: bool | None = None, overwrite: bool = False,
               extra_files: dict[str, str] | None = None, keep_beside: bool = False) -> Path:
    """Write ``model`` (a :class:`~transferkit.models.model.TransferModel`) to ``folder``; returns the folder path.

    ``include_backbone`` (default: when training changed the backbone, or it has random weights) saves the
    backbone's weights; ``keep_beside`` writes beside a folder that changed during the run instead of failing
    (:func:`~transferkit.models.folder.write_model_folder`).
    """
    return save_single(model, folder, metrics=metrics, run_config=run_config, include_backbone=include_backbone,
                       overwrite=overwrite, extra_files=extra_files, keep_beside=keep_beside)


def load_model(folder: str | Path, task: str | None = None) -> Any:
    """Load a model folder of any kind (safetensors and JSON only; nothing is unpickled).

    Folders of other kinds than ``single`` (multi-task, ensemble, stacked features) load as their own model classes;
    ``task`` picks one task of a multi-task model as a single-task model. Everything read is checked; any
    inconsistency is an :class:`~transferkit.errors.ArtifactError` naming the folder, the file and the fix.
    """
    folder = Path(folder)
    return load_any(folder, read_config(folder), task)


__all__ = ["load_model", "save_any", "save_model"]
