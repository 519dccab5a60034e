"""The label-name prior of ``fit``: whether it applies to a run, the class texts and their embedding, and the
zero-shot row reported beside the baselines.

The prior applies to classification of data whose backbone embeds texts (the modality says so), when the class
names are words or ``--label-descriptions`` describes the classes. ``--label-prior on`` asks for it where ``auto``
would not use it (names that are codes), ``off`` never uses it. Its building blocks (the description table, the
prototypes, :class:`~transferkit.estimators.label_names.PrototypeProbe`) are in
:mod:`transferkit.estimators.label_names`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import ConfigError, DataNotFoundError

#: The name of the zero-shot row among fit's baselines.
ZERO_SHOT = "zero-shot (label names)"


@dataclass
class LabelPrior:
    """What a run knows of its class names: the text embedded per class and, once computed, the prototypes."""

    use: bool
    reason: str
    texts: list[str] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)
    prototypes: Any = None  #: ``(classes, features)``; ``None`` until :func:`embed_label_names`

    def facts(self) -> dict[str, Any]:
        """What the run config records."""
        return {"used": self.use, "reason": self.reason, **({"class_texts": self.texts} if self.use else {}),
                **({"descriptions_from": "--label-descriptions"} if self.descriptions else {})}


def check_label_file(config: Any) -> None:
    """Before any data is read: the description table exists (its rows are checked once the classes are known)."""
    path = config.label_descriptions
    if path is not None and not Path(path).is_file():
        raise DataNotFoundError(f"--label-descriptions: {path} does not exist or is not a file; give a CSV table "
                                "with the columns label,description (one row per class), or leave the option out.")


def _refuse(config: Any, why: str) -> None:
    if config.label_descriptions is not None:
        raise ConfigError(f"--label-descriptions: {why}; leave --label-descriptions out.")
    if config.label_prior == "on":
        raise ConfigError(f"--label-prior on: {why}; use --label-prior auto or off.")


def plan_label_prior(config: Any, task: Any, modality: Any, classes: list[str]) -> LabelPrior:
    """Whether the run uses the prior, and the text of each class (the descriptions read and checked here: an
    unknown label, a repeated one or an empty description is a DataError naming the row)."""
    from transferkit.estimators.label_names import (class_texts, labels_are_words, read_label_descriptions,
                                                    warn_if_labels_are_not_words)

    if not task.uses_label_names:
        _refuse(config, f"a {task.name} task has no class names to embed")
        return LabelPrior(False, f"the {task.name} task has no class names")
    if not modality.embeds_label_names:
        _refuse(config, f"the class texts are embedded by the backbone, and a {modality.name} backbone does not "
                        "embed texts")
        return LabelPrior(False, f"a {modality.name} backbone does not embed texts")
    descriptions = ({} if config.label_descriptions is None else
                    read_label_descriptions(config.label_descriptions, classes))
    texts = class_texts(classes, descriptions)
    if config.label_prior == "off":
        return LabelPrior(False, "--label-prior off", texts, descriptions)
    words = labels_are_words(classes)
    if config.label_prior == "on" and not words and not descriptions:
        warn_if_labels_are_not_words(classes)
    if config.label_prior == "auto" and not words and not descriptions:
        return LabelPrior(False, "the class names are not words (give --label-descriptions to use the prior)",
                          texts)
    source = "the class descriptions" if descriptions else "the class names"
    return LabelPrior(True, f"{source} embedded by the backbone", texts, descriptions)


def embed_label_names(prior: LabelPrior, backbone: Any, config: Any) -> None:
    """The backbone's pooled embedding of each class text, ``(classes, features)``, in ``prior.prototypes``."""
    from transferkit.estimators.label_names import label_prototypes

    if prior.use:
        prior.prototypes = label_prototypes(backbone, prior.texts, batch_size=config.batch_size,
                                            device=config.device)


def zero_shot_predictions(prior: LabelPrior, X_test: np.ndarray) -> np.ndarray:
    """Class indices of the nearest class text (cosine) for each test row: the zero-shot classifier."""
    from transferkit.estimators.label_names import zero_shot_predict

    return zero_shot_predict(np.asarray(X_test), prior.prototypes)


__all__ = ["LabelPrior", "ZERO_SHOT", "check_label_file", "embed_label_names", "plan_label_prior",
           "zero_shot_predictions"]
