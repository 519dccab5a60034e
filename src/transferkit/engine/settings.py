"""How the engine runs: budget, optimiser, precision, stopping, checkpoints, logging, devices."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from transferkit.errors import ConfigError

PRECISIONS = ("auto", "32", "16-mixed", "bf16-mixed")
MONITORS = {"val_accuracy": "max", "val_loss": "min"}


@dataclass
class EngineSettings:
    """Settings of one training run (a plain dataclass; :class:`~transferkit.config.FitConfig` fills it).

    ``batch_size`` is the global batch: with ``devices = 2`` (or ``num_nodes = 2`` machines) each process sees half of it, so a run gives the same
    updates whatever the number of processes. ``work_dir`` holds ``checkpoints/`` (``last.ckpt`` for resuming,
    the best one for the result) and ``metrics.csv``; MLflow writes to ``tracking_uri`` (default: a SQLite file
    in ``work_dir``; ``"off"`` disables it), with ``log_params`` (the run's resolved options) as its parameters.
    """

    work_dir: Path
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    accumulate: int = 1
    precision: str = "auto"
    patience: int = 3
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    distributed: str = "auto"
    num_workers: int = 0
    resume: bool = False
    tracking_uri: str | None = None
    experiment: str = "transferkit"
    run_name: str = "fit"
    progress: bool = True
    log_every_n_steps: int = 10
    max_steps: int = -1
    keep_checkpoints: bool = False
    log_params: dict[str, Any] | None = None
    #: On the CPU, a batch whose activations would exceed this many bytes runs as micro-batches with accumulated
    #: gradients (:func:`transferkit.engine.memory.micro_batch_factor`); 0 turns it off.
    cpu_activation_budget_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        checks = [
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (0 < self.lr < math.inf, "lr", "a finite positive number"),
            (0 <= self.weight_decay < math.inf, "weight_decay", "a finite number, zero or more"),
            (0 <= self.warmup_fraction < 1, "warmup_fraction", "in [0, 1)"),
            (self.accumulate >= 1, "accumulate", "at least 1"),
            (self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}"),
            (self.patience >= 0, "patience", "zero (no early stopping) or more"),
            (self.monitor in MONITORS, "monitor", f"one of {', '.join(MONITORS)}"),
            (self.num_workers >= 0, "num_workers", "zero or more"),
            (self.num_nodes >= 1, "num_nodes", "at least 1"),
        ]
        for ok, option, expected in checks:
            if not ok:
                raise ConfigError(f"option '{option}' must be {expected}; got {getattr(self, option)!r}.")
        if isinstance(self.devices, int) and self.devices < 1:
            raise ConfigError(f"option 'devices' must be at least 1 (or 'auto'); got {self.devices}.")

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.ckpt"

    @property
    def metrics_csv(self) -> Path:
        return self.work_dir / "metrics.csv"

    @property
    def mlflow_uri(self) -> str | None:
        """The MLflow tracking URI in use, or ``None`` when tracking is off."""
        if self.tracking_uri is not None and self.tracking_uri.lower() in ("off", "none", ""):
            return None
        return self.tracking_uri or f"sqlite:///{(self.work_dir / 'mlflow.db').resolve()}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["work_dir"] = str(self.work_dir)
        data.pop("log_params", None)
        return data
