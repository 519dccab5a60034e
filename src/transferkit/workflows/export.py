"""``export``: a saved model written as an ONNX file and checked against PyTorch.

The steps: build and check the options (:class:`~transferkit.compress.options.ExportConfig`: format, tolerance,
the table options of the parity data) and the output file, load the model, load and check the parity data against
the model, export and check. The export itself and its parity check are in :mod:`transferkit.compress.onnx`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transferkit.compress.options import ExportConfig
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.options import build_options

#: The formats ``export`` writes.
FORMATS = ("onnx",)


def export_model_folder(folder: str | Path, output: str | Path | None = None, *, data: Any = None,
                        **options: Any) -> Any:
    """Export a model folder written by ``fit`` to ONNX (default: ``FOLDER/model.onnx``) and check it; returns the
    :class:`~transferkit.compress.onnx.OnnxExport`.

    ``options`` are those of :class:`~transferkit.compress.options.ExportConfig` (``format``, ``tolerance``,
    ``overwrite``, and the table options ``label_column``, ``text_column``, ``delimiter``, ... that read ``data``).
    ``data`` (a path or :class:`~transferkit.data.Dataset`) supplies the parity-check inputs. The options, the
    output, the model and the data are checked (the data's modality against the model's) before anything is
    exported, and the file is put in place only once it has passed the parity check.
    """
    from transferkit.compress.onnx import check_export_data, check_export_output, export_model
    from transferkit.models.artifacts import load_model
    from transferkit.workflows.steps import refuse_recommender

    config = _config(output, data, options)
    folder = Path(folder)
    path = Path(config.output) if config.output is not None else folder / "model.onnx"
    check_export_output(path, config.overwrite, model_folder=folder,
                        inputs=[("model folder", folder), ("--data", config.data)])
    model = load_model(folder)
    refuse_recommender(model)
    if getattr(model, "predicts_records", False):  # a detector: its post-processing goes inside the file
        from transferkit.compress.detection_onnx import export_detector
        from transferkit.data.detection import image_files

        images = image_files(config.data)[:8] if config.data is not None else None
        return export_detector(model, path, images=images, tolerance=max(config.tolerance, 1e-3))
    dataset = _parity_data(data, config, model)
    check_export_data(dataset, model.modality)
    return export_model(model, path, tolerance=config.tolerance, data=dataset)


def _config(output: str | Path | None, data: Any, options: dict[str, Any]) -> ExportConfig:
    """The options checked (a format this version writes; the config's bounds), ``None`` values left at their
    defaults."""
    given = {k: v for k, v in options.items() if v is not None}
    if output is not None:
        given["output"] = os.fspath(output)
    if isinstance(data, (str, os.PathLike)):
        given["data"] = os.fspath(data)
    config = build_options(ExportConfig, **given)
    if config.format.lower() not in FORMATS:
        raise ConfigError(f"--format: '{config.format}' is not supported; use one of: {', '.join(FORMATS)}.")
    return config


def _parity_data(data: Any, config: ExportConfig, model: Any) -> Dataset | None:
    """The parity-check inputs: ``data`` as a dataset (read with the config's table options, its labels by the
    model's task: numbers for regression, label sets for multi-label), or ``None``."""
    if data is None or isinstance(data, Dataset):
        return data
    from transferkit.data.sources import load_data
    from transferkit.tasks import task_of

    return load_data(data, config, task=task_of(model).name)
