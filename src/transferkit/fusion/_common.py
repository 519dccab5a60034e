"""Helpers shared by the fusion methods: loading models and data, architecture checks, weight averaging,
validation accuracy."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError


def as_model(model: Any, role: str = "model") -> Any:
    """A loaded model from a model folder path, or the model itself."""
    if isinstance(model, (str, os.PathLike)):
        from transferkit.models.artifacts import load_model

        return load_model(model)
    if not hasattr(model, "predict_proba"):
        raise ConfigError(f"{role}: expected a model folder or a loaded transferkit model; got {type(model).__name__}.")
    return model


def members_task(models: Sequence[Any], names: Sequence[str], method: str) -> Any:
    """The task (:mod:`transferkit.tasks`) every model answers; models of different tasks are an error naming
    the first that differs. Their outputs (class probabilities, values, per-label probabilities) are what fusion
    averages and scores."""
    from transferkit.tasks import task_of

    first = task_of(models[0])
    for model, name in zip(models[1:], names[1:]):
        other = task_of(model)
        if other.name != first.name:
            raise ConfigError(f"{method}: {name} is a {other.name} model but {names[0]} is a {first.name} model; "
                              "fuse models of one task.")
    return first


def score_and_loss(task: Any, proba: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The task's measure (accuracy, R², example F1) and its output loss (log-loss, squared error, binary
    cross-entropy) of outputs ``proba`` against targets ``y``: what fusion chooses by (measure, then loss)."""
    return float(np.mean(task.per_example_scores(y, task.predictions(proba)))), task.output_loss(y, proba)


def as_dataset(data: Any, role: str, *, task: Any = None, label_column: str | None = None,
               text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
               delimiter: str | None = None, normalize_labels: bool = False, required: bool = True) -> Dataset | None:
    """A labelled dataset of ``task`` (a task name or entry; default single-label classification) from a path
    (read with the table options of :class:`~transferkit.options.DataOptions`) or a :class:`Dataset` (``None``
    allowed when not ``required``)."""
    from transferkit.data.sources import load_data
    from transferkit.data.validation import validate_dataset
    from transferkit.tasks import DEFAULT_TASK

    if data is None:
        if required:
            raise ConfigError(f"{role} data is needed here: give a folder of images per class or a table.")
        return None
    task_name = getattr(task, "name", task) or DEFAULT_TASK
    dataset = data if isinstance(data, Dataset) else load_data(
        data, label_column=label_column, text_column=text_column, path_column=path_column, encoding=encoding,
        delimiter=delimiter, normalize_labels=normalize_labels, task=task_name)
    validate_dataset(dataset, role=role, min_classes=1)
    if not dataset.is_labelled:
        raise DataError(f"{dataset.origin}: the {role} data has no labels.")
    return dataset


def single_models(models: Sequence[Any], method: str) -> list[Any]:
    """Models with one backbone and one head (what weight-space fusion works on)."""
    from transferkit.models.model import TransferModel

    loaded = [as_model(m, f"{method} model {i}") for i, m in enumerate(models)]
    for index, model in enumerate(loaded):
        if not isinstance(model, TransferModel):
            raise ConfigError(f"{method}: model {index} ({_origin(models[index])}) is a {type(model).__name__}; "
                              "weights can be combined only for models with one backbone and one head.")
    return loaded


def _origin(model: Any) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def check_same_architecture(models: Sequence[Any], names: Sequence[str], method: str) -> None:
    """Every model must have the same backbone architecture, tensor names and shapes, and classes (in order),
    or their weights cannot be mixed; the error names the first difference."""
    first, first_name = models[0], names[0]
    reference = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    base = first.backbone.name.removeprefix("random:")
    for model, name in zip(models[1:], names[1:]):
        other = model.backbone.name.removeprefix("random:")
        if other != base:
            raise ConfigError(f"{method}: {name} has backbone '{model.backbone.name}' but {first_name} has "
                              f"'{first.backbone.name}'; weights can only be mixed between models of one architecture "
                              "(use --method ensemble to combine different backbones).")
        prepared = _preprocessing_differences(first.backbone.preprocessing, model.backbone.preprocessing)
        if prepared:
            listed = "; ".join(f"{field} {a} in {first_name} but {b} in {name}" for field, a, b in prepared)
            raise ConfigError(f"{method}: {name} and {first_name} prepare their inputs differently ({listed}): their "
                              "weights were trained for different inputs and their average would fit neither. Combine "
                              "runs trained with the same preprocessing (--image-size, --max-length), or use --method "
                              "ensemble, which gives each model its own inputs.")
        if list(model.classes) != list(first.classes):
            raise ConfigError(f"{method}: {name} predicts classes {model.classes} but {first_name} predicts "
                              f"{first.classes}; the models must share one label set, in the same order.")
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        missing = sorted(set(reference) - set(shapes))
        extra = sorted(set(shapes) - set(reference))
        if missing or extra:
            raise ConfigError(f"{method}: {name} and {first_name} have different layers (only in {first_name}: "
                              f"{missing[:3]}; only in {name}: {extra[:3]}); they are not the same architecture.")
        differ = [(k, reference[k], shapes[k]) for k in reference if reference[k] != shapes[k]]
        if differ:
            key, a, b = differ[0]
            raise ConfigError(f"{method}: tensor {key} has shape {list(b)} in {name} but {list(a)} in {first_name} "
                              f"({len(differ)} tensors differ); they are not the same architecture.")


def _preprocessing_differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The fields (``input_size``, ``mean``, ``max_length``, ...) on which two backbones' preprocessing differ."""
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def weighted_state(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """``sum_i w_i theta_i`` over floating-point tensors; integer buffers (BatchNorm's batch counters) are taken
    from the state of the largest weight."""
    largest = int(np.argmax(weights))
    out = {}
    for key in states[0]:
        tensors = [s[key] for s in states]
        if tensors[0].is_floating_point():
            total = weights[0] * tensors[0].double()
            for w, t in zip(weights[1:], tensors[1:]):
                total = total + w * t.double()
            out[key] = total.to(tensors[0].dtype)
        else:
            out[key] = tensors[largest].clone()
    return out


def cpu_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def load_state(model: Any, state: dict[str, torch.Tensor]) -> Any:
    model.load_state_dict(state, strict=True)
    model.backbone.invalidate_digest()
    return model.eval()


def accuracy_and_loss(proba: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean log-loss of probabilities ``(N, C)`` against labels ``(N,)``."""
    picked = np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0)
    return float(np.mean(proba.argmax(axis=1) == y)), float(-np.mean(np.log(picked)))


def predict_kwargs(batch_size: int, device: str, progress: bool) -> dict[str, Any]:
    # Fused weights are new weights: their features are not worth keeping in the cache.
    return {"batch_size": batch_size, "device": device, "cache": None, "progress": progress}
