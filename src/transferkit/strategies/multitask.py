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
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.engine.freezing import set_trainable
from transferkit.engine.param_groups import layerwise_groups
from transferkit.engine.plan import ParamGroup
from transferkit.errors import ConfigError
from transferkit.modalities import get_modality
from transferkit.strategies.finetune import FineTune
from transferkit.strategies.multitask_options import MultiTaskConfig

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
    from transferkit.engine.trainer import run_training
    from transferkit.models.heads import HeadSet
    from transferkit.models.multitask_model import MultiTaskModel
    from transferkit.strategies.run import TrainedModel

    strategy = _plan(config, tasks)
    lr = config.lr or strategy.default_lr
    settings = _engine_settings(config, backbone, tasks, strategy, lr)
    augmentation = augmentation_for(backbone.modality, config.augment)
    _hold_out_validation(config, tasks)
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
    outcome = run_training(model, strategy, settings=settings, callbacks=callbacks, task_batch_sizes=batch_sizes,
                           **_task_examples(backbone, tasks, augmentation))
    facts.update(_training_facts(config, strategy, model))
    strategy.finalize(model)
    model.eval()
    facts["training"] = outcome.to_dict()
    facts["history"] = outcome.history
    return TrainedModel(model, outcome, facts)


def _plan(config: MultiTaskConfig, tasks: list[TaskData]) -> MultiTaskPlan:
    """The engine's plan: the tasks, their loss weights and the weighting rule."""
    names = [t.name for t in tasks]
    weights = {t.name: c.weight for t, c in zip(tasks, config.tasks)} if len(config.tasks) == len(tasks) else {}
    return MultiTaskPlan(names, weighting=config.weighting, task_weights=weights, config=config.finetune,
                         head_lr=config.head_lr, seed=config.seed)


def _engine_settings(config: MultiTaskConfig, backbone: Backbone, tasks: list[TaskData], strategy: MultiTaskPlan,
                     lr: float) -> Any:
    """The engine's settings (as for ``fit``), checked: the backbone fits the plan, the batch divides among the
    devices, there is a checkpoint to resume from; the run's record written (or, resuming, compared)."""
    from transferkit.engine.run_record import check_resume, training_options, write_record
    from transferkit.engine.trainer import accelerator_and_devices
    from transferkit.strategies.run import engine_settings, run_folder

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
    data = {t.name: {"training data": t.train.fingerprint(),
                     "validation data": t.val.fingerprint() if t.val is not None else None} for t in tasks}
    options = training_options(config.model_dump(), MULTITASK_UNTRAINED_OPTIONS, lr=lr, data=data)
    (check_resume if config.resume else write_record)(folder, options)
    return settings


def _hold_out_validation(config: MultiTaskConfig, tasks: list[TaskData]) -> None:
    """Tasks without validation data hold out ``val_fraction`` of each class of their training data."""
    from transferkit.data.splits import stratified_split

    for task in tasks:
        if task.val is None:
            task.train, task.val = stratified_split(task.train, config.val_fraction, config.seed,
                                                    names=(f"{task.name} train", f"{task.name} validation"))
            task.val_held_out_of_train = True


def _task_examples(backbone: Backbone, tasks: list[TaskData], augmentation: Any) -> dict[str, Any]:
    """Each task's training and validation examples and their collate functions, as ``run_training`` takes them."""
    from transferkit.engine.data import LabelledCollate, LabelledExamples

    prepare_train, batch_transform = get_modality(backbone.modality).training_inputs(backbone, augmentation)
    return {
        "train": {t.name: LabelledExamples(t.train.items, t.train.label_array(t.classes), prepare_train)
                       for t in tasks},
        "val": {t.name: LabelledExamples(t.val.items, t.val.label_array(t.classes), backbone.prepare)
                     for t in tasks},
        "train_collate": {t.name: LabelledCollate(backbone.collate, batch_transform) for t in tasks},
        "val_collate": {t.name: LabelledCollate(backbone.collate) for t in tasks},
    }


def _training_facts(config: MultiTaskConfig, strategy: MultiTaskPlan, model: nn.Module) -> dict[str, Any]:
    """What the loss weighting did: PCGrad's steps with conflicting gradients, uncertainty's learned weights (the
    weighting module is then removed from the model)."""
    facts: dict[str, Any] = {}
    if config.weighting == "pcgrad":
        facts["pcgrad_conflicting_steps"] = {"steps_with_conflict": strategy.conflicting_steps,
                                             "steps": strategy._steps}
    weighting = getattr(model, "task_weighting", None)
    if weighting is not None:
        facts["learned_task_weights"] = weighting.weights()
        del model.task_weighting
    return facts
