"""``multitask``: one backbone shared by several tasks, one head per task (hard parameter sharing).

Each task has its own dataset and label set (the tasks need not share examples). Every training step holds one
batch of every task: the step's global batch ``B`` is shared among the tasks by the sampling rule,
``b_t = B p_t`` (rounded by largest remainder, at least 1 each) with

- ``proportional``: ``p_t = n_t / sum_s n_s`` (each example seen about equally often),
- ``uniform``: ``p_t = 1 / T`` (small tasks cycle more often),
- ``temperature``: ``p_t ~ n_t^(1 / temperature)`` (1 = proportional, large = uniform; Arivazhagan et al. 2019).

The backbone runs once per task batch and each head sees only its task's features. With several tasks,
BatchNorm layers keep their pretrained running statistics by default (``finetune.bn_statistics = "auto"``; their
weights still train): statistics updated by every task's batches would normalise each task at test time by a
mixture of all tasks' inputs, which cost about 14 points on Fashion-MNIST + MNIST in the benchmark. The loss is combined by
``weighting``: ``fixed`` (``sum_t w_t L_t``), ``uncertainty`` (learned weights, Kendall et al. 2018) or
``pcgrad`` (the fixed-weight sum with conflicting gradients on the shared backbone projected, Yu et al. 2020); see
:mod:`transferkit.losses.task_weighting`. Validation reports each task's accuracy and loss; early stopping and the
best checkpoint follow their mean over the tasks. Training runs on the shared engine; freezing and per-layer
learning-rate decay of the backbone are those of ``finetune``.

With a single task, fixed weight 1, this is exactly ``finetune`` (same seed, same updates, same weights).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.engine.freezing import set_trainable
from transferkit.engine.param_groups import layerwise_groups
from transferkit.engine.plan import ParamGroup
from transferkit.errors import ConfigError, DataError
from transferkit.modalities import get_modality
from transferkit.strategies.finetune import FineTune
from transferkit.strategies.multitask_options import MultiTaskConfig, make_multitask_config

log = logging.getLogger("transferkit")


def task_sampling_probabilities(sizes: Mapping[str, int], sampling: str, temperature: float = 2.0) -> dict[str, float]:
    """``p_t`` of each task from its number of training examples ``n_t`` (see the module docstring)."""
    if sampling == "proportional":
        raw = {t: float(n) for t, n in sizes.items()}
    elif sampling == "uniform":
        raw = {t: 1.0 for t in sizes}
    elif sampling == "temperature":
        raw = {t: float(n) ** (1.0 / temperature) for t, n in sizes.items()}
    else:
        raise ConfigError(f"option 'sampling' must be proportional, uniform or temperature; got {sampling!r}.")
    total = sum(raw.values())
    return {t: v / total for t, v in raw.items()}


def task_batch_sizes(probabilities: Mapping[str, float], batch_size: int) -> dict[str, int]:
    """Split ``batch_size`` among the tasks in proportion to ``probabilities`` (largest remainder, at least 1)."""
    tasks = list(probabilities)
    if batch_size < len(tasks):
        raise ConfigError(f"option 'batch_size' ({batch_size}) must be at least the number of tasks ({len(tasks)}): "
                          "every step holds at least one example of every task.")
    exact = {t: batch_size * probabilities[t] for t in tasks}
    sizes = {t: max(1, int(math.floor(exact[t]))) for t in tasks}
    by_remainder = sorted(tasks, key=lambda t: (-(exact[t] - math.floor(exact[t])), tasks.index(t)))
    i = 0
    while sum(sizes.values()) < batch_size:
        sizes[by_remainder[i % len(tasks)]] += 1
        i += 1
    while sum(sizes.values()) > batch_size:  # only when the minimum of 1 pushed the total over
        largest = max(tasks, key=lambda t: sizes[t])
        sizes[largest] -= 1
    return sizes


class MultiTaskPlan(FineTune):
    """The engine's plan for a :class:`~transferkit.models.multitask_model.MultiTaskModel`: ``finetune``'s trainable
    layers and learning rates for the backbone, every head at the head learning rate, and the task losses
    combined by ``weighting``. A training batch is ``{task: (inputs, targets)}``."""

    name = "multitask"

    def __init__(self, tasks: list[str], *, weighting: str = "fixed", task_weights: Mapping[str, float] | None = None,
                 config: Any = None, head_lr: float | None = None, seed: int = 0) -> None:
        super().__init__(config, head_lr=head_lr)
        if weighting not in ("fixed", "uncertainty", "pcgrad"):
            raise ConfigError(f"option 'weighting' must be fixed, uncertainty or pcgrad; got {weighting!r}.")
        self.tasks = list(tasks)
        # Shared BatchNorm statistics would normalise every task by a mixture of all tasks' inputs: with several
        # tasks, "auto" keeps the pretrained statistics (one task: updated, as for finetune).
        self.batchnorm_eval = self.config.bn_statistics == "frozen" or (
            self.config.bn_statistics == "auto" and len(self.tasks) > 1)
        self.weighting = weighting
        self.task_weights = {t: float((task_weights or {}).get(t, 1.0)) for t in self.tasks}
        self.seed = seed
        self._steps = 0
        #: PCGrad: training steps in which some pair of tasks had conflicting gradients (a projection happened).
        self.conflicting_steps = 0

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        from transferkit.losses.task_weighting import UncertaintyWeighting

        tasks = context.get("tasks")
        if self.config.bn_statistics == "auto" and len(self.tasks) == 1 and tasks:  # one task: as finetune decides
            self.batchnorm_eval = self.keeps_pretrained_batchnorm(model.backbone, len(tasks[0].train))
        self._groups = list(model.backbone.layer_groups())
        set_trainable(model.backbone, False)
        set_trainable(model.heads, True)
        if self.changes_trainable:
            self.on_epoch_start(model, 0)
        else:
            set_trainable(self._groups[self.config.freeze:], True)
        if self.weighting == "uncertainty":
            model.task_weighting = UncertaintyWeighting(self.tasks)

    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        groups = layerwise_groups(self._groups, lr, self.config.layer_lr_decay, skip=self.config.freeze)
        groups.append(ParamGroup("head", list(model.heads.parameters()), self.head_learning_rate(lr)))
        weighting = getattr(model, "task_weighting", None)
        if weighting is not None:
            groups.append(ParamGroup("task_weighting", list(weighting.parameters()), self.head_learning_rate(lr),
                                     weight_decay=0.0))
        return groups

    def task_losses(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], int]:
        """Cross-entropy of each task's batch, and the number of examples."""
        losses: dict[str, torch.Tensor] = {}
        size = 0
        for task in self.tasks:
            if task in batch:
                inputs, targets = batch[task]
                losses[task] = F.cross_entropy(model(inputs, task=task), targets)
                size += len(targets)
        return losses, size

    def batch_terms(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        losses, size = self.task_losses(model, batch)
        if self.weighting == "uncertainty":
            weighted = model.task_weighting(losses)
        else:
            weighted = {t: self.task_weights[t] * loss for t, loss in losses.items()}
        terms = {f"cross_entropy_{t}": value for t, value in weighted.items()}
        if self.weighting == "pcgrad" and len(weighted) > 1 and torch.is_grad_enabled():
            correction = self._pcgrad_correction(model, weighted)
            if correction is not None:
                terms["pcgrad"] = correction
        self._steps += 1
        return terms, size

    def _pcgrad_correction(self, model: nn.Module, weighted: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """A term of value 0 whose gradient on the shared parameters is ``g_PCGrad - sum_t g_t``: added to the
        plain sum of the task losses, the backward pass leaves PCGrad's gradient on the backbone and each task's
        own gradient on its head (accumulation and mixed-precision scaling work unchanged)."""
        from transferkit.losses.task_weighting import pcgrad_project

        shared = [p for p in model.backbone.parameters() if p.requires_grad]
        if not shared:
            return None
        rows = []
        for loss in weighted.values():
            grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                   for g, p in zip(grads, shared)]))
        gradients = torch.stack(rows)
        dots = gradients @ gradients.T
        if bool((dots < 0).any()):
            self.conflicting_steps += 1
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self._steps)
        delta = pcgrad_project(gradients.cpu(), generator).to(gradients.device) - gradients.sum(dim=0)
        correction = gradients.new_zeros(())
        offset = 0
        for p in shared:
            n = p.numel()
            correction = correction + (p.float() * delta[offset:offset + n].view_as(p)).sum()
            offset += n
        return correction - correction.detach()

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {**super().describe(model), "weighting": self.weighting, "task_weights": self.task_weights}


