"""Watching the training loss: a NaN or infinite loss stops the run at once, a loss that climbs far above where it
started gives one warning.

A run whose loss went NaN keeps training on NaN weights, and its "best" checkpoint is whatever the broken network
scored on validation data; saving it would hand the user a model that predicts NaN. The usual cause is an option
(a learning rate too high for the model, fp16 overflow), so the error is a :class:`~transferkit.errors.ConfigError`
that says which.

Cost: on a single CPU process each step's loss is checked as it comes (no synchronisation to pay). On a GPU, or
with several processes, reading a value every step would stall the device queue, so the loss is summed on the
device and read once per window of steps (``window``, the engine's logging interval) and at the end of each epoch,
before validation and checkpointing; with several processes the window's mean is averaged over them, so that every
process stops at the same step.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch

from transferkit.errors import TrainingDivergedError

#: A window's mean loss this many times the first step's (and at least GROWTH_FLOOR above it) is divergence.
GROWTH_FACTOR = 10.0
#: ... and at least this much above it (nats for a cross-entropy), so that a small starting loss (a probed head)
#: does not warn on ordinary noise.
GROWTH_FLOOR = 2.0


class LossWatch:
    """Checks the training loss of one run (see the module docstring); ``state_dict`` travels in checkpoints, so a
    resumed run compares with the same starting loss."""

    def __init__(self, run_name: str, lr: float, window: int = 10) -> None:
        self.run_name = run_name
        self.lr = lr
        self.window = max(1, int(window))
        self.start: float | None = None
        self.warned = False
        self._sum: torch.Tensor | None = None
        self._count = 0
        self._first_batch = 0

    def observe(self, loss: torch.Tensor, epoch: int, batch: int, *, every_step: bool,
                reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Add one training step's loss (epoch and batch counted from 0); check it now when ``every_step``, else
        when the window is full."""
        value = loss.detach().float()
        if self.start is None:  # the loss before any update: what later windows are compared with (read once)
            first = float(value)
            if not math.isfinite(first):
                raise self._diverged(first, epoch, f"batch {batch + 1}", before_update=epoch == 0 and batch == 0)
            self.start = first
        elif every_step and not bool(torch.isfinite(value)):
            raise self._diverged(float(value), epoch, f"batch {batch + 1}", before_update=False)
        if self._count == 0:
            self._first_batch = batch
        self._sum = value if self._sum is None else self._sum + value
        self._count += 1
        if self._count >= self.window:
            self.check(epoch, batch, reduce=reduce)

    def check(self, epoch: int, batch: int, *, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Check the steps added since the last check (a window ending at ``batch``); at the end of every epoch."""
        if self._sum is None:
            return
        mean = self._sum / self._count
        if reduce is not None:
            mean = reduce(mean)
        value = float(mean)
        first = self._first_batch
        self._sum, self._count = None, 0
        if not math.isfinite(value):
            where = f"batch {batch + 1}" if first == batch else f"batches {first + 1}-{batch + 1}"
            raise self._diverged(value, epoch, where, before_update=False)
        if self.start is not None and not self.warned and value - self.start > max((GROWTH_FACTOR - 1.0) * abs(self.start), GROWTH_FLOOR):
            self.warned = True
            warnings.warn(
                f"{self.run_name}: the training loss rose from {self.start:.4g} to {value:.4g} (epoch {epoch + 1}, "
                f"batch {batch + 1}): training is diverging. The learning rate ({self.lr:g}) is probably too high for "
                "this model; lower --lr (and --head-lr), e.g. ten times.", stacklevel=2)

    def _diverged(self, value: float, epoch: int, where: str, *, before_update: bool) -> TrainingDivergedError:
        head = f"{self.run_name}: the training loss became {value} at epoch {epoch + 1} ({where}); training stopped " \
               "and no model was saved."
        if before_update:
            cause = ("It was not finite before any update, so the learning rate is not the cause: the inputs or the "
                     "backbone's weights hold NaN or infinite values, or half precision overflowed. Check the data "
                     "and --init-from, or train with --precision 32.")
        else:
            cause = (f"The usual cause is a learning rate too high for this model (lr {self.lr:g}): lower --lr (and "
                     f"--head-lr), e.g. to {self.lr / 10:g}; with --precision 16-mixed, bf16-mixed or 32 also avoids "
                     "overflow. Start the run again without --resume.")
        return TrainingDivergedError(f"{head} {cause}")

    def state_dict(self) -> dict[str, Any]:
        return {"start": self.start, "warned": self.warned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start = state.get("start")
        self.warned = bool(state.get("warned", False))
