"""``finetune``: train the backbone and a new head, fully or in part.

Options (:class:`~transferkit.strategies.options.FineTuneConfig`): freeze the first ``k`` layer groups for the
whole run; per-layer learning-rate decay from the top down; gradual unfreezing (ULMFiT: the head alone first, then
one more layer group from the top every ``unfreeze_every`` epochs). Frozen BatchNorm layers stay in eval mode
(the engine sees to it).
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from transferkit.backbones.base import Backbone
from transferkit.engine.freezing import set_trainable
from transferkit.engine.param_groups import layerwise_groups
from transferkit.engine.plan import ParamGroup
from transferkit.errors import ConfigError
from transferkit.strategies.base import TrainingStrategy
from transferkit.strategies.options import FineTuneConfig


class FineTune(TrainingStrategy):
    """Fine-tuning of ``model.backbone`` (its :meth:`~transferkit.backbones.Backbone.layer_groups`) and
    ``model.head``. Parameters outside the layer groups (a source classifier kept for LEEP) stay frozen."""

    name = "finetune"
    default_lr = 1e-4
    #: ``bn_statistics = "auto"`` keeps the pretrained BatchNorm statistics when true.
    freezes_batchnorm_statistics_by_default = False
    #: ``bn_statistics = "auto"`` also keeps a *pretrained* backbone's statistics for training sets up to this size:
    #: batch statistics of a few hundred examples (batches of 32) are noisy estimates of a shifted input
    #: distribution, and on Fashion-MNIST (1,000 images, Lite0 at 112 px) fine-tuning reached 0.813 and 0.827 (two
    #: runs) with the pretrained statistics against 0.793 with updated ones (the probe: 0.813).
    small_data_batchnorm_limit = 10_000

    def __init__(self, config: FineTuneConfig | None = None, head_lr: float | None = None) -> None:
        super().__init__(head_lr)
        self.config = config or FineTuneConfig()
        self.changes_trainable = self.config.unfreeze_every > 0
        self.batchnorm_eval = self.config.bn_statistics == "frozen" or (
            self.config.bn_statistics == "auto" and self.freezes_batchnorm_statistics_by_default)
        self._groups: list[nn.Module] = []

    def check(self, backbone: Backbone) -> None:
        n = len(backbone.layer_groups())
        if self.config.freeze > n:
            raise ConfigError(
                f"option 'finetune.freeze' (--freeze) is {self.config.freeze}, but backbone '{backbone.name}' has "
                f"{n} layer groups; give 0 to {n - 1} (or use --strategy linear-probe to freeze all of it)."
            )
        if self.config.freeze == n:
            warnings.warn(f"--freeze {n} freezes every layer group of '{backbone.name}': only the head trains. "
                          "--strategy linear-probe does the same faster (cached features).", stacklevel=2)

    def keeps_pretrained_batchnorm(self, backbone: Backbone, n_train: int | None) -> bool:
        """What ``bn_statistics = "auto"`` means for this run: the pretrained statistics are kept for LP-FT, and for
        a pretrained backbone (not ``random:...``) on at most :attr:`small_data_batchnorm_limit` examples."""
        if self.freezes_batchnorm_statistics_by_default:
            return True
        pretrained = not backbone.name.startswith("random:")
        return pretrained and n_train is not None and n_train <= self.small_data_batchnorm_limit

    def prepare(self, model: nn.Module, context: dict[str, Any]) -> None:
        if self.config.bn_statistics == "auto":
            train = context.get("train")
            self.batchnorm_eval = self.keeps_pretrained_batchnorm(model.backbone,
                                                                  len(train) if train is not None else None)
        self._groups = list(model.backbone.layer_groups())
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)
        if self.changes_trainable:
            self.on_epoch_start(model, 0)
        else:
            set_trainable(self._groups[self.config.freeze:], True)

    def trainable_groups(self, epoch: int) -> list[int]:
        """Indices of the layer groups trainable during ``epoch`` (from 0)."""
        n, first = len(self._groups), self.config.freeze
        if not self.changes_trainable:
            return list(range(first, n))
        unfrozen = min(n - first, epoch // self.config.unfreeze_every)
        return list(range(n - unfrozen, n))

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        wanted = set(self.trainable_groups(epoch))
        for index, group in enumerate(self._groups):
            set_trainable(group, index in wanted)

    def param_groups(self, model: nn.Module, lr: float) -> list[ParamGroup]:
        groups = layerwise_groups(self._groups, lr, self.config.layer_lr_decay, skip=self.config.freeze)
        head = [p for p in model.head.parameters()]
        return [*groups, ParamGroup("head", head, self.head_learning_rate(lr))]
