"""The user's verbs as Python functions: ``fit``, ``evaluate``, ``predict``. The CLI calls these."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.config import FitConfig, make_config
from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError
from transferkit.features.cache import default_cache_dir  # noqa: F401 (also public here)
from transferkit.modalities import get_modality

log = logging.getLogger("transferkit")


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
    #: False on the other processes of a multi-process (DDP) run: they train, the main process evaluates and saves.
    is_main_process: bool = True
    #: Optional steps after the model was saved that failed (a baseline, a plot, the report, tracking): each is
    #: also a warning, and is written into metrics.json and summary.txt.
    notes: list[str] = field(default_factory=list)

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
        calibration = self.metrics.get("calibration")
        if calibration:
            scaling = self.config.get("temperature_scaling")
            lines.append(f"calibration: ECE {calibration['ece']:.4f}, NLL {calibration['nll']:.4f}"
                         + (f" (temperature {scaling['temperature']:.3f} fitted on validation data)" if scaling else ""))
        if self.config.get("plan"):
            lines.append(f"auto: {self.config['plan']['explanation']}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _load(source: Any, config: FitConfig, role: str) -> Dataset:
    from transferkit.data.sources import load_data

    return load_data(source, label_column=config.label_column, text_column=config.text_column,
                     path_column=config.path_column, encoding=config.encoding, delimiter=config.delimiter,
                     normalize_labels=config.normalize_labels, task=config.task)


def load_splits(data: Any, val: Any, test: Any, config: FitConfig) -> tuple[Dataset, Dataset | None, Dataset]:
    """A run's training, validation and test data, loaded and checked (each set, and the sets against each other);
    ``config.shots`` examples per class kept for training; without test data, ``config.test_fraction`` of each
    class held out of the training data. The validation data stays ``None`` when not given."""
    from transferkit.data.splits import sample_per_class, stratified_split
    from transferkit.data.validation import validate_dataset, validate_splits

    train = _load(data, config, "training")
    validate_dataset(train, role="training")
    val_ds = _load(val, config, "validation") if val is not None else None
    test_ds = _load(test, config, "test") if test is not None else None
    others = [d for d in (val_ds, test_ds) if d is not None]
    for other in others:
        validate_dataset(other, role="evaluation")
    validate_splits(train, others, normalize_labels=config.normalize_labels)
    if config.shots is not None:
        train = sample_per_class(train, config.shots, config.seed)
    if test_ds is None:
        train, test_ds = stratified_split(train, config.test_fraction, config.seed, names=("train", "test"))
    return train, val_ds, test_ds


def source_origin(source: Any) -> str | None:
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
    from transferkit.evaluation.baselines import BASELINES, choose_baselines

    if config is None:
        values = {"data": source_origin(data), "val": source_origin(val), "test": source_origin(test), **options}
        config = make_config(**values)
    elif options:
        config = make_config(**{**config.model_dump(), **options})
    data = data if data is not None else config.data
    val = val if val is not None else config.val
    test = test if test is not None else config.test
    if data is None:
        raise ConfigError("no training data: give a folder of images per class or a table file.")
    from transferkit.strategies.registry import get_strategy

    entry = get_strategy(config.strategy)
    if config.budget is not None and not entry.chooses_strategy:
        raise ConfigError("option 'budget' is used by --strategy auto (the planner fits its choice in the budget); "
                          "with another strategy, bound the run with --epochs.")
    if not entry.chooses_strategy:
        config.check_options_apply()  # options this strategy ignores: a warning (an error where it changes the result)
    from transferkit.features.extract import resolve_device

    resolve_device(config.device)  # a GPU that is not here fails now, not after the data is read
    if entry.trains_network or (config.baselines and "scratch" in config.baselines):
        from transferkit.strategies.requirements import check_training_installed

        check_training_installed(config.strategy if entry.trains_network else "the scratch baseline")
    if config.output is not None:
        from transferkit.models.folder import check_output_folder, unfinished_model

        if config.resume and unfinished_model(config.output):  # the interrupted run's own model: replaced
            config = config.model_copy(update={"overwrite": True})
        check_output_folder(config.output, config.overwrite, inputs=[
            ("training data", data), ("validation data", val), ("test data", test), ("backbone", config.backbone),
            ("--work-dir", config.work_dir)])

    timings: dict[str, float] = {}
    start = run_started = time.perf_counter()
    train, val_ds, test_ds = load_splits(data, val, test, config)
    from transferkit.tasks import get_task

    task = get_task(config.task)
    classes = task.label_space(train)
    baseline_names, skipped_baselines = choose_baselines(config.baselines, config.strategy, len(train))
    backbone_name = config.backbone or get_modality(train.modality).default_backbone
    ranking_facts: dict[str, Any] = {}
    if backbone_name == "auto":
        from transferkit.selection.ranking import choose_backbone

        backbone_name, ranking_facts = choose_backbone(train, config)

    from transferkit.backbones import create_backbone

    import torch

    torch.manual_seed(config.seed)  # random:... backbones start from the same weights for the same seed
    backbone = create_backbone(backbone_name, **config.backbone_options(train.modality))
    if backbone.modality != train.modality:
        raise ConfigError(
            f"backbone '{backbone_name}' takes {backbone.modality} input but {train.origin} holds {train.modality} "
            f"data; choose a {train.modality} backbone (`transferkit models`)."
        )
    timings["load"] = time.perf_counter() - start
    plan_facts: dict[str, Any] = {}
    training_callbacks: list[Any] = []
    if entry.chooses_strategy:
        from transferkit.features.cache import FeatureCache
        from transferkit.strategies.planner import plan_strategy

        start = time.perf_counter()
        scratch_runs = "scratch" in choose_baselines(config.baselines, "finetune", len(train))[0]
        plan = plan_strategy(train, config, backbone, budget_s=config.budget, started=run_started,
                             cache=None if config.no_cache else FeatureCache(config.cache_dir or default_cache_dir()),
                             ranking_facts=ranking_facts, scratch_runs=scratch_runs)
        log.info("%s", plan.explanation)
        config = config.model_copy(update={"strategy": plan.strategy, **({"epochs": plan.epochs} if plan.epochs else {})})
        entry = get_strategy(config.strategy)
        config.check_options_apply(chosen_by="auto")
        baseline_names, skipped_baselines = choose_baselines(config.baselines, config.strategy, len(train))
        if plan.training_time_limit_s is not None:
            from transferkit.engine.time_limit import time_limit

            training_callbacks.append(time_limit(plan.training_time_limit_s))
        plan_facts = {"strategy_requested": "auto", "plan": plan.to_dict()}
        timings["plan"] = time.perf_counter() - start
    calibration_facts: dict[str, Any] = {}

    y_test = task.targets(test_ds, classes)
    is_main = True
    extra_files: dict[str, str] = {}
    if not entry.trains_network:  # the probe path: frozen, cached features and a probe
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

        from transferkit.models.model import TransferModel

        start = time.perf_counter()
        y_train = task.targets(train, classes)
        probe = task.new_probe(C=config.probe_c, seed=config.seed)
        probe.fit(X_train, y_train, X_val, task.targets(val_ds, classes) if val_ds is not None else None)
        model = TransferModel(backbone, probe.to_head(), classes, strategy=config.strategy, task=task.name)
        if config.calibrate:
            from transferkit.evaluation.calibration import fit_temperature_on_logits, out_of_fold_probe_logits

            if X_val is not None:
                calibration_facts = fit_temperature_on_logits(model, model.head_logits(X_val), task.targets(val_ds, classes))
            else:
                logits = out_of_fold_probe_logits(X_train, y_train, probe.C_, seed=config.seed)
                calibration_facts = {**fit_temperature_on_logits(model, logits, y_train), "on": "out-of-fold logits"}
        proba = model.head_proba(X_test)
        timings["probe"] = time.perf_counter() - start
        strategy_facts: dict[str, Any] = {"probe_C": probe.C_}
        strategy_metrics: dict[str, Any] = {
            "probe": {"C": probe.C_, "validation_scores": {str(k): v for k, v in probe.validation_scores_.items()}}}
    else:  # the engine path
        from transferkit.strategies.run import train_with_strategy

        start = time.perf_counter()
        trained = train_with_strategy(config, backbone, train, val_ds, classes, callbacks=training_callbacks)
        timings["training"] = time.perf_counter() - start
        model, is_main = trained.model, trained.is_main_process
        if config.calibrate and is_main:
            from transferkit.data.splits import stratified_split
            from transferkit.evaluation.calibration import fit_temperature

            # without --val, the part of the training data train_with_strategy held out (never trained on)
            held_out = val_ds if val_ds is not None else stratified_split(
                train, config.val_fraction, config.seed, names=("train", "validation"))[1]
            calibration_facts = fit_temperature(model, held_out, batch_size=config.batch_size, device=config.device,
                                                num_workers=config.num_workers)
        proba = None
        strategy_facts = {"training": {k: v for k, v in trained.facts.items() if k != "history"}}
        strategy_metrics = {"training": trained.facts}
        if trained.outcome.metrics_csv and is_main:
            extra_files["training_log.csv"] = Path(trained.outcome.metrics_csv).read_text(encoding="utf-8")

    from transferkit.models.artifact_kinds import model_card
    from transferkit.models.artifacts import save_model
    from transferkit.models.folder import late_step, update_model_folder

    notes: list[str] = []
    baselines: dict[str, dict[str, Any]] = {}
    comparisons: list[Any] = []

    def resolved_config() -> dict[str, Any]:
        return config.resolved(
            backbone=backbone_name, classes=classes, modality=train.modality,
            n_train=len(train), n_val=len(val_ds) if val_ds is not None else 0, n_test=len(test_ds),
            data_fingerprint=train.fingerprint(), test_fingerprint=test_ds.fingerprint(),
            baselines_run=list(baselines), baselines_not_run=skipped_baselines, **strategy_facts, **ranking_facts,
            **plan_facts, **({"temperature_scaling": calibration_facts} if calibration_facts else {}),
        )

    pending = ["test evaluation", *(f"baseline {name}" for name in baseline_names)]  # what the folder lacks yet

    def all_metrics() -> dict[str, Any]:
        return {"test": metrics, "baselines": baselines, "comparisons": [c.to_dict() for c in comparisons],
                "baselines_not_run": skipped_baselines, **strategy_metrics, "timings_s": timings,
                **({"notes": notes} if notes else {}), **({"pending": ", ".join(pending)} if pending else {})}

    metrics: dict[str, Any] = {}
    result = FitResult(model, resolved_config(), metrics, baselines, comparisons, skipped_baselines=skipped_baselines,
                       timings=timings, is_main_process=is_main, notes=notes)
    if is_main and config.output is not None:
        # The model is saved as soon as it exists; evaluation, baselines, plots, the report and tracking come after
        # and update the folder, so that none of them can lose it.
        result.output = save_model(model, config.output, overwrite=config.overwrite, run_config=result.config,
                                   metrics=all_metrics(),
                                   extra_files=extra_files, keep_beside=True)
    if is_main and proba is None:
        start = time.perf_counter()
        proba = model.predict_proba(test_ds, batch_size=config.batch_size, device=config.device,
                                    num_workers=config.num_workers, cache=None, progress=config.progress)
        timings["test_predictions"] = time.perf_counter() - start
    y_pred = task.predictions(proba) if proba is not None else None
    if y_pred is not None:
        metrics.update(task.metrics(y_test, proba, classes))
    pending.remove("test evaluation")

    def update_folder() -> None:
        if result.output is not None:
            update_model_folder(result.output, metrics=all_metrics(), files={
                "summary.txt": result.summary() + "\n", "README.md": model_card(result.output, all_metrics()),
                "run_config.yaml": _yaml(result.config)})

    update_folder()
    for name in baseline_names:
        if not is_main and name != "scratch":
            continue  # other processes of a multi-process run only join the baselines that train

        def run_baseline(name: str = name) -> Any:
            start = time.perf_counter()
            outcome = BASELINES[name](train, test_ds, classes, seed=config.seed, config=config,
                                      backbone=backbone_name, val=val_ds)
            timings[f"baseline_{name}"] = time.perf_counter() - start
            return outcome

        outcome = late_step(f"baseline {name}", run_baseline, notes,
                            saved="the model is saved" if result.output is not None else "the model stands")
        pending.remove(f"baseline {name}")
        if outcome is None:
            skipped_baselines[name] = "failed; see the notes"
            continue
        if not is_main or outcome.predictions is None:
            continue
        baselines[name] = {**task.prediction_metrics(y_test, outcome.predictions, classes),
                           "description": outcome.description, **outcome.extra}
        comparisons.append(task.compare(y_test, y_pred, outcome.predictions, name, seed=config.seed))
    pending.clear()
    result.config = resolved_config()
    if not is_main:
        return result
    if result.output is not None:
        update_folder()
        late_step("the examples and predictions for the report", lambda: update_model_folder(
            result.output, files=task.evidence(train, test_ds, y_test, proba, classes, val=val_ds, seed=config.seed)),
            notes)
        if config.calibrate and proba is not None:
            from transferkit.evaluation.calibration import reliability_diagram

            late_step("the reliability diagram", lambda: reliability_diagram(
                y_test, proba, result.output / "reliability.png",
                title=f"{backbone_name} ({config.strategy}), test data"), notes)
    from transferkit.reporting.tracking import record_fit

    record_fit(config, result, all_metrics(), notes=notes)  # the report in the output folder, then the MLflow run
    if notes and result.output is not None:
        late_step("writing the notes", update_folder, [])
    if entry.trains_network or "scratch" in baselines:
        from transferkit.strategies.run import finish_run

        late_step("cleaning up the run's work folder", lambda: finish_run(config, train), notes)
    return result


def _yaml(values: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


def resolve_model(model: Any, task: str | None = None):
    """A model folder or a loaded model as a model with one set of classes: ``task`` picks one task of a multi-task
    model (required for one; an error for any other model)."""
    from transferkit.models.multitask_model import MultiTaskModel

    if isinstance(model, (str, os.PathLike)):
        from transferkit.models.artifacts import load_model

        model = load_model(model, task=task)
    elif task is not None:
        if not isinstance(model, MultiTaskModel):
            raise ConfigError(f"task={task!r} was given, but the model is not a multi-task one.")
        model = model.task_model(task)
    if isinstance(model, MultiTaskModel):
        raise ConfigError(f"this is a multi-task model ({', '.join(model.tasks)}): choose one task with "
                          f"--task (task=...), e.g. --task {model.tasks[0]}.")
    return model


def _check_modality(model: Any, dataset: Dataset) -> None:
    from transferkit.data.validation import check_modality

    backbone = getattr(getattr(model, "backbone", None), "name", None)
    check_modality(dataset, getattr(model, "modality", None), f"the model ({backbone})" if backbone else "the model")


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
    from transferkit.features.cache import FeatureCache
    from transferkit.features.extract import resolve_device
    from transferkit.tasks import task_of

    resolve_device(device)  # a GPU that is not here fails now, even when every feature comes from the cache
    model = resolve_model(model, task)
    kind = task_of(model)
    dataset = load_data(data, label_column=label_column, text_column=text_column, path_column=path_column,
                        encoding=encoding, delimiter=delimiter, normalize_labels=normalize_labels, task=kind.name)
    _check_modality(model, dataset)
    validate_dataset(dataset, role="evaluation")
    y_true = kind.targets(dataset, model.classes, normalize=normalize_labels)
    cache = FeatureCache(cache_dir or default_cache_dir())
    proba = model.predict_proba(dataset, batch_size=batch_size, device=device, cache=cache, progress=progress)
    return kind.metrics(y_true, proba, model.classes)


def predict(model: Any, inputs: Any, *, top_k: int | None = None, batch_size: int = 64, device: str = "auto",
            text_column: str | None = None, path_column: str | None = None, encoding: str = "utf-8",
            progress: bool = True, runtime: str = "torch", onnx_file: str | None = None,
            model_dir: str | None = None, task: str | None = None,
            delimiter: str | None = None) -> list[dict[str, Any]]:
    """Predictions for ``inputs``: a folder of images, a table, an image array, or a list of strings.

    Returns one dict per example: ``input`` (its path, row or index), ``label`` and ``probabilities`` (class ->
    probability, the ``top_k`` most likely when given). ``runtime="onnx"`` computes them with ONNX Runtime on the
    CPU from the model folder's ``model.onnx`` (``transferkit export``; an int8 one from ``transferkit compress``)
    or ``onnx_file``; ``model_dir`` names the folder when ``model`` is already loaded. ``task``: the task of a
    multi-task model to predict.
    """
    from transferkit.data.sources import from_arrays, load_data
    from transferkit.data.validation import validate_dataset
    from transferkit.features.extract import resolve_device

    if runtime == "torch":
        resolve_device(device)  # before the inputs are read, and even when the cache holds every feature
    if runtime not in ("torch", "onnx"):
        raise ConfigError(f"runtime must be torch or onnx; got {runtime!r}.")
    model_folder = str(model) if isinstance(model, (str, os.PathLike)) else model_dir
    if runtime == "onnx":
        from transferkit.compress.runtime import model_onnx_path

        folder = str(model) if isinstance(model, (str, os.PathLike)) else model_dir
        onnx_path = model_onnx_path(folder, onnx_file)
    model = resolve_model(model, task)
    modality = get_modality(model.modality)
    if isinstance(inputs, str) and not os.path.exists(inputs) and modality.strings_are_items:
        inputs = [inputs]
    if isinstance(inputs, (str, os.PathLike)):
        dataset = load_data(inputs, text_column=text_column, path_column=path_column, encoding=encoding,
                            delimiter=delimiter, unlabelled=True)
    elif isinstance(inputs, Dataset):
        dataset = inputs
    elif modality.items_are_files and isinstance(inputs, (list, tuple)) and inputs \
            and all(isinstance(i, (str, os.PathLike)) for i in inputs):
        dataset = modality.files_dataset(inputs, "inputs")
    else:
        dataset = from_arrays(inputs if isinstance(inputs, np.ndarray) else list(inputs), origin="inputs")
    _check_modality(model, dataset)
    validate_dataset(dataset, role="prediction")
    if runtime == "onnx":
        from transferkit.compress.runtime import OnnxClassifier

        proba = OnnxClassifier(model, onnx_path).predict_proba(dataset, batch_size=batch_size)
    else:
        proba = model.predict_proba(dataset, batch_size=batch_size, device=device, progress=progress)
    if not np.isfinite(proba).all():  # a broken model: no NaN reaches the caller (or strict JSON output)
        from transferkit.errors import ArtifactError

        bad = np.flatnonzero(~np.isfinite(proba).all(axis=1))
        raise ArtifactError(f"model {model_folder or 'in memory'}: its probabilities are NaN or infinite for {len(bad)} of "
                            f"{len(proba)} inputs (first: {dataset.row_ids[int(bad[0])]}); its weights are not finite "
                            "(a diverged training run). Train it again with a lower learning rate.")
    from transferkit.tasks import task_of

    kind = task_of(model)
    return [kind.prediction_record(row, p, model.classes, top_k) for row, p in zip(dataset.row_ids, proba)]


def list_models() -> list[dict[str, Any]]:
    """The registered backbones and whether their weights are installed here."""
    from transferkit.backbones import list_backbones

    return list_backbones()
