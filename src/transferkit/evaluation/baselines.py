"""Baselines that run beside every result on the same split, so that "transfer helped" can be checked.

- ``raw``: the same linear probe on the raw input: pixels for images (every image resized to 32x32; image arrays up
  to that size kept as they are), TF-IDF word uni- and bi-grams for text. With few labels and simple images this is
  hard to beat (see the sklearn-digits example).
- ``scratch``: the same architecture from random weights, trained by the engine for the same budget (epochs,
  batch, augmentation, early stopping) as the run (:mod:`transferkit.evaluation.scratch`). On by default for the
  training strategies when the training data is small (it doubles the training time); a run lists the baselines
  that did not run and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from transferkit.data.dataset import Dataset

RAW_IMAGE_SIDE = 32


class RawInputEncoder:
    """Dataset -> a feature matrix of raw inputs (dense pixels, or sparse TF-IDF). ``fit`` learns the vocabulary
    for text and the pixel grid for images.

    Images of every size, aspect ratio and colour mode give vectors of one width: each is decoded upright as RGB
    (see :func:`transferkit.data.images.to_rgb`) and resized to ``size_`` (width, height): ``image_side`` x
    ``image_side`` pixels, or the arrays' own size when ``fit`` saw an image array no larger than that (8x8 digits
    stay 64 pixels). Greyscale arrays ``(N, H, W)`` stay one channel (``grey_``).
    """

    def __init__(self, image_side: int = RAW_IMAGE_SIDE) -> None:
        self.image_side = image_side

    def fit(self, dataset: Dataset) -> "RawInputEncoder":
        self.modality_ = dataset.modality
        if dataset.modality == "text":
            from sklearn.feature_extraction.text import TfidfVectorizer

            self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=100_000)
            self.vectorizer_.fit(list(dataset.items))
        else:
            arrays = isinstance(dataset.items, np.ndarray)
            self.grey_ = arrays and dataset.items.ndim == 3
            height, width = (dataset.items.shape[1:3] if arrays else (self.image_side, self.image_side))
            if max(height, width) > self.image_side:
                height = width = self.image_side
            self.size_ = (int(width), int(height))
        return self

    def transform(self, dataset: Dataset):
        if self.modality_ == "text":
            return self.vectorizer_.transform(list(dataset.items))
        return np.stack([self._pixels(item) for item in dataset.items])

    def fit_transform(self, dataset: Dataset):
        return self.fit(dataset).transform(dataset)

    def _pixels(self, item: Any) -> np.ndarray:
        from PIL import Image

        from transferkit.backbones.vision import load_image_item

        if isinstance(item, np.ndarray) and self.grey_ and item.ndim == 2 and item.shape[::-1] == self.size_:
            return item.astype(np.float32).ravel() / 255.0
        image = load_image_item(item)
        if self.grey_:
            image = image.convert("L")
        if image.size != self.size_:
            image = image.resize(self.size_, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.float32).ravel() / 255.0


@dataclass
class BaselineResult:
    name: str
    description: str
    predictions: np.ndarray
    probabilities: np.ndarray
    extra: dict


def raw_baseline(train: Dataset, test: Dataset, classes: list[str], seed: int = 0, **_: Any) -> BaselineResult:
    """The linear probe on raw inputs, C chosen the same way as for the transferred features."""
    from transferkit.strategies.linear_probe import LinearProbe

    encoder = RawInputEncoder().fit(train)
    X_train, X_test = encoder.transform(train), encoder.transform(test)
    probe = LinearProbe(standardize=train.modality == "image", random_state=seed)
    probe.fit(X_train, train.label_array(classes))
    proba = probe.predict_proba(X_test)
    description = "TF-IDF + logistic regression" if train.modality == "text" else "pixels + logistic regression"
    return BaselineResult("raw", description, probe.classes_[proba.argmax(1)], proba, {"C": probe.C_})


from transferkit.evaluation.scratch import scratch_baseline  # noqa: E402  (light: imports torch when it runs)

BASELINES: dict[str, Callable[..., BaselineResult]] = {"raw": raw_baseline, "scratch": scratch_baseline}
PENDING_BASELINES: dict[str, str] = {}
#: The from-scratch baseline runs by default up to this many training examples (it trains a second network).
SCRATCH_AUTO_MAX_EXAMPLES = 2000


def choose_baselines(requested: list[str] | None, strategy: str, n_train: int) -> tuple[list[str], dict[str, str]]:
    """The baselines a run executes, and those it does not with the reason (reported beside the verdict).

    ``requested = None`` means the default: ``raw`` always; ``scratch`` for strategies that train the backbone when
    the training data has at most :data:`SCRATCH_AUTO_MAX_EXAMPLES` examples.
    """
    if requested is not None:
        chosen = list(dict.fromkeys(requested))
        skipped = {name: "not requested (--baselines)" for name in BASELINES if name not in chosen}
        return chosen, skipped
    if strategy == "linear-probe":
        return ["raw"], {"scratch": "not run by default with the linear probe, which trains no network; ask for it "
                                    "with --baselines raw,scratch"}
    if n_train > SCRATCH_AUTO_MAX_EXAMPLES:
        return ["raw"], {"scratch": f"not run by default on more than {SCRATCH_AUTO_MAX_EXAMPLES} training examples "
                                    f"({n_train}: it would double the training time); ask for it with "
                                    "--baselines raw,scratch"}
    return ["raw", "scratch"], {}
