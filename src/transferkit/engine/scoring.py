"""Engine callbacks for strategies that choose their checkpoint by a score of their own and follow training progress.

Domain adaptation has no labelled target data: the checkpoint is chosen by a label-free score (see
:mod:`transferkit.evaluation.validators`), not by source validation accuracy, and adversarial losses scale their
gradient reversal with the fraction of training done. Both are plain functions the strategy hands over; these
callbacks call them at the right moments, so that no strategy imports the trainer library.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from torch import nn

log = logging.getLogger("transferkit")


class ProgressHook(pl.Callback):
    """Calls ``on_progress(fraction)`` before every training batch, ``fraction`` = optimiser steps done / planned
    (in ``[0, 1]``)."""

    def __init__(self, on_progress: Callable[[float], None]) -> None:
        self.on_progress = on_progress

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        total = max(1, int(trainer.estimated_stepping_batches))
        self.on_progress(min(1.0, trainer.global_step / total))


class ScoredCheckpoint(pl.Callback):
    """After every training epoch, ``score(model)`` (higher is better; the model is in eval mode meanwhile); the
    weights of the best-scoring epoch are kept in memory (a copy of the state dict on the CPU).

    After the run, :meth:`restore` loads them into the model. ``history`` holds ``(epoch, score)`` pairs.
    """

    def __init__(self, score: Callable[[nn.Module], float], name: str = "score") -> None:
        self.score = score
        self.name = name
        self.history: list[tuple[int, float]] = []
        self.best_epoch: int | None = None
        self.best_score: float | None = None
        self._best_state: dict[str, torch.Tensor] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = pl_module.model
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            with torch.no_grad():
                value = float(self.score(model))
        finally:
            for module, flag in modes:
                module.training = flag
        epoch = trainer.current_epoch
        self.history.append((epoch, value))
        pl_module.log(f"val_{self.name}", value, on_epoch=True)
        if self.best_score is None or value > self.best_score:
            self.best_score, self.best_epoch = value, epoch
            self._best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (nothing happens if no epoch ran)."""
        if self._best_state is not None:
            model.load_state_dict(copy.copy(self._best_state))
