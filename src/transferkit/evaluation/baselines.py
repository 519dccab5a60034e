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

from transferkit._registry import Registry
from transferkit.data.dataset import Dataset
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
    probe = LinearProbe(standardize=encoder.standardize, random_state=seed)
    probe.fit(X_train, train.label_array(classes))
    proba = probe.predict_proba(X_test)
    return BaselineResult("raw", encoder.description, probe.classes_[proba.argmax(1)], proba, {"C": probe.C_})


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
        chosen = list(dict.fromkeys(requested))
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
