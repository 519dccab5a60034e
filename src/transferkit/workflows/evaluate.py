"""``evaluate``: the figures of a saved model on labelled data (accuracy, macro-F1, per-class figures, confusion
matrix). The steps: check the device, load the model, load and check the data against it, predict, score."""

from __future__ import annotations

from typing import Any

from transferkit.workflows.steps import check_model_input, resolve_model


def evaluate(model: Any, data: Any, *, batch_size: int = 64, device: str = "auto", label_column: str | None = None,
             text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
             cache_dir: str | None = None, progress: bool = True, task: str | None = None,
             delimiter: str | None = None, normalize_labels: bool = False) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures and the confusion matrix of ``model`` (a folder or a loaded model)
    on labelled ``data``. Data of the other modality, and labels the model never saw, are errors naming the data
    or the rows (with ``normalize_labels``, a label that differs from one of the model's classes only in case,
    whitespace or Unicode form counts as that class). ``task``: the task of a multi-task model to evaluate."""
    from transferkit.data.sources import load_data
    from transferkit.data.validation import validate_dataset
    from transferkit.features.cache import FeatureCache, default_cache_dir
    from transferkit.features.extract import resolve_device
    from transferkit.tasks import task_of

    resolve_device(device)  # a GPU that is not here fails now, even when every feature comes from the cache
    model = resolve_model(model, task)
    if getattr(model, "predicts_records", False):  # a detector: COCO mAP on annotated images
        from transferkit.evaluation.detection_metrics import evaluate_detector

        return evaluate_detector(model, data, batch_size=batch_size, device=str(resolve_device(device)))
    kind = task_of(model)
    dataset = load_data(data, label_column=label_column, text_column=text_column, path_column=path_column,
                        encoding=encoding, delimiter=delimiter, normalize_labels=normalize_labels, task=kind.name)
    check_model_input(model, dataset)
    validate_dataset(dataset, role="evaluation")
    y_true = kind.targets(dataset, model.classes, normalize=normalize_labels)
    cache = FeatureCache(cache_dir or default_cache_dir())
    proba = model.predict_proba(dataset, batch_size=batch_size, device=device, cache=cache, progress=progress)
    return kind.metrics(y_true, proba, model.classes)
