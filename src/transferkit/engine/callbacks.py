"""Engine callbacks: an epoch-by-epoch record of the run (printed as plain log lines when not on a terminal)."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl

log = logging.getLogger("transferkit")


def _scalar(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class EpochRecorder(pl.Callback):
    """Keeps one row per finished epoch (losses, validation accuracy, learning rate, seconds); with ``echo``,
    logs each row as one line (progress for logs and CI, where a live bar would be noise)."""

    def __init__(self, run_name: str, echo: bool) -> None:
        self.run_name = run_name
        self.echo = echo
        self.history: list[dict[str, float | int | None]] = []
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint, so that a resumed run's history starts at its first epoch."""
        return {"history": [dict(row) for row in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(row) for row in state_dict.get("history", [])]

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the checkpoint of the epoch is written (checkpoint callbacks run last), so that it holds the row.
        if not trainer.sanity_checking:
            self._record(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # an epoch without validation (a run stopped in the middle of it)
            self._record(trainer, pl_module)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.history and self.history[-1]["epoch"] == trainer.current_epoch:
            return
        metrics = trainer.callback_metrics
        row: dict[str, float | int | None] = {"epoch": trainer.current_epoch}
        # the module logs its epoch loss after the callbacks' epoch-end hooks; ask it directly
        row["train_loss"] = pl_module.epoch_train_loss() if hasattr(pl_module, "epoch_train_loss") else None
        for key in ("val_loss", "val_accuracy"):
            row[key] = _scalar(metrics.get(key))
        for key in sorted(k for k in metrics if k.startswith(("val_loss_", "val_accuracy_"))):  # per task
            row[key] = _scalar(metrics[key])
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        row["lr"] = max((g["lr"] for g in optimizer.param_groups), default=None) if optimizer else None
        row["seconds"] = round(time.perf_counter() - self._start, 2)
        self.history.append(row)
        if self.echo and trainer.is_global_zero:
            parts = [f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",) and isinstance(v, float)]
            log.info("%s: epoch %d/%d  %s", self.run_name, trainer.current_epoch + 1, trainer.max_epochs,
                     "  ".join(parts))
