"""``predict``: a saved model's predictions for new inputs, computed with PyTorch or ONNX Runtime, returned as
records or written to a file.

The steps: check the runtime and device, find the ONNX file, load the model, turn the inputs into a dataset and
check it against the model, compute the probabilities, refuse non-finite ones, shape one record per input.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, TransferkitError
from transferkit.workflows.steps import check_model_input, resolve_model


def predict(model: Any, inputs: Any, *, top_k: int | None = None, batch_size: int = 64, device: str = "auto",
            text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
            progress: bool = True, runtime: str = "torch", onnx_file: str | None = None,
            model_dir: str | None = None, task: str | None = None,
            delimiter: str | None = None, score_threshold: float | None = None,
            draw: str | None = None, processes: int = 1) -> list[dict[str, Any]]:
    """Predictions for ``inputs``: a folder of images, a table, an image array, or a list of strings.

    Returns one dict per example: ``input`` (its path, row or index), ``label`` and ``probabilities`` (class ->
    probability, the ``top_k`` most likely when given). ``runtime="onnx"`` computes them with ONNX Runtime on the
    CPU from the model folder's ``model.onnx`` (``transferkit export``; an int8 one from ``transferkit compress``)
    or ``onnx_file``; ``model_dir`` names the folder when ``model`` is already loaded. ``task``: the task of a
    multi-task model to predict.

    A detector (a model that gives its own records) returns per image ``input`` and ``detections`` (``label``,
    ``score``, ``box`` [x1, y1, x2, y2] in the image's pixels) scoring at least ``score_threshold`` (default 0.3);
    ``draw`` names a folder where each image is written with its boxes. ``processes`` above 1: the backbone's
    features are computed by that many CPU processes (a share of the inputs each), then the head runs once on all.
    """
    from transferkit.data.validation import validate_dataset
    from transferkit.features.extract import resolve_device
    from transferkit.tasks import task_of

    if runtime == "torch":
        resolve_device(device)  # before the inputs are read, and even when the cache holds every feature
    if runtime not in ("torch", "onnx"):
        raise ConfigError(f"runtime must be torch or onnx; got {runtime!r}.")
    _check_processes(processes, runtime)
    model_folder = str(model) if isinstance(model, (str, os.PathLike)) else model_dir
    if runtime == "onnx":
        from transferkit.compress.runtime import model_onnx_path

        onnx_path = model_onnx_path(model_folder, onnx_file)
    model = resolve_model(model, task)
    sharding = _sharding(model, processes)
    if getattr(model, "predicts_records", False):
        return _detections(model, inputs, runtime=runtime, batch_size=batch_size, device=device,
                           score_threshold=score_threshold, draw=draw)
    dataset = _inputs_dataset(inputs, model, text_column=text_column, path_column=path_column, encoding=encoding,
                              delimiter=delimiter)
    check_model_input(model, dataset)
    validate_dataset(dataset, role="prediction")
    if runtime == "onnx":
        from transferkit.compress.runtime import OnnxClassifier

        proba = OnnxClassifier(model, onnx_path).predict_proba(dataset, batch_size=batch_size)
    else:
        proba = model.predict_proba(dataset, batch_size=batch_size, device=device, progress=progress, **sharding)
    _check_finite(proba, dataset, model_folder)
    kind = task_of(model)
    interval = getattr(model, "interval", None)  # a regression's prediction interval: low and high in the records
    options = {"interval": interval} if interval else {}
    return [kind.prediction_record(row, p, model.classes, top_k, **options) for row, p in zip(dataset.row_ids, proba)]


def _check_processes(processes: int, runtime: str) -> None:
    """An error naming ``--processes`` below 1, or above 1 with the ONNX runtime (which runs the whole model)."""
    if processes < 1:
        raise ConfigError(f"option 'processes' (--processes): must be at least 1; got {processes}.")
    if processes > 1 and runtime != "torch":
        raise ConfigError(f"option 'processes' (--processes {processes}): several processes compute the backbone's "
                          "features with --runtime torch; ONNX Runtime runs the whole model in one. Leave out "
                          "--runtime onnx or --processes.")


def _sharding(model: Any, processes: int) -> dict[str, int]:
    """``predict_proba``'s ``processes`` argument for ``processes`` above 1 (none for one); an error naming
    ``--processes`` when the kind of model predicts in one process."""
    if processes == 1:
        return {}
    import inspect

    if "processes" not in inspect.signature(model.predict_proba).parameters:
        raise ConfigError(f"option 'processes' (--processes {processes}): a {type(model).__name__} predicts in one "
                          "process; leave out --processes.")
    return {"processes": processes}


def _detections(model: Any, inputs: Any, *, runtime: str, batch_size: int, device: str,
                score_threshold: float | None, draw: str | None) -> list[dict[str, Any]]:
    """A detector's records for the images of ``inputs`` (a folder, image files, a dataset of image files), and
    the images drawn with their boxes into ``draw``."""
    from transferkit.data.detection import image_files
    from transferkit.features.extract import resolve_device
    from transferkit.models.detector import PREDICT_SCORE

    if runtime != "torch":
        raise ConfigError("option 'runtime': a detector predicts with torch; its ONNX file (transferkit export) runs "
                          "in ONNX Runtime directly, see docs/detection.md.")
    if draw is not None and Path(draw).exists() and (not Path(draw).is_dir() or any(Path(draw).iterdir())):
        raise ConfigError(f"option 'draw': {draw} already exists and is not an empty folder; give a new folder so that "
                          "no earlier file is replaced.")
    if isinstance(inputs, Dataset):
        inputs = list(inputs.items)
    images = image_files(inputs) if isinstance(inputs, (str, os.PathLike)) else [Path(i) for i in inputs]
    threshold = PREDICT_SCORE if score_threshold is None else score_threshold
    records = model.prediction_records(images, batch_size=batch_size, device=str(resolve_device(device)),
                                       score_threshold=threshold)
    if draw is not None:
        from transferkit.reporting.detection import draw_records

        draw_records(records, draw)
    return records


def _inputs_dataset(inputs: Any, model: Any, **table_options: Any) -> Dataset:
    """``inputs`` as an unlabelled dataset: a path (folder or table), a dataset, a list of files (for a modality
    whose items are files), one string or a list of strings (for one whose items are strings), or an array."""
    from transferkit.data.sources import from_arrays, load_data
    from transferkit.modalities import get_modality

    modality = get_modality(model.modality)
    if isinstance(inputs, str) and not os.path.exists(inputs) and modality.strings_are_items:
        inputs = [inputs]
    if isinstance(inputs, (str, os.PathLike)):
        return load_data(inputs, unlabelled=True, **table_options)
    if isinstance(inputs, Dataset):
        return inputs
    if modality.items_are_files and isinstance(inputs, (list, tuple)) and inputs \
            and all(isinstance(i, (str, os.PathLike)) for i in inputs):
        return modality.files_dataset(inputs, "inputs")
    return from_arrays(inputs if isinstance(inputs, np.ndarray) else list(inputs), origin="inputs")


def _check_finite(proba: np.ndarray, dataset: Dataset, model_folder: str | None) -> None:
    """A broken model: no NaN reaches the caller (or strict JSON output)."""
    if np.isfinite(proba).all():
        return
    from transferkit.errors import ArtifactError

    bad = np.flatnonzero(~np.isfinite(proba).all(axis=1))
    raise ArtifactError(f"model {model_folder or 'in memory'}: its probabilities are NaN or infinite for {len(bad)} of "
                        f"{len(proba)} inputs (first: {dataset.row_ids[int(bad[0])]}); its weights are not finite "
                        "(a diverged training run). Train it again with a lower learning rate.")


def command_line_inputs(inputs: list[str], model: Any) -> Any:
    """What the words after MODEL on the command line name: one existing path (a folder or a table), several
    files (for a model whose items are files), or texts (for a model whose items are strings)."""
    from transferkit.modalities import get_modality

    modality = get_modality(model.modality)
    if len(inputs) == 1 and Path(inputs[0]).exists():
        return inputs[0]
    if all(Path(i).is_file() for i in inputs) and modality.items_are_files:
        return Dataset(model.modality, list(inputs), None, "command line", list(inputs))
    if modality.strings_are_items:
        return list(inputs)
    missing = next((i for i in inputs if not Path(i).exists()), None)
    if missing is not None:
        raise TransferkitError(f"{missing}: no such file or folder.")
    folder = next(i for i in inputs if Path(i).is_dir())
    raise TransferkitError(f"{folder}: a folder among several inputs; give one folder alone, or files only.")


def check_predictions_output(path: Path, overwrite: bool, inputs: list[tuple[str, str]]) -> None:
    """Before predicting: ``path`` (--output) is a file that can be written, is none of the inputs, and is replaced
    only with ``overwrite``."""
    from transferkit._io import check_location, check_not_input

    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder; give a file path such as {path / 'predictions.jsonl'}.")
    check_not_input(path, inputs, allow_inside=("model folder",))
    if path.exists() and not overwrite:
        raise ConfigError(f"--output {path} already exists; pass --overwrite to replace it, or choose another file.")
    check_location(path)


#: Records laid out and written at a time by :func:`write_predictions` (the file is never built in memory whole).
WRITE_BLOCK = 4096


def write_predictions(rows: list[dict], path: Path, model: Any) -> None:
    """The predictions as JSON lines, or, for a ``.csv`` path, as the model's task lays them out in a table; written
    a block of :data:`WRITE_BLOCK` records at a time into a temporary file that replaces ``path`` once complete."""
    from transferkit._io import atomic_text_writer

    with atomic_text_writer(path) as handle:
        if path.suffix.lower() == ".csv":
            import csv

            from transferkit.tasks import task_of

            writer, task = csv.writer(handle), task_of(model)
            for start in range(0, max(len(rows), 1), WRITE_BLOCK):
                table = task.prediction_table(rows[start:start + WRITE_BLOCK], model.classes)
                writer.writerows(table if start == 0 else table[1:])  # one header row, at the top
        else:
            for start in range(0, len(rows), WRITE_BLOCK):
                block = rows[start:start + WRITE_BLOCK]
                handle.write("".join(json.dumps(row, allow_nan=False) + "\n" for row in block))
