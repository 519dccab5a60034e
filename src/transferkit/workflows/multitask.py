"""``multitask``: one backbone trained for several tasks, each task scored on its own test data, the model saved.

The steps: build the config and check the datasets given to it, check the runtime and the output folder, load each
task's data, build the shared backbone, train (:func:`transferkit.strategies.multitask.train_multitask`, the
engine's multi-task plan), save the model as soon as it exists, score each task on its test data, bring the folder
up to date. The training itself (sampling, loss weighting, PCGrad) is in :mod:`transferkit.strategies.multitask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError
from transferkit.modalities import get_modality
from transferkit.strategies.multitask_options import MultiTaskConfig, make_multitask_config
from transferkit.workflows.steps import build_config, check_model_output, check_runtime, timed


@dataclass
class MultiTaskResult:
    """What ``multitask`` produced: the model, each task's test metrics, the training record."""

    model: Any
    config: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    training: dict[str, Any]
    output: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    is_main_process: bool = True

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean([m["accuracy"] for m in self.metrics.values()]))

    def summary(self) -> str:
        width = max(len(t) for t in self.metrics) if self.metrics else 4
        lines = [f"{'task':<{width}}  accuracy  macro-F1  n_test", "-" * (width + 30)]
        lines += [f"{t:<{width}}  {m['accuracy']:8.4f}  {m['macro_f1']:8.4f}  {m['n']:6d}" for t, m in self.metrics.items()]
        lines.append(f"{'mean':<{width}}  {self.mean_accuracy:8.4f}")
        return "\n".join(lines)


def multitask(config: MultiTaskConfig | None = None, *, data: Mapping[str, Mapping[str, Any]] | None = None,
              **options: Any) -> MultiTaskResult:
    """Train one backbone for several tasks, evaluate each task on its test data, save the model.

    ``config`` (or ``options``, the fields of :class:`MultiTaskConfig`) describes the run; ``data`` may give the
    datasets of some tasks directly, ``{task: {"train": Dataset, "val": ..., "test": ...}}`` (Python API), in
    place of their paths. Everything is checked before the backbone runs.
    """
    from transferkit.strategies.multitask import train_multitask

    config = build_config(make_multitask_config, config, {}, options)
    data = _check_given_data(config, data)
    config = _check_before_work(config)
    timings: dict[str, float] = {}
    with timed(timings, "load"):
        tasks = [_load_task(spec, data.get(spec.name), config) for spec in config.tasks]
        modality = _common_modality(tasks)
        backbone_name, backbone = _build_backbone(config, modality)
    with timed(timings, "training"):
        trained = train_multitask(config, backbone, tasks)
    run_config = _run_config(config, backbone_name, modality, tasks, trained.facts)
    output = _save_early(trained, config, run_config, timings)
    metrics: dict[str, dict[str, Any]] = {}
    if trained.is_main_process:
        with timed(timings, "test_predictions"):
            metrics = _test_metrics(trained.model, tasks, config)
    result = MultiTaskResult(trained.model, run_config, metrics, trained.facts, output=output, timings=timings,
                             is_main_process=trained.is_main_process)
    _update_folder(result)
    return result