@dataclass
class TaskData:
    """One task's datasets and class names."""

    name: str
    train: Dataset
    val: Dataset | None
    test: Dataset | None
    classes: list[str]
    val_held_out_of_train: bool = False


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


#: Options that mean the same for a multi-task run as for ``fit``; the engine's settings are made from them.
SHARED_TRAINING_OPTIONS = ("epochs", "batch_size", "weight_decay", "warmup", "accumulate", "precision", "patience",
                           "seed", "deterministic", "device", "devices", "distributed", "num_workers", "resume",
                           "tracking_uri", "progress", "work_dir", "output")


#: Options that do not change what a multi-task run trains (``resume`` may change them); the tasks' data is
#: recorded by fingerprint.
MULTITASK_UNTRAINED_OPTIONS = ("output", "overwrite", "device", "devices", "distributed", "num_workers", "resume",
                               "work_dir", "tracking_uri", "cache_dir", "progress")


def _training_view(config: MultiTaskConfig) -> Any:
    """A :class:`~transferkit.config.FitConfig` with this run's training options (the rest at their defaults),
    so that the engine's settings are made exactly as for ``fit``."""
    from transferkit.config import make_config

    return make_config("multitask options", strategy="finetune",
                       **{name: getattr(config, name) for name in SHARED_TRAINING_OPTIONS})


