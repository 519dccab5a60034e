"""The user's verbs as Python functions: ``fit``, ``evaluate``, ``predict``. The CLI calls these."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from transferkit.config import DEFAULT_BACKBONES, FitConfig, make_config
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError

log = logging.getLogger("transferkit")


def default_cache_dir() -> Path:
    from transferkit.backbones.packaged import cache_root

    return cache_root() / "features"


@dataclass
class FitResult:
    """What ``fit`` produced: the model, its test metrics, the baselines' metrics and the verdicts."""

    model: Any
    config: dict[str, Any]
    metrics: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    comparisons: list[Any]
    skipped_baselines: dict[str, str] = field(default_factory=dict)
    output: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    def summary(self) -> str:
        """A plain-text table of the model against its baselines, and the verdicts."""
        rows = [(f"{self.config['backbone']} ({self.config['strategy']})", self.metrics)]
        rows += [(f"baseline: {name}", m) for name, m in self.baselines.items()]
        width = max(len(r[0]) for r in rows)
        lines = [f"{'model':<{width}}  accuracy  macro-F1", "-" * (width + 20)]
        lines += [f"{name:<{width}}  {m['accuracy']:8.4f}  {m['macro_f1']:8.4f}" for name, m in rows]
        lines += [f"verdict: {c.sentence()}" for c in self.comparisons]
        lines += [f"not run: {name} ({why})" for name, why in self.skipped_baselines.items()]
        return "\n".join(lines)


def _load(source: Any, config: FitConfig, role: str) -> Dataset:
    from transferkit.data.sources import load_data

    return load_data(source, label_column=config.label_column, text_column=config.text_column,
                     path_column=config.path_column, encoding=config.encoding)


def _origin(source: Any) -> str | None:
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "origin", type(source).__name__)


def fit(data: Any = None, *, config: FitConfig | None = None, val: Any = None, test: Any = None, **options: Any) -> FitResult:
    """Adapt a pretrained backbone to ``data`` and evaluate it against the baselines on held-out data.

    ``data``, ``val`` and ``test`` are paths (image folder or table) or :class:`~transferkit.data.Dataset` objects.
    Other options are those of :class:`~transferkit.config.FitConfig` (``backbone``, ``strategy``, ``output``, ...).
    Everything is checked before any backbone runs.
    """
    from transferkit.data.splits import sample_per_class, stratified_split
    from transferkit.data.validation import validate_dataset, validate_splits
    from transferkit.evaluation.baselines import BASELINES, PENDING_BASELINES

    if config is None:
        values = {"data": _origin(data), "val": _origin(val), "test": _origin(test), **options}
        config = make_config(**values)
    elif options:
        config = make_config(**{**config.model_dump(), **options})
    data = data if data is not None else config.data
    val = val if val is not None else config.val
    test = test if test is not None else config.test
    if data is None:
        raise ConfigError("no training data: give a folder of images per class or a table file.")
    pending = [b for b in config.baselines if b in PENDING_BASELINES]
    if pending:
        raise ConfigError(f"baseline '{pending[0]}' is not available: {PENDING_BASELINES[pending[0]]}. Use --baselines raw.")
    if config.output is not None:
        from transferkit.artifacts import check_output_folder

        check_output_folder(config.output, config.overwrite)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    train = _load(data, config, "training")
    validate_dataset(train, role="training")
    val_ds = _load(val, config, "validation") if val is not None else None
    test_ds = _load(test, config, "test") if test is not None else None
    others = [d for d in (val_ds, test_ds) if d is not None]
    for other in others:
        validate_dataset(other, role="evaluation")
    validate_splits(train, others)
    if config.shots is not None:
        train = sample_per_class(train, config.shots, config.seed)
    if test_ds is None:
        train, test_ds = stratified_split(train, config.test_fraction, config.seed, names=("train", "test"))
    classes = train.classes
    backbone_name = config.backbone or DEFAULT_BACKBONES[train.modality]
    ranking_facts: dict[str, Any] = {}
    if backbone_name == "auto":
        from transferkit.selection.ranking import choose_backbone

        backbone_name, ranking_facts = choose_backbone(train, config)

    from transferkit.backbones import create_backbone

    backbone = create_backbone(backbone_name, max_length=config.max_length) if train.modality == "text" \
        else create_backbone(backbone_name)
    if backbone.modality != train.modality:
        raise ConfigError(
            f"backbone '{backbone_name}' takes {backbone.modality} input but {train.origin} holds {train.modality} "
            f"data; choose a {train.modality} backbone (`transferkit models`)."
        )
    timings["load"] = time.perf_counter() - start

    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import extract_features

    cache = None if config.no_cache else FeatureCache(config.cache_dir or default_cache_dir())
    extract = dict(cache=cache, batch_size=config.batch_size, device=config.device,
                   num_workers=config.num_workers, progress=config.progress)
    start = time.perf_counter()
    X_train = extract_features(backbone, train, **extract)
    X_val = extract_features(backbone, val_ds, **extract) if val_ds is not None else None
    X_test = extract_features(backbone, test_ds, **extract)
    timings["features"] = time.perf_counter() - start

    from transferkit.evaluation.metrics import classification_metrics
    from transferkit.evaluation.verdict import compare
    from transferkit.model import TransferModel
    from transferkit.strategies.linear_probe import LinearProbe

    start = time.perf_counter()
    y_train, y_test = train.label_array(classes), test_ds.label_array(classes)
    probe = LinearProbe(C=config.probe_c, random_state=config.seed)
    probe.fit(X_train, y_train, X_val, val_ds.label_array(classes) if val_ds is not None else None)
    model = TransferModel(backbone, probe.to_head(), classes, strategy=config.strategy)
    proba = model.head_proba(X_test)
    y_pred = proba.argmax(axis=1)
    metrics = classification_metrics(y_test, y_pred, classes)
    timings["probe"] = time.perf_counter() - start

    baselines, comparisons = {}, []
    for name in config.baselines:
        start = time.perf_counter()
        result = BASELINES[name](train, test_ds, classes, seed=config.seed)
        baselines[name] = {**classification_metrics(y_test, result.predictions, classes),
                           "description": result.description, **result.extra}
        comparisons.append(compare(y_test, y_pred, result.predictions, name, seed=config.seed))
        timings[f"baseline_{name}"] = time.perf_counter() - start

    resolved = config.resolved(
        backbone=backbone_name, classes=classes, modality=train.modality,
        n_train=len(train), n_val=len(val_ds) if val_ds is not None else 0, n_test=len(test_ds),
        probe_C=probe.C_, data_fingerprint=train.fingerprint(), test_fingerprint=test_ds.fingerprint(),
        **ranking_facts,
    )
    all_metrics = {"test": metrics, "baselines": baselines, "comparisons": [c.to_dict() for c in comparisons],
                   "probe": {"C": probe.C_, "validation_scores": {str(k): v for k, v in probe.validation_scores_.items()}},
                   "timings_s": timings}
    result = FitResult(model, resolved, metrics, baselines, comparisons, timings=timings)
    if config.output is not None:
        from transferkit.artifacts import save_model

        result.output = save_model(model, config.output, metrics=all_metrics, run_config=resolved,
                                   overwrite=config.overwrite, extra_files={"summary.txt": result.summary() + "\n"})
    return result