def _check_given_data(config: MultiTaskConfig, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The datasets given by the Python call belong to tasks the config names."""
    data = dict(data or {})
    unknown = sorted(set(data) - {t.name for t in config.tasks})
    if unknown:
        raise ConfigError(f"datasets given for tasks {unknown} that the config does not name "
                          f"(tasks: {', '.join(t.name for t in config.tasks)}).")
    return data


def _check_before_work(config: MultiTaskConfig) -> MultiTaskConfig:
    """The training libraries, the device(s) and the output folder, before any data is read; the options this run
    ignores are a warning."""
    from transferkit.engine.trainer import accelerator_and_devices

    check_runtime(config.device, "multitask")
    config.warn_unused_options()
    accelerator_and_devices(config.device, config.devices)  # a device that is not here fails before any work
    return check_model_output(config, [
        *[(f"{role} data of task '{t.name}'", getattr(t, role)) for t in config.tasks
          for role in ("data", "val", "test")],
        ("backbone", config.backbone), ("--work-dir", config.work_dir)])


def _load_task(spec: Any, given: Mapping[str, Any] | None, config: MultiTaskConfig) -> Any:
    """One task's training, validation and test data, read with the task's table options and checked (each set,
    and the sets against each other); ``shots`` per class kept; without test data, ``test_fraction`` of each class
    held out."""
    from transferkit.data.sources import load_data
    from transferkit.data.splits import sample_per_class, stratified_split
    from transferkit.data.validation import validate_dataset, validate_splits
    from transferkit.strategies.multitask import TaskData

    given = dict(given or {})

    def load(role: str) -> Dataset | None:
        source = given.get(role, getattr(spec, "data" if role == "train" else role))
        if source is None or isinstance(source, Dataset):
            return source
        return load_data(source, spec)

    train = load("train")
    if train is None:
        raise ConfigError(f"task '{spec.name}': no training data; give tasks[].data (a folder or a table).")
    validate_dataset(train, role=f"training ({spec.name})")
    val, test = load("val"), load("test")
    others = [d for d in (val, test) if d is not None]
    for other in others:
        validate_dataset(other, role=f"evaluation ({spec.name})")
    validate_splits(train, others, normalize_labels=spec.normalize_labels)
    if spec.shots is not None:
        train = sample_per_class(train, spec.shots, config.seed)
    if test is None:
        train, test = stratified_split(train, config.test_fraction, config.seed,
                                       names=(f"{spec.name} train", f"{spec.name} test"))
    return TaskData(spec.name, train, val, test, train.classes)


def _common_modality(tasks: list[Any]) -> str:
    """The one modality of every task's data (one backbone serves them all)."""
    modalities = {t.name: t.train.modality for t in tasks}
    if len(set(modalities.values())) > 1:
        raise DataError(f"every task of a multi-task run must have the same modality (one backbone); got "
                        f"{modalities}.")
    return tasks[0].train.modality


def _build_backbone(config: MultiTaskConfig, modality: str) -> tuple[str, Any]:
    """The shared backbone (the config's, else the modality's default), random parts seeded."""
    import torch

    from transferkit.backbones import create_backbone

    entry = get_modality(modality)
    name = config.backbone or entry.default_backbone
    torch.manual_seed(config.seed)
    backbone = create_backbone(name, **entry.backbone_options(max_length=config.max_length,
                                                              image_size=config.image_size))
    if backbone.modality != modality:
        raise ConfigError(f"backbone '{name}' takes {backbone.modality} input but the tasks hold {modality} "
                          "data; choose a backbone of that modality (`transferkit models`).")
    return name, backbone


def _run_config(config: MultiTaskConfig, backbone: str, modality: str, tasks: list[Any],
                facts: dict[str, Any]) -> dict[str, Any]:
    """The config as saved with the model, with the facts of the run (classes, sizes, data fingerprints)."""
    return config.resolved(
        backbone=backbone, modality=modality,
        task_facts={t.name: {"classes": t.classes, "n_train": len(t.train), "n_val": len(t.val),
                             "n_test": len(t.test), "data_fingerprint": t.train.fingerprint()} for t in tasks},
        training={k: v for k, v in facts.items() if k != "history"})


def _save_early(trained: Any, config: MultiTaskConfig, run_config: dict[str, Any],
                timings: dict[str, float]) -> Path | None:
    """The model saved as soon as it exists (the main process, with an output folder); the test evaluation follows
    and is listed as pending."""
    if not trained.is_main_process or config.output is None:
        return None
    from transferkit.models.artifact_kinds import save_multitask_model

    extra = {"training_log.csv": Path(trained.outcome.metrics_csv).read_text(encoding="utf-8")} \
        if trained.outcome.metrics_csv else {}
    return save_multitask_model(
        trained.model, config.output, metrics={"training": trained.facts, "timings_s": timings,
                                               "pending": "test evaluation"},
        run_config=run_config, overwrite=config.overwrite, extra_files=extra, keep_beside=True)


def _test_metrics(model: Any, tasks: list[Any], config: MultiTaskConfig) -> dict[str, dict[str, Any]]:
    """Each task's metrics on its test data, the features through the cache."""
    from transferkit.evaluation.metrics import classification_metrics
    from transferkit.features.cache import FeatureCache, default_cache_dir

    cache = FeatureCache(config.cache_dir or default_cache_dir())
    metrics = {}
    for task in tasks:
        proba = model.predict_proba(task.test, task.name, batch_size=config.batch_size, device=config.device,
                                    num_workers=config.num_workers, cache=cache, progress=config.progress)
        metrics[task.name] = classification_metrics(task.test.label_array(task.classes), proba.argmax(axis=1),
                                                    task.classes)
    return metrics


def _update_folder(result: MultiTaskResult) -> None:
    """The saved folder's metrics (test figures, training, timings) and summary."""
    if result.output is None:
        return
    from transferkit.models.folder import update_model_folder

    update_model_folder(result.output, metrics={"test": result.metrics, "training": result.training,
                                                "timings_s": result.timings},
                        files={"summary.txt": result.summary() + "\n"})
