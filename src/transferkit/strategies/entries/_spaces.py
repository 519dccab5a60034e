"""Search-space pieces that several strategies' tune defaults share."""

from __future__ import annotations

from typing import Any


def common_space() -> dict[str, Any]:
    """Weight decay and augmentation: searched for every strategy that trains a network."""
    return {"weight_decay": {"low": 1e-4, "high": 1e-1, "log": True},
            "augment": {"choices": ["none", "light", "medium"]}}


def finetune_space() -> dict[str, Any]:
    """Learning rate and per-layer decay of fine-tuning, plus the common options."""
    return {"lr": {"low": 1e-5, "high": 1e-3, "log": True},
            "finetune.layer_lr_decay": {"low": 0.5, "high": 1.0}, **common_space()}
