"""Train a small MLP through the engine on 1 or 2 CPU processes; the main process saves the weights.

Usage: python ddp_train.py OUT.pt DEVICES WORK_DIR. Run as a script (DDP re-launches this file for its other
process), hence the ``__main__`` guard.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn


def main(out: str, devices: int, work_dir: str) -> None:
    from transferkit.engine.data import LabelledCollate, LabelledExamples
    from transferkit.engine.plan import TrainingPlan
    from transferkit.engine.settings import EngineSettings
    from transferkit.engine.trainer import run_training

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 6)).astype(np.float32)
    y = ((X[:, 0] - X[:, 2]) > 0).astype(np.int64)
    train = LabelledExamples(X[:128], y[:128], torch.from_numpy)
    val = LabelledExamples(X[128:], y[128:], torch.from_numpy)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))
    settings = EngineSettings(work_dir=work_dir, epochs=3, batch_size=16, lr=1e-2, patience=0, device="cpu",
                              devices=devices, distributed="ddp" if devices > 1 else "auto", tracking_uri="off",
                              progress=False)
    outcome = run_training(model, TrainingPlan(), train, val, settings, train_collate=LabelledCollate(torch.stack),
                           val_collate=LabelledCollate(torch.stack))
    if outcome.is_main_process:
        torch.save({"state": model.state_dict(), "world_size": outcome.world_size, "steps": outcome.global_step,
                    "best_epoch": outcome.best_epoch, "best_score": outcome.best_score}, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
