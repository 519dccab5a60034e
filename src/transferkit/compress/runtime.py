"""Predictions of a saved model through ONNX Runtime (``predict --runtime onnx``), and the model's ONNX file.

The model folder supplies the preprocessing (its backbone's ``prepare`` and ``collate``) and the class names; the
ONNX file (float32 from ``transferkit export``, or int8 from ``transferkit compress``) supplies the logits. The
file's metadata must name the same classes in the same order, else the predictions would be mislabelled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, ExportError

#: The ONNX file a model folder holds by default (written by ``transferkit export`` and ``compress``).
DEFAULT_ONNX_FILE = "model.onnx"


def model_onnx_path(folder: str | Path | None, onnx_file: str | Path | None = None) -> Path:
    """The ONNX file of a model: ``onnx_file`` when given (relative to the folder if not found as is), else
    ``FOLDER/model.onnx``; a :class:`ConfigError` saying how to make it when there is none."""
    if onnx_file is not None:
        path = Path(onnx_file)
        if not path.is_file() and folder is not None and (Path(folder) / path).is_file():
            path = Path(folder) / path
        if not path.is_file():
            raise ConfigError(f"--onnx-file {onnx_file}: no such file.")
        return path
    if folder is None:
        raise ConfigError("runtime 'onnx' needs the model's folder (or onnx_file=...) to find its ONNX file.")
    path = Path(folder) / DEFAULT_ONNX_FILE
    if not path.is_file():
        raise ConfigError(f"{folder}: has no {DEFAULT_ONNX_FILE}; write it first with `transferkit export {folder}` "
                          "(or `transferkit compress` for an int8 one), or use --runtime torch.")
    return path


class OnnxClassifier:
    """Class probabilities of ``model``'s classes from an ONNX file of it, computed by ONNX Runtime on the CPU."""

    def __init__(self, model: Any, path: str | Path, *, threads: int | None = None) -> None:
        from transferkit.backbones.onnx_graph import onnx_session
        from transferkit.compress.onnx import read_metadata

        self.model, self.path = model, Path(path)
        metadata = read_metadata(self.path)
        if metadata.get("output") not in (None, "logits"):
            raise ExportError(f"{self.path}: computes {metadata.get('output')}, not a model's logits; export the model "
                              "folder (transferkit export MODEL).")
        classes = json.loads(metadata["classes"]) if "classes" in metadata else None
        if classes is not None and list(classes) != list(model.classes):
            raise ExportError(f"{self.path}: was exported for the classes {classes[:10]}, not this model's "
                              f"{list(model.classes)[:10]}; export this model again.")
        try:
            self.session = onnx_session(self.path, threads)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's load errors have no common public base
            raise ExportError(f"{self.path}: ONNX Runtime cannot load it ({type(exc).__name__}); export the model "
                              "again: transferkit export MODEL --overwrite.") from None
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(model.classes):
            raise ExportError(f"{self.path}: gives {width} outputs per example but the model has "
                              f"{len(model.classes)} classes; it was exported from another model. Export this model "
                              "again: transferkit export MODEL --overwrite.")

    def logits_of_batch(self, batch: Any) -> np.ndarray:
        from transferkit.backbones.onnx_graph import onnx_feed

        return self.session.run(None, onnx_feed(batch, self.model.modality))[0]

    def predict_logits(self, data: Dataset, *, batch_size: int = 64, num_workers: int = 0) -> np.ndarray:
        """Logits ``(N, classes)`` of every example, in the dataset's order."""
        from transferkit.features.extract import batches_in_order, restore_order

        if data.modality != self.model.modality:
            from transferkit.errors import DataError

            raise DataError(f"{data.origin}: holds {data.modality} data, but this model takes {self.model.modality} "
                            "input.")
        loader, order = batches_in_order(self.model.backbone, data, batch_size=batch_size, num_workers=num_workers)
        chunks = [self.logits_of_batch(batch) for batch in loader]
        logits = np.concatenate(chunks) if chunks else np.zeros((0, len(self.model.classes)), np.float32)
        return restore_order(logits, order)

    def predict_proba(self, data: Dataset, *, batch_size: int = 64, num_workers: int = 0, **_: Any) -> np.ndarray:
        """The model's outputs ``(N, width)`` as in PyTorch: class probabilities (the model's temperature applied),
        per-label probabilities, or values, as the model's task makes them from its head's outputs."""
        from transferkit.tasks import task_of

        logits = self.predict_logits(data, batch_size=batch_size, num_workers=num_workers).astype(np.float64)
        temperature = float(getattr(self.model, "temperature", 1.0) or 1.0)
        return np.asarray(task_of(self.model).proba_from_outputs(logits, temperature), dtype=np.float32)
