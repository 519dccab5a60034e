"""Cross-validation: stratified disjoint folds, features computed once for all folds, intervals and the paired
verdict; calibration (ECE, temperature scaling saved with the model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE
from synthetic_texts import synthetic_dataset, write_synthetic_csv
from test_cli import run
from transferkit.errors import DataError
from transferkit.evaluation import calibration
from transferkit.evaluation.cross_validation import corrected_t_interval, stratified_folds
from transferkit.workflows.cv import cross_validate
from transferkit.evaluation.verdict import HELPED, HURT, NO_DIFFERENCE


def digits(per_class: int = 10, classes: int = 4):
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.concatenate([np.flatnonzero(d.target == c)[:per_class] for c in range(classes)])
    return tk.from_arrays((d.images[idx] * 15.9).astype(np.uint8), [str(t) for t in d.target[idx]], origin="digits")


def test_folds_are_stratified_disjoint_and_cover_the_data() -> None:
    labels = np.array(["a"] * 23 + ["b"] * 11 + ["c"] * 6)
    splits = stratified_folds(labels, folds=5, repeats=2, seed=3)
    assert len(splits) == 10
    for repeat in range(2):
        tests = [b for _, b in splits[repeat * 5:(repeat + 1) * 5]]
        assert sorted(np.concatenate(tests).tolist()) == list(range(40))  # a partition: disjoint and complete
        for train, test in splits[repeat * 5:(repeat + 1) * 5]:
            assert not set(train) & set(test) and len(train) + len(test) == 40
            for name, total in (("a", 23), ("b", 11), ("c", 6)):
                assert abs((labels[test] == name).sum() - total / 5) < 1  # each class spread evenly
    assert not all(np.array_equal(splits[i][1], splits[5 + i][1]) for i in range(5))  # repeats reshuffle


def test_too_few_examples_for_the_folds_is_an_error_naming_the_class() -> None:
    labels = np.array(["a"] * 10 + ["b"] * 3)
    with pytest.raises(DataError, match=r"'b' \(3\).*--folds to 3"):
        stratified_folds(labels, folds=5)


def test_corrected_interval_is_wider_than_the_naive_one() -> None:
    values = np.array([0.80, 0.84, 0.78, 0.82, 0.86])
    low, high = corrected_t_interval(values, test_fraction=0.2)
    from scipy.stats import t

    naive = t.ppf(0.975, 4) * values.std(ddof=1) / np.sqrt(5)
    corrected = t.ppf(0.975, 4) * np.sqrt((1 / 5 + 0.25) * values.var(ddof=1))
    assert high - low == pytest.approx(2 * corrected) and corrected > naive
    assert (low + high) / 2 == pytest.approx(values.mean())


def test_probe_folds_read_the_cache_after_the_first(monkeypatch, tmp_path: Path) -> None:
    import transferkit.features.extract as extract

    real = extract.run_backbone
    forward = []

    def counting(backbone, dataset, **kwargs):
        forward.append(len(dataset))
        return real(backbone, dataset, **kwargs)

    monkeypatch.setattr(extract, "run_backbone", counting)
    data = digits()
    result = cross_validate(data, backbone=TINY_IMAGE_BACKBONE, folds=4, repeats=2, progress=False, device="cpu",
                            cache_dir=str(tmp_path / "cache"), output=str(tmp_path / "cv"))
    assert sum(forward) == len(data)  # every example through the backbone once, for 8 folds
    computed = [f["extraction"]["computed"] for f in result.folds]
    assert computed[0] == len(data) and computed[1:] == [0] * 7
    assert all(f["extraction"]["from_cache"] == len(data) for f in result.folds[1:])
    acc = result.summary["model"]["accuracy"]
    assert len(acc["values"]) == 8 and acc["ci_low"] <= acc["mean"] <= acc["ci_high"] and acc["std"] > 0
    assert [c.baseline for c in result.comparisons] == ["raw"]
    assert result.comparisons[0].verdict in (HELPED, HURT, NO_DIFFERENCE)
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["config"]["folds"] == 4 and len(saved["folds"]) == 8
    assert (tmp_path / "cv" / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    forward.clear()
    cross_validate(data, backbone=TINY_IMAGE_BACKBONE, folds=4, progress=False, device="cpu",
                   cache_dir=str(tmp_path / "cache"))
    assert forward == []  # a second run costs no backbone forward pass


def test_verdict_interval_is_the_union_of_fold_and_example_intervals(tmp_path: Path) -> None:
    result = cross_validate(digits(per_class=12), backbone=TINY_IMAGE_BACKBONE, folds=3, progress=False,
                            device="cpu", cache_dir=str(tmp_path / "cache"))
    comparison, parts = result.comparisons[0], result.intervals["raw"]
    assert comparison.ci_low == pytest.approx(max(min(parts["folds"][0], parts["examples"][0]), -1))
    assert comparison.ci_high == pytest.approx(min(max(parts["folds"][1], parts["examples"][1]), 1))
    assert comparison.difference == pytest.approx(np.mean(parts["fold_differences"]))
    assert "verdict:" in result.table() and "feature cache" in result.table()


def test_training_strategy_runs_every_baseline_on_the_same_folds(tiny_text_model: Path, tmp_path: Path) -> None:
    result = cross_validate(synthetic_dataset(6), backbone=str(tiny_text_model), strategy="finetune", folds=2,
                            epochs=1, batch_size=8, tracking_uri="off", progress=False, device="cpu",
                            work_dir=str(tmp_path / "work"), cache_dir=str(tmp_path / "cache"), augment="none")
    assert set(result.summary) == {"model", "raw", "scratch", "linear-probe"}
    assert {c.baseline for c in result.comparisons} == {"raw", "scratch", "linear-probe"}
    assert all(f["n_test"] == 9 and f["facts"]["model"]["epochs_run"] == 1 for f in result.folds)
    assert (tmp_path / "work" / "repeat0-fold1").is_dir()
    assert not list((tmp_path / "work").rglob("final-weights.pt"))  # no fold leaves weights behind
    assert "ece" in result.summary["model"] and 0 <= result.summary["model"]["ece"]["mean"] <= 1


def test_cv_command_end_to_end(tiny_text_model: Path, tmp_path: Path) -> None:
    csv = write_synthetic_csv(tmp_path / "texts.csv", per_class=8)
    out = tmp_path / "cv"
    proc = run("cv", str(csv), "--backbone", str(tiny_text_model), "--folds", "4", "--repeats", "2", "--device",
               "cpu", "--cache-dir", str(tmp_path / "cache"), "--output", str(out), "-q")
    assert "4-fold cross-validation x 2 repeat(s)" in proc.stdout and "verdict:" in proc.stdout
    saved = json.loads((out / "cv.json").read_text())
    assert len(saved["folds"]) == 8 and saved["comparisons"][0]["baseline"] == "raw"
    with pytest.raises(DataError, match="--folds"):  # checked before any backbone runs
        cross_validate(str(csv), backbone=str(tiny_text_model), folds=9)


# --- calibration --------------------------------------------------------------------------------------------

def test_ece_of_known_predictions() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    # bin of 0.9: 3 predictions, 2 right (0.667 vs 0.9); bin of 0.6: 1 prediction, right (1.0 vs 0.6)
    expected = 3 / 4 * abs(2 / 3 - 0.9) + 1 / 4 * abs(1.0 - 0.6)
    assert calibration.expected_calibration_error(y, proba, n_bins=10) == pytest.approx(expected)
    assert calibration.expected_calibration_error(np.array([0, 1]), np.eye(2)) == 0.0


def test_temperature_scaling_recovers_the_temperature_and_keeps_predictions() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    true_t = 2.5
    p = calibration.softmax(logits, true_t)
    y = np.array([rng.choice(5, p=row) for row in p])
    scaler = calibration.TemperatureScaling().fit(logits, y)
    assert scaler.temperature_ == pytest.approx(true_t, rel=0.1)
    assert scaler.nll_after_ < scaler.nll_before_
    assert np.array_equal(scaler.predict_proba(logits).argmax(1), logits.argmax(1))
    before = calibration.expected_calibration_error(y, calibration.softmax(logits))
    assert calibration.expected_calibration_error(y, scaler.predict_proba(logits)) < before / 2


def test_fit_calibrate_saves_the_temperature_and_predict_applies_it(tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = tk.fit(synthetic_dataset(10), backbone=str(tiny_text_model), calibrate=True, output=str(out),
                    progress=False, device="cpu", cache_dir=str(tmp_path / "cache"))
    scaling = result.config["temperature_scaling"]
    assert scaling["on"] == "out-of-fold logits" and scaling["temperature"] == result.model.temperature
    assert scaling["validation_nll_after"] <= scaling["validation_nll_before"]
    assert "ece" in result.metrics["calibration"] and "calibration: ECE" in result.summary()
    assert (out / "reliability.png").is_file()
    loaded = tk.load_model(out)
    assert loaded.temperature == pytest.approx(result.model.temperature)
    data = synthetic_dataset(3, seed=5)
    logits = loaded.predict_logits(data, device="cpu", progress=False)
    np.testing.assert_allclose(loaded.predict_proba(data, device="cpu", progress=False),
                               calibration.softmax(logits, loaded.temperature), atol=1e-5)
