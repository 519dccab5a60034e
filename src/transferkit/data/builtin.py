"""Readers for the public datasets that the demo, tests and benchmarks use.

They read files that arrive with system or Python packages (no download): Fashion-MNIST (Debian's
``dataset-fashion-mnist``), the VADER sentiment snippets (from the ``vaderSentiment`` source archive) and
scikit-learn's digits. The folder holding them is found through ``TRANSFERKIT_DATASETS``, then a ``shared/datasets``
folder beside the working directory or the source checkout, then Debian's install location.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from transferkit.data.dataset import Dataset
from transferkit.data.sources import from_arrays
from transferkit.errors import DataNotFoundError

FASHION_MNIST_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)
VADER_DOMAINS = {
    "tweets": "tweets_GroundTruth.txt",
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}


def datasets_dir() -> Path:
    """The folder of shared datasets, or a DataNotFoundError saying how to point at it."""
    candidates = []
    if os.environ.get("TRANSFERKIT_DATASETS"):
        candidates.append(Path(os.environ["TRANSFERKIT_DATASETS"]))
    for base in (Path.cwd(), *Path.cwd().parents, Path(__file__).resolve().parents[3]):
        candidates.extend([base / "shared" / "datasets", base.parent / "shared" / "datasets"])
    for candidate in candidates:
        if (candidate / "README.md").is_file() or (candidate / "fashion-mnist").is_dir():
            return candidate
    raise DataNotFoundError(
        "the shared datasets folder was not found. Set TRANSFERKIT_DATASETS to the folder that holds "
        "fashion-mnist/ and vader/ (for example ../shared/datasets)."
    )


def _fashion_dir() -> Path:
    for candidate in (datasets_dir_or_none(), Path("/usr/share/dataset-fashion-mnist")):
        if candidate is not None:
            folder = candidate / "fashion-mnist" if (candidate / "fashion-mnist").is_dir() else candidate
            if (folder / "train-images-idx3-ubyte.gz").is_file():
                return folder
    raise DataNotFoundError(
        "Fashion-MNIST files (train-images-idx3-ubyte.gz, ...) were not found. Install Debian's "
        "dataset-fashion-mnist or set TRANSFERKIT_DATASETS to a folder holding fashion-mnist/."
    )


def datasets_dir_or_none() -> Path | None:
    try:
        return datasets_dir()
    except DataNotFoundError:
        return None


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(split: str = "train") -> Dataset:
    """Fashion-MNIST as 28x28 greyscale uint8 images with named classes (60,000 train / 10,000 test)."""
    prefix = {"train": "train", "test": "t10k"}[split]
    folder = _fashion_dir()
    images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    names = [FASHION_MNIST_CLASSES[i] for i in labels]
    return from_arrays(images, names, origin=f"fashion-mnist/{split}")


def load_vader(domain: str, min_abs_valence: float = 0.5) -> Dataset:
    """One VADER domain as a binary sentiment task: rows with ``|valence| < min_abs_valence`` dropped,
    the sign of the mean human rating as the label (``negative`` / ``positive``)."""
    if domain not in VADER_DOMAINS:
        raise DataNotFoundError(f"unknown VADER domain '{domain}'; choose from {sorted(VADER_DOMAINS)}.")
    path = datasets_dir() / "vader" / VADER_DOMAINS[domain]
    texts, labels = [], []
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            valence = float(parts[1])
            text = "\t".join(parts[2:]).strip()
            if abs(valence) < min_abs_valence or not text:
                continue
            texts.append(text)
            labels.append("positive" if valence > 0 else "negative")
    return from_arrays(texts, labels, origin=f"vader/{domain}")


def load_vader_ratings(domain: str) -> Dataset:
    """One VADER domain as a regression task: every snippet with its mean human sentiment rating (-4 to +4, the
    mean of 20 raters) as the target."""
    if domain not in VADER_DOMAINS:
        raise DataNotFoundError(f"unknown VADER domain '{domain}'; choose from {sorted(VADER_DOMAINS)}.")
    path = datasets_dir() / "vader" / VADER_DOMAINS[domain]
    texts, ratings = [], []
    with open(path, encoding="latin-1") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            text = "\t".join(parts[2:]).strip() if len(parts) >= 3 else ""
            if text:
                texts.append(text)
                ratings.append(float(parts[1]))
    return from_arrays(texts, ratings, origin=f"vader/{domain} ratings", task="regression")


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits, rescaled to 0..255 uint8 (the negative-transfer example)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images / 16.0 * 255.0).astype(np.uint8)
    return from_arrays(images, [str(t) for t in bunch.target], origin="sklearn-digits")