def train_multitask(config: MultiTaskConfig, backbone: Backbone, tasks: list[TaskData], *,
                    callbacks: tuple = ()) -> Any:
    """Train ``backbone`` + one new head per task on the tasks' training data through the engine; returns a
    :class:`~transferkit.strategies.run.TrainedModel` holding a :class:`~transferkit.models.multitask_model.MultiTaskModel`.

    Tasks without validation data hold out ``config.val_fraction`` of each class of their training data (seeded).
    """
    from transferkit.data.augmentation import augmentation_for
    from transferkit.data.splits import stratified_split
    from transferkit.engine.data import LabelledCollate, LabelledExamples
    from transferkit.engine.trainer import accelerator_and_devices, run_training
    from transferkit.models.heads import HeadSet
    from transferkit.models.multitask_model import MultiTaskModel
    from transferkit.strategies.run import TrainedModel, engine_settings, run_folder

    names = [t.name for t in tasks]
    weights = {t.name: c.weight for t, c in zip(tasks, config.tasks)} if len(config.tasks) == len(tasks) else {}
    strategy = MultiTaskPlan(names, weighting=config.weighting, task_weights=weights, config=config.finetune,
                             head_lr=config.head_lr, seed=config.seed)
    lr = config.lr or strategy.default_lr
    folder = run_folder(config, tasks[0].train) / strategy.name
    settings = engine_settings(_training_view(config), folder, lr=lr, run_name=f"{backbone.name} multitask",
                               log_params=config.resolved(backbone=backbone.name, lr=lr))
    strategy.check(backbone)
    if config.batch_size % config.devices:
        raise ConfigError(f"option 'batch_size' ({config.batch_size}) must be divisible by 'devices' "
                          f"({config.devices}).")
    accelerator_and_devices(config.device, config.devices)
    if config.resume and not settings.last_checkpoint.is_file():
        raise ConfigError(f"--resume: nothing to resume in {folder} (no checkpoint). Give the same --output (or "
                          "work_dir) as the interrupted run, or run without resume.")
    settings.resume = config.resume
    from transferkit.engine.run_record import check_resume, training_options, write_record

    data = {t.name: {"training data": t.train.fingerprint(),
                     "validation data": t.val.fingerprint() if t.val is not None else None} for t in tasks}
    options = training_options(config.model_dump(), MULTITASK_UNTRAINED_OPTIONS, lr=lr, data=data)
    (check_resume if config.resume else write_record)(folder, options)
    augmentation = augmentation_for(backbone.modality, config.augment)

    for task in tasks:
        if task.val is None:
            task.train, task.val = stratified_split(task.train, config.val_fraction, config.seed,
                                                    names=(f"{task.name} train", f"{task.name} validation"))
            task.val_held_out_of_train = True
    probabilities = task_sampling_probabilities({t.name: len(t.train) for t in tasks}, config.sampling,
                                                config.temperature)
    batch_sizes = task_batch_sizes(probabilities, config.batch_size)
    facts: dict[str, Any] = {
        "strategy": strategy.name, "lr": lr, "sampling": config.sampling, "task_probabilities": probabilities,
        "task_batch_sizes": batch_sizes,
        "tasks": {t.name: {"n_train": len(t.train), "n_val": len(t.val), "classes": t.classes,
                           "val_held_out_of_train": t.val_held_out_of_train} for t in tasks},
        "augmentation": {"preset": config.augment, **augmentation.to_dict()},
    }

    torch.manual_seed(config.seed)
    heads = HeadSet(backbone.num_features, {t.name: len(t.classes) for t in tasks})
    model = MultiTaskModel(backbone, heads, {t.name: t.classes for t in tasks})
    strategy.prepare(model, {"tasks": tasks, "config": config})
    facts.update(strategy.describe(model))

    prepare_train, batch_transform = get_modality(backbone.modality).training_inputs(backbone, augmentation)
    train_sets = {t.name: LabelledExamples(t.train.items, t.train.label_array(t.classes), prepare_train) for t in tasks}
    val_sets = {t.name: LabelledExamples(t.val.items, t.val.label_array(t.classes), backbone.prepare) for t in tasks}
    outcome = run_training(model, strategy, train_sets, val_sets, settings,
                           train_collate={t.name: LabelledCollate(backbone.collate, batch_transform) for t in tasks},
                           val_collate={t.name: LabelledCollate(backbone.collate) for t in tasks},
                           callbacks=callbacks, task_batch_sizes=batch_sizes)
    if config.weighting == "pcgrad":
        facts["pcgrad_conflicting_steps"] = {"steps_with_conflict": strategy.conflicting_steps,
                                             "steps": strategy._steps}
    weighting = getattr(model, "task_weighting", None)
    if weighting is not None:
        facts["learned_task_weights"] = weighting.weights()
        del model.task_weighting
    strategy.finalize(model)
    model.eval()
    facts["training"] = outcome.to_dict()
    facts["history"] = outcome.history
    return TrainedModel(model, outcome, facts)


