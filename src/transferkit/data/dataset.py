"""The in-memory description of a labelled (or unlabelled) dataset.

A :class:`Dataset` holds *references* to the examples (image paths, an image array, or texts) and their labels;
images are decoded only when a backbone needs them. Every example has a human-readable ``row_id`` (a file path or
``table.csv row 12``) so that errors and reports can name it.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from transferkit.errors import DataError
from transferkit.modalities import MODALITIES, get_modality, modality_names
from transferkit.tasks import DEFAULT_TASK

def sort_labels(labels: Sequence[str]) -> list[str]:
    """Class names in a stable order: numerically when every name is a number, else alphabetically."""
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def label_key(label: str) -> str:
    """What two spellings of one label share: Unicode NFKC form, case folded, whitespace runs as one space."""
    return " ".join(unicodedata.normalize("NFKC", label).casefold().split())



@dataclass
class Dataset:
    """Examples of one modality with optional string labels.

    ``items`` is a list of image paths (``str``), a ``uint8`` array of images shaped ``(N, H, W)`` or
    ``(N, H, W, C)``, or a list of texts. ``labels`` is ``None`` for unlabelled data.
    """

    modality: str  # a key of transferkit.modalities.MODALITIES ("image", "text")
    items: Sequence | np.ndarray
    labels: list[str] | None
    origin: str
    row_ids: list[str] = field(default_factory=list)
    _keys: list[str] | None = field(default=None, repr=False, compare=False)
    #: The task whose reader gave ``labels`` (:mod:`transferkit.tasks`): splits, folds and the label checks ask it.
    task: str = DEFAULT_TASK

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise DataError(f"{self.origin}: unknown modality {self.modality!r}; a dataset holds one of "
                            f"{', '.join(modality_names())} (transferkit.modalities).")
        if not self.row_ids:
            self.row_ids = [f"{self.origin} item {i}" for i in range(len(self.items))]
        if self.labels is not None and len(self.labels) != len(self.items):
            raise DataError(
                f"{self.origin}: {len(self.items)} examples but {len(self.labels)} labels; give one label per example."
            )

    def __len__(self) -> int:
        return len(self.items)

    @property
    def is_labelled(self) -> bool:
        return self.labels is not None

    @property
    def classes(self) -> list[str]:
        """Sorted class names present in this dataset."""
        if self.labels is None:
            return []
        return sort_labels(self.labels)

    @property
    def from_files(self) -> bool:
        """Whether the items are file paths (read and hashed from disk), as the modality stores them."""
        return get_modality(self.modality).items_are_files and not isinstance(self.items, np.ndarray)

    def label_array(self, classes: Sequence[str], normalize: bool = False) -> np.ndarray:
        """Labels as integer indices into ``classes`` (shape ``(N,)``, int64).

        A label that is not in ``classes`` is an error naming its row; when it differs from a class only in case,
        whitespace or Unicode form the error says so, and with ``normalize`` it counts as that class.
        """
        if self.labels is None:
            raise DataError(f"{self.origin} has no labels; this step needs labelled data.")
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted(set(self.labels) - set(index))
        if unknown:
            by_key = {label_key(name): i for name, i in index.items()}
            variants = {label: by_key[label_key(label)] for label in unknown if label_key(label) in by_key}
            if variants and normalize:
                index.update(variants)
                unknown = [label for label in unknown if label not in variants]
            elif variants:
                label, i = next(iter(variants.items()))
                row = self.row_ids[self.labels.index(label)]
                raise DataError(
                    f"{row}: label '{label}' is spelled '{classes[i]}' in the model's classes; {len(variants)} "
                    f"label(s) differ from a class only in case, whitespace or Unicode form. Spell them as the "
                    "classes are spelled, or pass --normalize-labels (normalize_labels=True)."
                )
        if unknown:
            row = self.row_ids[self.labels.index(unknown[0])]
            raise DataError(
                f"{self.origin}: labels {unknown[:5]} were not seen in training (known: {list(classes)[:10]}; first "
                f"at {row}). Remove those rows or add examples of those classes to the training data."
            )
        return np.fromiter((index[label] for label in self.labels), dtype=np.int64, count=len(self.labels))

    def subset(self, indices: Sequence[int] | np.ndarray, origin: str | None = None) -> "Dataset":
        indices = np.asarray(indices, dtype=np.int64)
        if isinstance(self.items, np.ndarray):
            items: Sequence | np.ndarray = self.items[indices]
        else:
            items = [self.items[i] for i in indices]
        return Dataset(
            modality=self.modality,
            items=items,
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            origin=origin or self.origin,
            row_ids=[self.row_ids[i] for i in indices],
            _keys=None if self._keys is None else [self._keys[i] for i in indices],
            task=self.task,
        )

    def item_keys(self) -> list[str]:
        """A content hash per example (hex), the unit of the feature cache: equal content, equal key."""
        if self._keys is None:
            self._keys = self._compute_item_keys()
        return self._keys

    def _compute_item_keys(self) -> list[str]:
        if not isinstance(self.items, np.ndarray):
            return get_modality(self.modality).item_keys(self.items)
        keys = []
        for item in self.items:
            digest = hashlib.blake2b(np.ascontiguousarray(item).tobytes(), digest_size=16)
            digest.update(str(item.shape).encode())
            keys.append(digest.hexdigest())
        return keys

    def fingerprint(self) -> str:
        """One hash for the whole dataset (contents and labels, in order)."""
        digest = hashlib.blake2b(digest_size=16)
        for key in self.item_keys():
            digest.update(key.encode())
        for label in self.labels or []:
            digest.update(b"\x00" + label.encode())
        return digest.hexdigest()


def file_digest(path: str) -> str:
    """The content hash (hex) of one file; an unreadable file is a DataError naming it."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}). Check the file exists and is readable.") from exc
    return digest.hexdigest()


def concat(datasets: Sequence[Dataset], origin: str) -> Dataset:
    """Join datasets of one modality (used to fingerprint several splits together)."""
    first = datasets[0]
    if any(d.modality != first.modality for d in datasets):
        raise DataError(f"{origin}: cannot join image and text data.")
    if isinstance(first.items, np.ndarray):
        items: Sequence | np.ndarray = np.concatenate([np.asarray(d.items) for d in datasets])
    else:
        items = [item for d in datasets for item in d.items]
    labels = None if any(d.labels is None for d in datasets) else [lab for d in datasets for lab in d.labels]
    return Dataset(first.modality, items, labels, origin, [r for d in datasets for r in d.row_ids], task=first.task)

