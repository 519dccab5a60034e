"""Stratified splits and per-class sampling, seeded."""

from __future__ import annotations

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.errors import ConfigError, DataError


def stratified_split(dataset: Dataset, fraction: float, seed: int, names: tuple[str, str] = ("train", "held-out")) -> tuple[Dataset, Dataset]:
    """Split into two parts, ``fraction`` of each class going to the second (at least one per class when possible).

    Classes with a single example stay entirely in the first part.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"split fraction must be between 0 and 1 (exclusive); got {fraction}.")
    labels = np.asarray(dataset.labels)
    rng = np.random.default_rng(seed)
    first, second = [], []
    for name in dataset.classes:
        idx = np.flatnonzero(labels == name)
        rng.shuffle(idx)
        n_second = int(round(len(idx) * fraction))
        n_second = min(max(n_second, 1), len(idx) - 1) if len(idx) > 1 else 0
        second.extend(idx[:n_second])
        first.extend(idx[n_second:])
    if not second:
        raise DataError(f"{dataset.origin}: too few examples to hold out a {names[1]} split; give one explicitly.")
    return (
        dataset.subset(np.sort(first), origin=f"{dataset.origin} ({names[0]} split)"),
        dataset.subset(np.sort(second), origin=f"{dataset.origin} ({names[1]} split)"),
    )


def sample_per_class(dataset: Dataset, shots: int, seed: int) -> Dataset:
    """Keep at most ``shots`` examples of each class (few-shot experiments); the choice is seeded."""
    if shots < 1:
        raise ConfigError(f"shots (examples per class) must be at least 1; got {shots}.")
    labels = np.asarray(dataset.labels)
    rng = np.random.default_rng(seed)
    keep = []
    for name in dataset.classes:
        idx = np.flatnonzero(labels == name)
        keep.extend(rng.choice(idx, size=min(shots, len(idx)), replace=False))
    return dataset.subset(np.sort(np.asarray(keep)), origin=f"{dataset.origin} ({shots} per class)")
