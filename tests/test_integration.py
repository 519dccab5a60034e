"""The real packaged weights on real data: transfer beats the raw-input baseline where it should.

Figures for the README come from `make demo` (1,000 test examples); these tests use fewer to stay quick.
"""

from __future__ import annotations

import pytest

import transferkit as tk
from transferkit.data.builtin import load_fashion_mnist, load_vader
from transferkit.data.splits import stratified_split

pytestmark = pytest.mark.integration


def test_lite0_probe_beats_pixels_on_fashion_mnist() -> None:
    test = load_fashion_mnist("test")
    result = tk.fit(load_fashion_mnist("train"), test=test.subset(range(0, 10_000, 20)), shots=20,
                    backbone="efficientnet_lite0", progress=False)
    raw = result.baselines["raw"]["accuracy"]
    assert result.accuracy > raw, result.summary()
    assert result.accuracy > 0.7  # ten classes: chance is 0.1


def test_minilm_probe_beats_tfidf_on_vader_movies() -> None:
    train, test = stratified_split(load_vader("movies"), 0.5, seed=0)
    result = tk.fit(train, test=test.subset(range(0, len(test), 10)), shots=20, backbone="all-MiniLM-L6-v2",
                    progress=False)
    comparison = result.comparisons[0]
    assert comparison.verdict == "helped", result.summary()
    assert result.accuracy > 0.65
