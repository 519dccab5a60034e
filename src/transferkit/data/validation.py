"""Checks that run before any long work: a run fails here, in seconds, rather than an hour into training."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Sequence

from transferkit.data.dataset import Dataset
from transferkit.errors import DataError
from transferkit.modalities import get_modality


class DataWarning(UserWarning):
    """Legal but suspicious data: a tiny class, duplicates across splits, ..."""


def check_modality(dataset: Dataset, wanted: str | None, model: str = "the model") -> None:
    """Image data for a text model (or the reverse) is a DataError naming both and what to give instead; checked
    before labels are compared, so the message is about the real mistake."""
    if wanted is None or wanted == dataset.modality:
        return
    raise DataError(f"{dataset.origin}: holds {dataset.modality} data, but {model} takes {wanted} input. "
                    f"Give it {get_modality(wanted).input_hint}.")


def validate_dataset(dataset: Dataset, *, role: str = "training", min_classes: int = 2) -> None:
    """Check one dataset: readable images, usable texts, enough classes (for training), no empty class."""
    if len(dataset) == 0:
        raise DataError(f"{dataset.origin}: the {role} data has no examples.")
    get_modality(dataset.modality).check_items(dataset)
    if dataset.labels is not None:
        warn_conflicting_duplicates(dataset)
    if dataset.labels is not None and role == "training":
        from transferkit.tasks import get_task

        get_task(dataset.task).check_training_labels(dataset, min_classes=min_classes)


def check_class_counts(dataset: Dataset, *, min_classes: int = 2) -> None:
    """Training data of a classifier: at least ``min_classes`` classes (else a DataError); a class with a single
    example is a warning."""
    counts = Counter(dataset.labels or [])
    if len(counts) < min_classes:
        raise DataError(
            f"{dataset.origin}: the training data has only {len(counts)} class ({', '.join(counts)}); "
            f"a classifier needs at least {min_classes}. Add examples of other classes."
        )
    tiny = sorted(name for name, n in counts.items() if n < 2)
    if tiny:
        warnings.warn(
            f"{dataset.origin}: class(es) {tiny} have a single example; results for them are unreliable.",
            DataWarning,
            stacklevel=4,
        )


def warn_conflicting_duplicates(dataset: Dataset) -> None:
    """One warning when examples with identical content (the same image bytes, the same text) carry different
    labels, naming both rows of the first few such pairs: no model can get both right, and one label is wrong."""
    first: dict[str, int] = {}
    conflicts: list[tuple[int, int]] = []
    labels = dataset.labels or []
    for index, key in enumerate(dataset.item_keys()):
        seen = first.setdefault(key, index)
        if seen != index and labels[seen] != labels[index]:
            conflicts.append((seen, index))
    if not conflicts:
        return
    shown = "; ".join(f"{dataset.row_ids[a]} labelled '{labels[a]}' and {dataset.row_ids[b]} labelled '{labels[b]}'"
                      for a, b in conflicts[:3])
    more = f" (and {len(conflicts) - 3} more)" if len(conflicts) > 3 else ""
    warnings.warn(
        f"{dataset.origin}: {len(conflicts)} example(s) have identical content but a different label than an earlier "
        f"copy: {shown}{more}. No model can get both right; remove the wrong copy or correct its label.",
        DataWarning,
        stacklevel=3,
    )


def validate_splits(train: Dataset, others: Sequence[Dataset], *, normalize_labels: bool = False) -> None:
    """Labels in validation/test data must exist in training; duplicates across splits are warned about.

    A label spelled differently from the training data only in case, whitespace or Unicode form is an error that
    says so, or, with ``normalize_labels``, takes the training data's spelling (``other.labels`` is changed).
    """
    from transferkit.tasks import get_task

    train_keys = None
    for other in others:
        if other.modality != train.modality:
            raise DataError(
                f"{other.origin}: holds {other.modality} data but the training data ({train.origin}) holds "
                f"{train.modality} data."
            )
        if other.labels is not None:
            get_task(train.task).check_split_labels(train, other, normalize=normalize_labels)
        if train_keys is None:
            train_keys = {}
            for row, key in zip(train.row_ids, train.item_keys()):
                train_keys.setdefault(key, row)
        duplicates = [(row, train_keys[key]) for row, key in zip(other.row_ids, other.item_keys()) if key in train_keys]
        if duplicates:
            warnings.warn(
                f"{other.origin}: {len(duplicates)} example(s) also appear in the training data (first: "
                f"{duplicates[0][0]}, the same as {duplicates[0][1]}); the measured scores will be optimistic. "
                "Remove the copies from one side.",
                DataWarning,
                stacklevel=2,
            )


def check_unseen_labels(train: Dataset, other: Dataset, *, normalize_labels: bool = False) -> None:
    """Every class of ``other`` appears in ``train``: an unseen one is a DataError naming its first row; one spelled
    differently only in case, whitespace or Unicode form is an error that says so, or, with ``normalize_labels``,
    takes the training data's spelling (``other.labels`` is changed)."""
    from transferkit.data.dataset import label_key

    known = set(train.labels or [])
    spelled = {label_key(label): label for label in known}
    if other.labels is not None:
        unseen = sorted(set(other.labels) - known)
        variants = {label: spelled[label_key(label)] for label in unseen if label_key(label) in spelled}
        if variants and normalize_labels:
            other.labels = [variants.get(label, label) for label in other.labels]
            unseen = [label for label in unseen if label not in variants]
        elif variants:
            label, training = next(iter(variants.items()))
            row = next(r for r, lab in zip(other.row_ids, other.labels) if lab == label)
            raise DataError(
                f"{row}: label '{label}' is spelled '{training}' in the training data ({train.origin}); "
                f"{len(variants)} label(s) differ only in case, whitespace or Unicode form "
                f"({', '.join(repr(v) for v in list(variants)[:5])}). Spell them as in the training data, or pass "
                "--normalize-labels (normalize_labels=True)."
            )
        if unseen:
            rows = [row for row, label in zip(other.row_ids, other.labels) if label in unseen]
            raise DataError(
                f"{rows[0]}: label '{unseen[0]}' never appears in the training data ({train.origin}); "
                f"{len(rows)} row(s) have unseen labels {unseen[:5]}. Add training examples of those classes "
                "or remove the rows."
            )