def _load_task(spec: Any, given: Mapping[str, Any] | None, config: MultiTaskConfig) -> TaskData:
    from transferkit.data.sources import load_data
    from transferkit.data.splits import sample_per_class, stratified_split
    from transferkit.data.validation import validate_dataset, validate_splits

    given = dict(given or {})

    def load(role: str) -> Dataset | None:
        source = given.get(role, getattr(spec, "data" if role == "train" else role))
        if source is None or isinstance(source, Dataset):
            return source
        return load_data(source, label_column=spec.label_column, text_column=spec.text_column,
                         path_column=spec.path_column, encoding=spec.encoding)

    train = load("train")
    if train is None:
        raise ConfigError(f"task '{spec.name}': no training data; give tasks[].data (a folder or a table).")
    validate_dataset(train, role=f"training ({spec.name})")
    val, test = load("val"), load("test")
    others = [d for d in (val, test) if d is not None]
    for other in others:
        validate_dataset(other, role=f"evaluation ({spec.name})")
    validate_splits(train, others)
    if spec.shots is not None:
        train = sample_per_class(train, spec.shots, config.seed)
    if test is None:
        train, test = stratified_split(train, config.test_fraction, config.seed,
                                       names=(f"{spec.name} train", f"{spec.name} test"))
    return TaskData(spec.name, train, val, test, train.classes)


