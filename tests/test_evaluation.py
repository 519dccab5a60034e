"""Metrics with known values, and the verdict decided by a paired interval."""

from __future__ import annotations

import numpy as np

from transferkit.evaluation.metrics import classification_metrics, format_metrics
from transferkit.evaluation.verdict import HELPED, HURT, NO_DIFFERENCE, compare


def test_metrics_known_values() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == 4 / 6
    assert m["per_class"]["a"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    assert m["per_class"]["b"]["precision"] == 2 / 3 and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert abs(m["macro_f1"] - (2 / 3 + 0.8 + 0) / 3) < 1e-12
    text = format_metrics(m)
    assert "accuracy 0.6667" in text and "confusion matrix" in text


def test_verdict_follows_the_interval() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.where(rng.random(400) < 0.9, y, 1 - y)
    poor = np.where(rng.random(400) < 0.6, y, 1 - y)
    assert compare(y, good, poor, "raw").verdict == HELPED
    assert compare(y, poor, good, "raw").verdict == HURT
    same = compare(y, good, good, "raw")
    assert same.verdict == NO_DIFFERENCE and same.difference == 0.0
    close = np.where(rng.random(400) < 0.9, y, 1 - y)
    result = compare(y, good, close, "raw")
    assert result.ci_low < result.difference < result.ci_high


def test_verdict_sentence_names_negative_transfer() -> None:
    y = np.zeros(200, dtype=int)
    worse = np.r_[np.ones(60, dtype=int), np.zeros(140, dtype=int)]
    comparison = compare(y, worse, y, "raw")
    assert comparison.verdict == HURT and "negative transfer" in comparison.sentence()
