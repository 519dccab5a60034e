"""Semi-supervised probes on frozen features: pseudo-labels with a confidence schedule (curriculum labelling).

Cascante-Bonilla et al., "Curriculum Labeling" (AAAI 2021): a probe trained on the labelled features labels the
unlabelled ones; in round ``r`` of ``R`` the most confident ``r / R`` of them (by the probe's probability, taken per
predicted class in proportion to the labelled class mix, so that one easy class cannot take every slot) join the
labelled examples, and the probe is trained again from the labelled examples and that round's pseudo-labels.
Shapes: labelled ``X`` ``(N, D)``, ``y`` ``(N,)`` class indices; unlabelled ``X_unlabelled`` ``(M, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PseudoLabelFacts:
    """What the rounds did: examples added and the lowest probability admitted per round; the class mix of the
    labelled data and of the first round's predictions on the unlabelled data, and their total variation distance."""

    added: list[int] = field(default_factory=list)
    lowest_probability: list[float] = field(default_factory=list)
    labelled_mix: list[float] = field(default_factory=list)
    unlabelled_mix: list[float] = field(default_factory=list)
    mix_distance: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"added": self.added, "lowest_probability": [round(p, 4) for p in self.lowest_probability],
                "labelled_mix": [round(p, 4) for p in self.labelled_mix],
                "unlabelled_mix": [round(p, 4) for p in self.unlabelled_mix],
                "mix_distance": round(self.mix_distance, 4)}


def class_mix(targets: np.ndarray, classes: int) -> np.ndarray:
    """Share of each class among ``targets`` ``(classes,)``."""
    counts = np.bincount(targets, minlength=classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def select_confident(proba: np.ndarray, share: float, mix: np.ndarray) -> np.ndarray:
    """Rows of ``proba`` ``(M, C)`` admitted this round: ``share`` of them, split across the predicted classes in
    proportion to ``mix``, the most probable first within each class."""
    predicted = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    budget = share * len(proba)
    chosen = []
    for c in range(proba.shape[1]):
        rows = np.flatnonzero(predicted == c)
        take = min(len(rows), int(round(budget * mix[c])))
        chosen.append(rows[np.argsort(-confidence[rows])[:take]])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def curriculum_pseudo_labels(new_probe: Any, X: np.ndarray, y: np.ndarray, X_unlabelled: np.ndarray, *,
                             rounds: int = 5) -> tuple[Any, PseudoLabelFacts]:
    """The probe after ``rounds`` of curriculum pseudo-labelling, and what each round did. ``new_probe()`` returns
    an unfitted probe (``fit``, ``predict_proba``, ``classes_``); every round starts from a new one, so that early
    mistakes are not carried in the weights."""
    classes = int(y.max()) + 1
    probe = new_probe().fit(X, y)
    mix = class_mix(y, classes)
    facts = PseudoLabelFacts(labelled_mix=mix.tolist())
    for r in range(1, rounds + 1):
        proba = _full_proba(probe, X_unlabelled, classes)
        if r == 1:
            predicted = class_mix(proba.argmax(axis=1), classes)
            facts.unlabelled_mix = predicted.tolist()
            facts.mix_distance = float(0.5 * np.abs(predicted - mix).sum())
        rows = select_confident(proba, r / rounds, mix)
        facts.added.append(len(rows))
        facts.lowest_probability.append(float(proba[rows].max(axis=1).min()) if len(rows) else 1.0)
        probe = new_probe().fit(np.concatenate([X, X_unlabelled[rows]]),
                                np.concatenate([y, proba[rows].argmax(axis=1)]))
    return probe, facts


def _full_proba(probe: Any, X: np.ndarray, classes: int) -> np.ndarray:
    proba = np.zeros((len(X), classes), dtype=np.float64)
    proba[:, probe.classes_] = probe.predict_proba(X)
    return proba
