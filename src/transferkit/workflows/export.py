"""``export``: a saved model written as an ONNX file and checked against PyTorch.

The steps: check the options (format, tolerance) and the output file, load the model, load and check the parity
data against the model, export and check. The export itself and its parity check are in
:mod:`transferkit.compress.onnx`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError

#: The formats ``export`` writes.
FORMATS = ("onnx",)


def export_model_folder(folder: str | Path, output: str | Path | None = None, *, format: str = "onnx",
                        tolerance: float | None = None, data: Any = None, overwrite: bool = False,
                        **data_options: Any) -> Any:
    """Export a model folder written by ``fit`` to ONNX (default: ``FOLDER/model.onnx``) and check it; returns the
    :class:`~transferkit.compress.onnx.OnnxExport`.

    ``data`` (a path or :class:`~transferkit.data.Dataset`) supplies the parity-check inputs; ``data_options``
    (``label_column``, ``text_column``, ``delimiter``, ...) are passed to the data loader. The options, the output,
    the model and the data are checked (the data's modality against the model's) before anything is exported, and
    the file is put in place only once it has passed the parity check.
    """
    from transferkit.compress.onnx import DEFAULT_TOLERANCE, check_export_data, check_export_output, export_model
    from transferkit.models.artifacts import load_model

    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    _check_options(format, tolerance)
    folder = Path(folder)
    path = Path(output) if output is not None else folder / "model.onnx"
    check_export_output(path, overwrite, model_folder=folder,
                        inputs=[("model folder", folder), ("--data", data if not isinstance(data, Dataset) else None)])
    model = load_model(folder)
    dataset = _parity_data(data, data_options)
    check_export_data(dataset, model.modality)
    return export_model(model, path, tolerance=tolerance, data=dataset)


def _check_options(format: str, tolerance: float) -> None:
    if format.lower() not in FORMATS:
        raise ConfigError(f"--format: '{format}' is not supported; use one of: {', '.join(FORMATS)}.")
    if not tolerance >= 0:
        raise ConfigError(f"--tolerance must be a non-negative number; got {tolerance}.")


def _parity_data(data: Any, data_options: dict[str, Any]) -> Dataset | None:
    """The parity-check inputs: ``data`` as a dataset (read with the given table options), or ``None``."""
    if data is None or isinstance(data, Dataset):
        return data
    from transferkit.data.sources import load_data

    return load_data(data, **{k: v for k, v in data_options.items() if v is not None})