def _as_model(model: Any):
    if isinstance(model, (str, os.PathLike)):
        from transferkit.artifacts import load_model

        return load_model(model)
    return model


def evaluate(model: Any, data: Any, *, batch_size: int = 64, device: str = "auto", label_column: str | None = None,
             text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
             cache_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class figures and the confusion matrix of ``model`` (a folder or a loaded model)
    on labelled ``data``. Labels the model never saw are an error naming the rows."""
    from transferkit.data.sources import load_data
    from transferkit.data.validation import validate_dataset
    from transferkit.evaluation.metrics import classification_metrics
    from transferkit.features.cache import FeatureCache

    model = _as_model(model)
    dataset = load_data(data, label_column=label_column, text_column=text_column, path_column=path_column,
                        encoding=encoding)
    validate_dataset(dataset, role="evaluation")
    y_true = dataset.label_array(model.classes)
    cache = FeatureCache(cache_dir or default_cache_dir())
    proba = model.predict_proba(dataset, batch_size=batch_size, device=device, cache=cache, progress=progress)
    return classification_metrics(y_true, proba.argmax(axis=1), model.classes)


def predict(model: Any, inputs: Any, *, top_k: int | None = None, batch_size: int = 64, device: str = "auto",
            text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
            progress: bool = True) -> list[dict[str, Any]]:
    """Predictions for ``inputs``: a folder of images, a table, an image array, or a list of strings.

    Returns one dict per example: ``input`` (its path, row or index), ``label`` and ``probabilities`` (class ->
    probability, the ``top_k`` most likely when given).
    """
    from transferkit.data.sources import from_arrays, load_data
    from transferkit.data.validation import validate_dataset

    model = _as_model(model)
    if isinstance(inputs, str) and not os.path.exists(inputs) and model.modality == "text":
        inputs = [inputs]
    if isinstance(inputs, (str, os.PathLike)):
        dataset = load_data(inputs, text_column=text_column, path_column=path_column, encoding=encoding, unlabelled=True)
    elif isinstance(inputs, Dataset):
        dataset = inputs
    else:
        dataset = from_arrays(inputs if isinstance(inputs, np.ndarray) else list(inputs), origin="inputs")
    validate_dataset(dataset, role="prediction")
    proba = model.predict_proba(dataset, batch_size=batch_size, device=device, progress=progress)
    out = []
    for row, p in zip(dataset.row_ids, proba):
        order = np.argsort(-p)[: top_k or len(p)]
        out.append({"input": row, "label": model.classes[int(order[0])],
                    "probabilities": {model.classes[int(i)]: float(p[i]) for i in order}})
    return out


def list_models() -> list[dict[str, Any]]:
    """The registered backbones and whether their weights are installed here."""
    from transferkit.backbones import list_backbones

    return list_backbones()
