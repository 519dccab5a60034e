"""Baselines that run beside every result on the same split, so that "transfer helped" can be checked.

- ``raw``: the same linear probe on the raw input: pixels for images (every image resized to 32x32 colour, JPEG
  photos decoded at a reduced scale; image arrays up to that size kept as they are, greyscale arrays in grey),
  TF-IDF word uni- and bi-grams for text (at most 100,000 terms). With few labels and simple images this is hard to
  beat (see the sklearn-digits example). Its cost is bounded: at most :data:`RAW_MAX_TRAIN` training examples (a
  stratified sample, stated in its description), C chosen by 3 folds and a solver stopped at a looser tolerance.
- ``scratch``: the same architecture from random weights, trained by the engine for the same budget (epochs,
  batch, augmentation, early stopping) as the run (:mod:`transferkit.evaluation.scratch`). On by default for the
  training strategies when the training data is small (it doubles the training time); a run lists the baselines
  that did not run and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from transferkit._registry import Registry
from transferkit.data.dataset import Dataset
from transferkit.evaluation.baseline_result import BaselineResult
from transferkit.modalities import get_modality
from transferkit.modalities.image import RAW_IMAGE_SIDE


class RawInputEncoder:
    """Dataset -> a feature matrix of raw inputs, by the modality's raw encoder
    (:meth:`transferkit.modalities.base.Modality.raw_encoder`): dense pixels for images, sparse TF-IDF for text.
    ``fit`` learns the vocabulary for text and the pixel grid for images (``image_side`` pixels a side at most)."""

    def __init__(self, image_side: int = RAW_IMAGE_SIDE) -> None:
        self.image_side = image_side

    def fit(self, dataset: Dataset) -> "RawInputEncoder":
        self.modality_ = dataset.modality
        self.encoder_ = get_modality(dataset.modality).raw_encoder(image_side=self.image_side).fit(dataset)
        return self

    @property
    def standardize(self) -> bool:
        """Whether a probe on these features standardises them."""
        return self.encoder_.standardize

    @property
    def description(self) -> str:
        return self.encoder_.description

    def transform(self, dataset: Dataset):
        return self.encoder_.transform(dataset)

    def fit_transform(self, dataset: Dataset):
        return self.fit(dataset).transform(dataset)


#: The raw baseline trains on a stratified sample of at most this many examples (stated in its description).
#: A linear model on raw pixels or TF-IDF is close to its best well before this (Fashion-MNIST pixels: 0.84 at 10,000
#: and 60,000 training images), and its cost then stays a bounded fraction of the run at any data size.
RAW_MAX_TRAIN = 10_000
#: Its solver stops at this tolerance or this many L-BFGS iterations: the choice of C and the accuracy are those of
#: the fully converged probe to within noise, at a third of the time on 32x32 colour pixels
#: (benchmarks/scale_curve.py measures the baseline's share of a default fit).
RAW_SOLVER_TOL = 1e-3
RAW_SOLVER_MAX_ITER = 200
#: Folds that choose its C (the probe on transferred features uses 5): on 4,000 Fashion-MNIST images at 64 px, where
#: the backbone is cheapest, 5 folds made it 26 % of the fit (benchmarks/scale_curve.py).
RAW_CV_FOLDS = 3
#: Test examples encoded and scored at a time (the raw inputs of a large test set are never all in memory).
RAW_TEST_CHUNK = 4096


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted row indices of a sample of ``size`` rows with each class in its proportion (at least one row per class);
    every row when there are at most ``size``."""
    if len(labels) <= size:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        take = max(1, int(round(size * len(rows) / len(labels))))
        chosen.append(rng.choice(rows, size=min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen))


