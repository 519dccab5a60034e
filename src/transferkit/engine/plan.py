"""What a strategy tells the engine: which parameters train, at which learning rates, and which loss terms.

A strategy never writes a training loop. It subclasses :class:`TrainingPlan` and overrides at most three methods:

- :meth:`TrainingPlan.param_groups`: the optimiser's groups, each with a name and a learning rate. Parameters frozen
  for the whole run are left out; those unfrozen later are included from the start (with ``requires_grad`` off
  they get no gradient, and the optimiser skips them until then);
- :meth:`TrainingPlan.loss_terms`: a dict of named scalar loss terms, summed by the engine (cross-entropy by
  default; L2-SP adds its penalty, a domain-adaptation method would add an alignment term);
- :meth:`TrainingPlan.on_epoch_start`: changes of what is trainable during training (gradual unfreezing).

A multi-task plan sets :attr:`TrainingPlan.tasks`: the engine then takes one training dataset per task (each step
is a mapping ``{task: (inputs, targets)}``, see :meth:`TrainingPlan.batch_terms`) and one validation dataset per
task, and monitors the mean of the per-task validation figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from transferkit.tasks import DEFAULT_TASK


@dataclass
class ParamGroup:
    """One optimiser group: ``params`` trained at learning rate ``lr``. ``name`` labels it in logs and tests."""

    name: str
    params: list[nn.Parameter]
    lr: float
    weight_decay: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TrainingPlan:
    """The engine-facing side of a strategy. The default trains every parameter with cross-entropy."""

    #: Whether the model's parameters may change their ``requires_grad`` during training (gradual unfreezing).
    changes_trainable: bool = False
    #: Keep every BatchNorm layer in eval mode (pretrained running statistics) while training, not only frozen ones.
    batchnorm_eval: bool = False
    #: Task names of a multi-task plan, in the order of its validation datasets; ``None`` for one task.
    tasks: list[str] | None = None
    #: The task type (:mod:`transferkit.tasks`) whose loss and validation figures the engine uses.
    task_type: str = DEFAULT_TASK
    #: What early stopping and the checkpoint choice follow: ``val_accuracy`` or ``val_loss``.
    monitor: str = "val_accuracy"

    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        """Groups of parameters to optimise. The default: every parameter that requires a gradient, at ``lr``."""
        return [ParamGroup("all", [p for p in model.parameters() if p.requires_grad], lr)]

    def loss_terms(self, model: nn.Module, inputs: Any, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named scalar loss terms for one batch; the engine minimises their sum.

        ``targets`` are what the task's targets are: for classification, class indices ``(N,)`` (int64) or class
        probabilities ``(N, classes)`` (mixup / cutmix). The default is the task's loss, named by the task.
        """
        from transferkit.tasks import get_task

        task = get_task(self.task_type)
        return {task.loss_name: task.loss(model(inputs), targets, head=getattr(model, "head", None))}

    def batch_terms(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], int]:
        """Loss terms of one training batch and its number of examples. The default unpacks ``(inputs, targets)``
        and calls :meth:`loss_terms`; a multi-task plan receives ``{task: (inputs, targets)}``."""
        inputs, targets = batch
        return self.loss_terms(model, inputs, targets), len(targets)

    def task_logits(self, model: nn.Module, inputs: Any, task: str) -> torch.Tensor:
        """Logits of ``task`` for validation (multi-task plans only)."""
        return model(inputs, task=task)

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Called before each training epoch (counted from 0), also after resuming; may change ``requires_grad``."""
