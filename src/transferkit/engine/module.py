"""The LightningModule every strategy trains through: a model, a plan, an optimiser and a schedule."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn import functional as F

from transferkit.engine.freezing import keep_frozen_batchnorm_eval
from transferkit.engine.loss_watch import LossWatch
from transferkit.engine.plan import ParamGroup, TrainingPlan
from transferkit.engine.rng import collect_rng_states, restore_rng_states
from transferkit.engine.settings import EngineSettings
from transferkit.tasks import get_task


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.01) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def optimizer_groups(groups: list[ParamGroup], weight_decay: float) -> list[dict[str, Any]]:
    """Torch optimiser groups from plan groups; biases and normalisation weights (1-D tensors) get no weight decay."""
    out = []
    for group in groups:
        decay = group.weight_decay if group.weight_decay is not None else weight_decay
        matrices = [p for p in group.params if p.ndim > 1]
        vectors = [p for p in group.params if p.ndim <= 1]
        if matrices:
            out.append({"params": matrices, "lr": group.lr, "weight_decay": decay, "name": group.name, **group.extra})
        if vectors:
            out.append({"params": vectors, "lr": group.lr, "weight_decay": 0.0, "name": f"{group.name}.no_decay",
                        **group.extra})
    return out


#: AdamW moves each weight by about the learning rate per step; above this, training all but surely diverges.
MAX_SENSIBLE_LR = 1.0


def warn_about_learning_rates(groups: list[dict[str, Any]], run_name: str) -> None:
    """One warning naming the optimiser groups whose learning rate is above :data:`MAX_SENSIBLE_LR`."""
    high = {g["name"].removesuffix(".no_decay"): g["lr"] for g in groups if g["lr"] > MAX_SENSIBLE_LR}
    if high:
        import warnings

        listed = ", ".join(f"{name} {lr:g}" for name, lr in high.items())
        warnings.warn(f"{run_name}: learning rate far above the range AdamW trains in (about 1e-5 to 1e-2): {listed}; "
                      "the run will probably diverge. Lower --lr (and --head-lr).", stacklevel=2)


class AdaptationModule(pl.LightningModule):
    """Trains ``model`` (inputs -> logits) by the loss terms of ``plan``; validates accuracy and cross-entropy."""

    def __init__(self, model: nn.Module, plan: TrainingPlan, settings: EngineSettings) -> None:
        super().__init__()
        self.model = model
        self.plan = plan
        self.settings = settings
        self._sync = False
        self._sums: dict[str, torch.Tensor | float] = {}
        self._count = 0
        self._val_sums: dict[str, torch.Tensor] = {}
        self.loss_watch = LossWatch(settings.run_name, settings.lr, window=settings.log_every_n_steps)

    def train(self, mode: bool = True) -> "AdaptationModule":
        super().train(mode)
        if mode:
            keep_frozen_batchnorm_eval(self.model, self.plan.batchnorm_eval)
        return self

    def setup(self, stage: str) -> None:
        self._sync = self.trainer.world_size > 1

    def on_train_epoch_start(self) -> None:
        if self.plan.changes_trainable:
            self.plan.on_epoch_start(self.model, self.current_epoch)
            self.model.train()
        keep_frozen_batchnorm_eval(self.model, self.plan.batchnorm_eval)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["transferkit_rng"] = collect_rng_states()
        checkpoint["transferkit_loss_watch"] = self.loss_watch.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "transferkit_rng" in checkpoint:
            restore_rng_states(checkpoint["transferkit_rng"])
        if "transferkit_loss_watch" in checkpoint:
            self.loss_watch.load_state_dict(checkpoint["transferkit_loss_watch"])

    def forward(self, inputs: Any) -> torch.Tensor:
        return self.model(inputs)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        terms, size = self.plan.batch_terms(self.model, batch)
        loss = next(iter(terms.values())) if len(terms) == 1 else sum(terms.values())
        # Sums kept as tensors and logged once per epoch: Lightning's per-call logging costs about a millisecond,
        # which a small model's step would feel; the step value is logged every `log_every_n_steps` batches.
        for name, value in (("loss", loss), *terms.items()) if len(terms) > 1 else (("loss", loss),):
            self._sums[name] = self._sums.get(name, 0.0) + value.detach() * size
        self._count += size
        if batch_idx % self.settings.log_every_n_steps == 0:
            self.log("train_loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=size)
        # A NaN or infinite loss stops the run here, before the optimiser spreads it into the weights.
        self.loss_watch.observe(loss, self.current_epoch, batch_idx, every_step=self._check_every_step(loss),
                                reduce=self._mean_over_processes if self._sync else None)
        return loss

    def _check_every_step(self, loss: torch.Tensor) -> bool:
        """Reading the loss every step is free on a single CPU process; elsewhere it would stall the device."""
        return not self._sync and loss.device.type == "cpu"

    def _mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(value, reduce_op="mean")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx + 1 >= self.trainer.num_training_batches:  # the epoch's last window, before validation
            self.loss_watch.check(self.current_epoch, batch_idx,
                                  reduce=self._mean_over_processes if self._sync else None)

    def epoch_train_loss(self) -> float | None:
        """Mean training loss of the epoch so far (weighted by batch size)."""
        return float(self._sums["loss"] / self._count) if self._count else None

    def on_train_epoch_end(self) -> None:
        for name, total in self._sums.items():
            key = "train_loss_epoch" if name == "loss" else f"train_{name}"
            self.log(key, total / max(self._count, 1), on_step=False, on_epoch=True)
        self._sums, self._count = {}, 0

    def validation_step(self, batch: tuple[Any, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs, targets = batch
        if self.plan.tasks is not None:
            self._task_validation_step(inputs, targets, self.plan.tasks[dataloader_idx])
            return
        # the task's validation loss and score; the score is logged as val_accuracy, the name the callbacks,
        # checkpoints and reports of every run use for "higher is better"
        figures = get_task(self.plan.task_type).validation_figures(self.model(inputs), targets,
                                                                   head=getattr(self.model, "head", None))
        size = len(targets)
        self.log("val_loss", figures["loss"], on_epoch=True, sync_dist=self._sync, batch_size=size)
        self.log("val_accuracy", figures["score"], on_epoch=True, prog_bar=True, sync_dist=self._sync, batch_size=size)

    def _task_validation_step(self, inputs: Any, targets: torch.Tensor, task: str) -> None:
        logits = self.plan.task_logits(self.model, inputs, task).float()
        sums = torch.stack([F.cross_entropy(logits, targets, reduction="sum"),
                            (logits.argmax(dim=1) == targets).sum().float(),
                            torch.tensor(float(len(targets)), device=logits.device)]).detach()
        self._val_sums[task] = self._val_sums[task] + sums if task in self._val_sums else sums

    def on_validation_epoch_start(self) -> None:
        self._val_sums = {}

    def on_validation_epoch_end(self) -> None:
        """Multi-task plans: ``val_loss_<task>`` and ``val_accuracy_<task>`` per task, and their means as
        ``val_loss`` and ``val_accuracy`` (what early stopping and checkpoint selection monitor)."""
        if self.plan.tasks is None or not self._val_sums:
            return
        losses, accuracies = [], []
        for task in self.plan.tasks:
            sums = self._val_sums[task]
            if self._sync:
                sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
            loss, correct, count = (float(v) for v in sums)
            losses.append(loss / max(count, 1.0))
            accuracies.append(correct / max(count, 1.0))
            self.log(f"val_loss_{task}", losses[-1], on_epoch=True)
            self.log(f"val_accuracy_{task}", accuracies[-1], on_epoch=True)
        self.log("val_loss", sum(losses) / len(losses), on_epoch=True)
        self.log("val_accuracy", sum(accuracies) / len(accuracies), on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        groups = optimizer_groups(self.plan.param_groups(self.model, self.settings.lr), self.settings.weight_decay)
        warn_about_learning_rates(groups, self.settings.run_name)
        optimizer = torch.optim.AdamW(groups, lr=self.settings.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(round(self.settings.warmup_fraction * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
