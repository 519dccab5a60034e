"""The common shape of a training strategy: check, prepare the model, train through the engine, finalise.

A strategy is a :class:`~transferkit.engine.plan.TrainingPlan` (what trains, at which learning rates, with which
loss terms) plus three steps around the engine's run:

- :meth:`TrainingStrategy.check`: options that cannot work with this backbone fail here, before any work;
- :meth:`TrainingStrategy.prepare`: set what is trainable, wrap layers (LoRA), fit a probe (LP-FT);
- :meth:`TrainingStrategy.finalize`: undo wrappers (merge LoRA into the weights) so the saved model is plain.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.engine.freezing import trainable_parameter_count
from transferkit.engine.plan import TrainingPlan

#: A new, randomly initialised head learns this many times faster than the pretrained backbone by default.
NEW_HEAD_LR_MULTIPLIER = 10.0


class TrainingStrategy(TrainingPlan):
    """Base class of ``finetune``, ``lp-ft``, ``lora`` and ``l2sp``."""

    name: str = ""
    #: Default learning rate when the run does not give one.
    default_lr: float = 1e-4

    def __init__(self, head_lr: float | None = None) -> None:
        self.head_lr = head_lr

    def head_learning_rate(self, lr: float) -> float:
        """The head's learning rate: ``head_lr`` when given, else ``NEW_HEAD_LR_MULTIPLIER * lr``."""
        return self.head_lr if self.head_lr is not None else NEW_HEAD_LR_MULTIPLIER * lr

    def check(self, backbone: Backbone) -> None:
        """Raise :class:`~transferkit.errors.ConfigError` for options that cannot work with ``backbone``."""

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        """Make the model ready for the engine. ``context`` holds the training data and the run config for
        strategies that need them (LP-FT fits its probe on cached features)."""

    def training_examples(self, train: Any, labels: Any, prepare: Any) -> Any:
        """The engine's training examples: ``(prepare(item), label)`` pairs. Distillation adds unlabelled examples
        and each example's index (to find the teacher's cached outputs)."""
        from transferkit.engine.data import LabelledExamples

        return LabelledExamples(train.items, labels, prepare)

    def after_training(self, model: nn.Module, outcome: Any) -> dict[str, Any]:
        """Right after the engine's run (``outcome``: its :class:`~transferkit.engine.trainer.TrainingOutcome`, the
        model holding the best epoch's weights): a last choice of weights; returns facts for the run."""
        return {}

    def finalize(self, model: nn.Module) -> None:
        """After training: leave a plain model behind (no wrappers), and mark the backbone's weights as changed."""
        model.backbone.invalidate_digest()

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """Facts saved with the run: parameter counts (at the start of training)."""
        trainable, total = trainable_parameter_count(model)
        return {"trainable_parameters": trainable, "total_parameters": total}
