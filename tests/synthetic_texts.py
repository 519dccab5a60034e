"""Synthetic labelled texts of any size: each class has its own words, mixed with words common to all classes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

CLASSES = ("alpha", "beta", "gamma")


def synthetic_texts(per_class: int, seed: int = 0, classes=CLASSES) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    common = [f"word{i}" for i in range(40)]
    texts, labels = [], []
    for name in classes:
        own = [f"{name}{i}" for i in range(25)]
        for _ in range(per_class):
            texts.append(" ".join([*rng.choice(own, 2), *rng.choice(common, 5)]))
            labels.append(name)
    return texts, labels


def synthetic_dataset(per_class: int, seed: int = 0):
    from transferkit.data.sources import from_arrays

    texts, labels = synthetic_texts(per_class, seed)
    return from_arrays(texts, labels, origin=f"synthetic texts ({per_class} per class)")


def write_synthetic_csv(path: Path, per_class: int, seed: int = 0) -> Path:
    texts, labels = synthetic_texts(per_class, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path