def multitask(config: MultiTaskConfig | None = None, *, data: Mapping[str, Mapping[str, Any]] | None = None,
              **options: Any) -> MultiTaskResult:
    """Train one backbone for several tasks, evaluate each task on its test data, save the model.

    ``config`` (or ``options``, the fields of :class:`MultiTaskConfig`) describes the run; ``data`` may give the
    datasets of some tasks directly, ``{task: {"train": Dataset, "val": ..., "test": ...}}`` (Python API), in
    place of their paths. Everything is checked before the backbone runs.
    """
    from transferkit.backbones import create_backbone
    from transferkit.evaluation.metrics import classification_metrics
    from transferkit.features.cache import FeatureCache, default_cache_dir
    from transferkit.strategies.requirements import check_training_installed

    if config is None:
        config = make_multitask_config(**options)
    elif options:
        config = make_multitask_config(**{**config.model_dump(), **options})
    data = dict(data or {})
    unknown = sorted(set(data) - {t.name for t in config.tasks})
    if unknown:
        raise ConfigError(f"datasets given for tasks {unknown} that the config does not name "
                          f"(tasks: {', '.join(t.name for t in config.tasks)}).")
    check_training_installed("multitask")
    config.warn_unused_options()
    from transferkit.engine.trainer import accelerator_and_devices

    accelerator_and_devices(config.device, config.devices)  # a device that is not here fails before any work
    if config.output is not None:
        from transferkit.models.folder import check_output_folder, unfinished_model

        if config.resume and unfinished_model(config.output):  # the interrupted run's own model: replaced
            config = config.model_copy(update={"overwrite": True})
        check_output_folder(config.output, config.overwrite, inputs=[
            *[(f"{role} data of task '{t.name}'", getattr(t, role)) for t in config.tasks
              for role in ("data", "val", "test")],
            ("backbone", config.backbone), ("--work-dir", config.work_dir)])

    timings: dict[str, float] = {}
    start = time.perf_counter()
    tasks = [_load_task(spec, data.get(spec.name), config) for spec in config.tasks]
    modalities = {t.name: t.train.modality for t in tasks}
    if len(set(modalities.values())) > 1:
        raise DataError(f"every task of a multi-task run must have the same modality (one backbone); got "
                        f"{modalities}.")
    modality = tasks[0].train.modality
    backbone_name = config.backbone or get_modality(modality).default_backbone
    torch.manual_seed(config.seed)
    backbone = create_backbone(backbone_name, **get_modality(modality).backbone_options(
        max_length=config.max_length, image_size=config.image_size))
    if backbone.modality != modality:
        raise ConfigError(f"backbone '{backbone_name}' takes {backbone.modality} input but the tasks hold {modality} "
                          "data; choose a backbone of that modality (`transferkit models`).")
    timings["load"] = time.perf_counter() - start

    start = time.perf_counter()
    trained = train_multitask(config, backbone, tasks)
    timings["training"] = time.perf_counter() - start
    model = trained.model
    metrics: dict[str, dict[str, Any]] = {}
    training = {k: v for k, v in trained.facts.items() if k != "history"}

    def resolved_config() -> dict[str, Any]:
        return config.resolved(
            backbone=backbone_name, modality=modality,
            task_facts={t.name: {"classes": t.classes, "n_train": len(t.train), "n_val": len(t.val),
                                 "n_test": len(t.test), "data_fingerprint": t.train.fingerprint()} for t in tasks},
            training=training)

    output = None
    if trained.is_main_process and config.output is not None:  # saved as soon as it exists; evaluation follows
        from transferkit.models.artifact_kinds import save_multitask_model

        extra = {"training_log.csv": Path(trained.outcome.metrics_csv).read_text(encoding="utf-8")} \
            if trained.outcome.metrics_csv else {}
        output = save_multitask_model(
            model, config.output, metrics={"training": trained.facts, "timings_s": timings,
                                           "pending": "test evaluation"},
            run_config=resolved_config(), overwrite=config.overwrite, extra_files=extra, keep_beside=True)
    if trained.is_main_process:
        start = time.perf_counter()
        cache = FeatureCache(config.cache_dir or default_cache_dir())
        for task in tasks:
            proba = model.predict_proba(task.test, task.name, batch_size=config.batch_size, device=config.device,
                                        num_workers=config.num_workers, cache=cache, progress=config.progress)
            metrics[task.name] = classification_metrics(task.test.label_array(task.classes), proba.argmax(axis=1),
                                                        task.classes)
        timings["test_predictions"] = time.perf_counter() - start
    result = MultiTaskResult(model, resolved_config(), metrics, trained.facts, output=output, timings=timings,
                             is_main_process=trained.is_main_process)
    if output is not None:
        from transferkit.models.folder import update_model_folder

        update_model_folder(output, metrics={"test": metrics, "training": trained.facts, "timings_s": timings},
                            files={"summary.txt": result.summary() + "\n"})
    return result
