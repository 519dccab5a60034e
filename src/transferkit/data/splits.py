"""Stratified splits and per-class sampling, seeded."""

from __future__ import annotations

import warnings

import numpy as np

from transferkit.data.dataset import Dataset, sort_labels
from transferkit.data.validation import DataWarning
from transferkit.errors import ConfigError, DataError


def _strata(dataset: Dataset) -> np.ndarray:
    """The group of each example that splits keep in proportion: its class, or what the dataset's task says
    (a quantile bin of a regression target, the rarest label of a label set)."""
    from transferkit.tasks import get_task

    return np.asarray(get_task(dataset.task).strata(dataset.labels), dtype=object)


def stratified_split(dataset: Dataset, fraction: float, seed: int, names: tuple[str, str] = ("train", "held-out")) -> tuple[Dataset, Dataset]:
    """Split into two parts, ``fraction`` of each class going to the second (at least one per class when possible).

    Classes with a single example stay entirely in the first part. Exact copies of an example (the same image
    bytes or text, the same label) go to the same part, so that the held-out part does not test on training
    examples; without copies the split is the plain seeded stratified one.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"split fraction must be between 0 and 1 (exclusive); got {fraction}.")
    labels = _strata(dataset)
    keys = dataset.item_keys()
    rng = np.random.default_rng(seed)
    first, second = [], []
    for name in sort_labels(labels.tolist()):
        idx = np.flatnonzero(labels == name)
        rng.shuffle(idx)
        n_second = int(round(len(idx) * fraction))
        n_second = min(max(n_second, 1), len(idx) - 1) if len(idx) > 1 else 0
        copies: dict[str, list[int]] = {}
        for i in idx:
            copies.setdefault(keys[i], []).append(int(i))
        groups = [copies[keys[i]] for i in idx if copies[keys[i]][0] == i]  # in the shuffled order of their first
        if len(groups) == len(idx):  # no copies: the plain split
            second.extend(idx[:n_second])
            first.extend(idx[n_second:])
            continue
        class_first, class_second = [], []
        for position, group in enumerate(groups):
            # the last group always stays in the first part, so that the class is trained on
            if len(class_second) < n_second and position < len(groups) - 1:
                class_second.extend(group)
            else:
                class_first.extend(group)
        first.extend(class_first)
        second.extend(class_second)
    if not second:
        raise DataError(f"{dataset.origin}: too few examples to hold out a {names[1]} split; give one explicitly.")
    return (
        dataset.subset(np.sort(first), origin=f"{dataset.origin} ({names[0]} split)"),
        dataset.subset(np.sort(second), origin=f"{dataset.origin} ({names[1]} split)"),
    )


def sample_per_class(dataset: Dataset, shots: int, seed: int) -> Dataset:
    """Keep at most ``shots`` examples of each class (few-shot experiments); the choice is seeded.

    Classes with fewer examples keep all of them, with a warning that names them and their real counts; the
    sample's ``origin`` states the counts actually kept.
    """
    if shots < 1:
        raise ConfigError(f"shots (examples per class) must be at least 1; got {shots}.")
    labels = _strata(dataset)
    rng = np.random.default_rng(seed)
    keep = []
    kept: dict[str, int] = {}
    for name in sort_labels(labels.tolist()):
        idx = np.flatnonzero(labels == name)
        chosen = rng.choice(idx, size=min(shots, len(idx)), replace=False)
        keep.extend(chosen)
        kept[name] = len(chosen)
    short = {name: n for name, n in kept.items() if n < shots}
    if short:
        listed = ", ".join(f"'{name}' {n}" for name, n in list(short.items())[:5]) + (" ..." if len(short) > 5 else "")
        every = "every class has" if len(short) == len(kept) else f"{len(short)} of {len(kept)} classes have"
        warnings.warn(f"--shots {shots}: {every} fewer examples ({listed}); all of their examples are used.",
                      DataWarning, stacklevel=2)
    counts = sorted(set(kept.values()))
    if len(counts) == 1:
        described = f"{counts[0]} per class"
    else:
        described = (f"at most {shots} per class: " + ", ".join(f"{name} {n}" for name, n in list(kept.items())[:5])
                     + (" ..." if len(kept) > 5 else ""))
    return dataset.subset(np.sort(np.asarray(keep)), origin=f"{dataset.origin} ({described})")