def raw_baseline(train: Dataset, test: Dataset, classes: list[str], seed: int = 0, **_: Any) -> BaselineResult:
    """The linear probe on raw inputs, C chosen from the same candidates as for the transferred features (by
    :data:`RAW_CV_FOLDS` folds), on at most
    :data:`RAW_MAX_TRAIN` training examples (a stratified sample; the description says so when it applies)."""
    from transferkit.tasks import get_task

    task = get_task(train.task)  # the task's probe: logistic regression, ridge, one-vs-rest
    y_train = task.targets(train, classes)
    n_total = len(train)
    kept = stratified_sample(np.asarray(task.strata(train.labels)), RAW_MAX_TRAIN, seed)
    if len(kept) < n_total:
        train, y_train = train.subset(kept), y_train[kept]
    encoder = RawInputEncoder().fit(train)
    probe = task.new_probe(seed=seed, standardize=encoder.standardize, tol=RAW_SOLVER_TOL, max_iter=RAW_SOLVER_MAX_ITER,
                           cv=RAW_CV_FOLDS)
    probe.fit(encoder.transform(train), y_train)
    parts = [probe.predict_proba(encoder.transform(test.subset(np.arange(first, min(first + RAW_TEST_CHUNK, len(test))))))
             for first in range(0, len(test), RAW_TEST_CHUNK)]
    proba = np.concatenate(parts) if parts else np.zeros((0, len(classes)))
    description = encoder.description
    if len(kept) < n_total:
        description += f" (trained on a stratified sample of {len(kept):,} of {n_total:,} examples)"
    return BaselineResult("raw", description, task.predictions(proba), proba,
                          {"C": probe.C_, "n_train": int(len(kept))})


from transferkit.evaluation.scratch import scratch_baseline  # noqa: E402  (light: imports torch when it runs)


@dataclass(frozen=True)
class Baseline:
    """A registry entry: a reference run beside every result on the same split.

    ``run(train, test, classes, *, seed, config, backbone, val)`` returns a :class:`BaselineResult`."""

    name: str
    #: One line: what it trains, for listings and the docs.
    description: str
    run: Callable[..., BaselineResult]
    #: It trains a network (the training extra, a second training run's time).
    trains_network: bool = False


REGISTRY: Registry[Baseline] = Registry("baseline", "baselines")


def register_baseline(entry: Baseline) -> Baseline:
    """Add ``entry`` to the registry (a name registered twice is a programming error)."""
    REGISTRY.register(entry)
    BASELINES[entry.name] = entry.run
    return entry


def get_baseline(name: str) -> Baseline:
    """The entry named ``name``; a :class:`ConfigError` naming the option and the known baselines otherwise."""
    return REGISTRY.get(name)


def baseline_names() -> list[str]:
    """Every registered baseline, in registration order."""
    return REGISTRY.names()


#: name -> run, for callers that only run them.
BASELINES: dict[str, Callable[..., BaselineResult]] = {}
register_baseline(Baseline("raw", "the same linear probe on raw inputs (pixels, or TF-IDF for text)", raw_baseline))
register_baseline(Baseline("scratch", "the same architecture from random weights, trained for the same budget",
                           scratch_baseline, trains_network=True))
PENDING_BASELINES: dict[str, str] = {}
#: The from-scratch baseline runs by default up to this many training examples (it trains a second network).
SCRATCH_AUTO_MAX_EXAMPLES = 2000


def choose_baselines(requested: list[str] | None, strategy: str, n_train: int) -> tuple[list[str], dict[str, str]]:
    """The baselines a run executes, and those it does not with the reason (reported beside the verdict).

    ``requested = None`` means the default: ``raw`` always; ``scratch`` for strategies that train the backbone when
    the training data has at most :data:`SCRATCH_AUTO_MAX_EXAMPLES` examples.
    """
    if requested is not None:
        # rows that are not run here (fit's zero-shot row on the class names) are the caller's
        chosen = [name for name in dict.fromkeys(requested) if name in BASELINES]
        skipped = {name: "not requested (--baselines)" for name in BASELINES if name not in chosen}
        return chosen, skipped
    from transferkit.strategies.registry import get_strategy

    reason = get_strategy(strategy).scratch_not_default
    if reason is not None:
        return ["raw"], {"scratch": reason}
    if n_train > SCRATCH_AUTO_MAX_EXAMPLES:
        return ["raw"], {"scratch": f"not run by default on more than {SCRATCH_AUTO_MAX_EXAMPLES} training examples "
                                    f"({n_train}: it would double the training time); ask for it with "
                                    "--baselines raw,scratch"}
    return ["raw", "scratch"], {}
