"""Regression and multi-label classification through the verbs: fit (probe and fine-tuning), evaluate, predict,
cv, from the CLI and the API, and every bad-input case named by its row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import transferkit as tk
from conftest import TEXTS
from transferkit.cli.main import app
from transferkit.errors import DataError

#: (text, rating, tags): a rating that follows the sentiment, and tags read off the words.
ROWS = [(f"{text} {suffix}", (2.0 + 0.25 * i if label == "positive" else -2.0 - 0.25 * i) + 0.1 * k,
         "|".join(sorted({"positive" if label == "positive" else "negative"}
                         | ({"acting"} if "acting" in text or "work" in text else set())
                         | ({"time"} if "minute" in text or "year" in text or "finish" in text else set()))))
        for k, suffix in enumerate(("", "indeed", "really"))
        for label, texts in TEXTS.items() for i, text in enumerate(texts)]


def _table(path: Path, rows, header=("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def ratings(tmp_path: Path) -> Path:
    return _table(tmp_path / "ratings.csv", [(text, f"{rating:g}") for text, rating, _ in ROWS])


@pytest.fixture
def tags(tmp_path: Path) -> Path:
    return _table(tmp_path / "tags.csv", [(text, tag) for text, _, tag in ROWS])


def _invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


# --------------------------------------------------------------------------------------------------- end to end

def test_regression_fit_evaluate_predict_through_the_cli(ratings: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = _invoke("fit", ratings, "--task-type", "regression", "--backbone", tiny_text_model, "--output", out,
                     "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert {"mae", "rmse", "r2", "spearman", "intervals"} <= set(test)
    assert test["intervals"]["mae"][0] <= test["mae"] <= test["intervals"]["mae"][1]
    assert "raw" in metrics["baselines"] and "r2" in metrics["baselines"]["raw"]
    assert metrics["comparisons"][0]["baseline"] == "raw"
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "regression" and config["head"]["type"] == "RegressionHead"
    assert "R2" in (out / "summary.txt").read_text()
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "input,target,prediction,residual"

    evaluated = _invoke("evaluate", out, ratings, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert "r2" in evaluated.output and "mae" in evaluated.output

    table = tmp_path / "predictions.csv"
    predicted = _invoke("predict", out, ratings, "--output", table)
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["input", "value", "low", "high"] and len(rows) == len(ROWS) + 1  # the 90 % interval
    values = np.array([float(r[1]) for r in rows[1:]])
    assert np.isfinite(values).all() and values.std() > 0  # the values are in the target's units, not one class
    api = tk.predict(out, [ROWS[0][0]], progress=False)
    assert set(api[0]) == {"input", "value", "low", "high", "level"}
    assert api[0]["value"] == pytest.approx(values[0], abs=1e-4) and api[0]["low"] < api[0]["value"] < api[0]["high"]


def test_multilabel_fit_evaluate_predict_through_the_cli(tags: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = _invoke("fit", tags, "--task-type", "multilabel", "--backbone", tiny_text_model, "--output", out,
                     "--no-report", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert {"micro_f1", "macro_f1", "example_f1", "map", "per_label", "intervals"} <= set(test)
    assert set(test["per_label"]) == {"acting", "negative", "positive", "time"}
    assert "example_f1" in metrics["baselines"]["raw"]
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "multilabel" and config["classes"] == ["acting", "negative", "positive", "time"]
    assert metrics["probe"]["C"] > 0

    evaluated = _invoke("evaluate", out, tags, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert "macro_f1" in evaluated.output

    table = tmp_path / "predictions.csv"
    predicted = _invoke("predict", out, tags, "--output", table)
    assert predicted.exit_code == 0, predicted.output
    rows = list(csv.reader(table.open()))
    assert rows[0] == ["input", "labels", "p_acting", "p_negative", "p_positive", "p_time"]
    record = tk.predict(out, [ROWS[0][0]], progress=False)[0]
    assert set(record) == {"input", "labels", "probabilities"}
    assert record["labels"] == [name for name, p in record["probabilities"].items() if p >= 0.5]


def test_regression_fine_tuning_and_cross_validation(ratings: Path, tiny_text_model: Path) -> None:
    result = tk.fit(str(ratings), task="regression", strategy="finetune", backbone=str(tiny_text_model), epochs=1,
                    batch_size=8, patience=0, progress=False, report=False, baselines=[], lr=1e-3)
    assert type(result.model.head).__name__ == "RegressionHead"
    ratings_of_all = np.array([rating for _, rating, _ in ROWS])
    assert float(result.model.head.target_scale) > 0.5 * ratings_of_all.std()  # standardised by the training targets
    assert abs(float(result.model.head.target_mean) - ratings_of_all.mean()) < ratings_of_all.std()
    assert np.isfinite(result.metrics["r2"]) and result.metrics["mae"] > 0
    cv = tk.cross_validate(str(ratings), task="regression", backbone=str(tiny_text_model), folds=2, baselines=["raw"],
                           progress=False)
    assert set(cv.summary["model"]) == {"r2", "mae", "rmse", "spearman"}
    assert cv.comparisons[0].baseline == "raw" and "R2" in cv.table()


def test_multilabel_fine_tuning_trains_on_label_matrices(tags: Path, tiny_text_model: Path) -> None:
    result = tk.fit(str(tags), task="multilabel", strategy="finetune", backbone=str(tiny_text_model), epochs=1,
                    batch_size=8, patience=0, progress=False, report=False, baselines=[], lr=1e-3)
    assert result.model.classes == ["acting", "negative", "positive", "time"]
    assert 0.0 <= result.metrics["example_f1"] <= 1.0 and "per_label" in result.metrics


# --------------------------------------------------------------------------------------------------- bad input

def _fit_fails(table: Path, task: str, tmp_path: Path, *extra: str) -> str:
    out = tmp_path / "model"
    result = _invoke("fit", table, "--task-type", task, "--output", out, "--backbone", "random:timm:test_efficientnet",
                     *extra)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") or "error:" in result.output
    assert not out.exists()
    return " ".join(result.output.split())


def test_a_non_numeric_target_is_named_by_its_row(tmp_path: Path) -> None:
    table = _table(tmp_path / "r.csv", [(f"text {i}", str(i)) for i in range(6)] + [("text x", "high")])
    message = _fit_fails(table, "regression", tmp_path)
    assert "r.csv line 8: the label ('label') is 'high', not a number" in message
    assert "--task-type classification" in message


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity"])
def test_nan_and_infinite_targets_are_named_by_their_row(cell: str, tmp_path: Path) -> None:
    table = _table(tmp_path / "r.csv", [(f"text {i}", str(i)) for i in range(4)] + [("text x", cell)])
    message = _fit_fails(table, "regression", tmp_path)
    assert "r.csv line 6: the label ('label')" in message and "not a finite number" in message


def test_a_missing_target_is_named_by_its_row(tmp_path: Path) -> None:
    table = _table(tmp_path / "r.csv", [("text 0", "1"), ("text 1", ""), ("text 2", "3")])
    message = _fit_fails(table, "regression", tmp_path)
    assert "r.csv line 3: the label ('label') is missing or empty" in message


def test_a_constant_target_is_refused(tmp_path: Path) -> None:
    table = _table(tmp_path / "r.csv", [(f"text {i}", "2.5") for i in range(8)])
    message = _fit_fails(table, "regression", tmp_path)
    assert "the training target is constant (2.5 in all 8 rows" in message and "--label-column" in message


def test_a_numeric_column_read_as_classes_points_to_regression(tmp_path: Path) -> None:
    table = _table(tmp_path / "r.csv", [(f"text {i}", f"{i * 0.37:.2f}") for i in range(40)])
    out = tmp_path / "model"
    result = _invoke("fit", table, "--output", out)
    assert result.exit_code == 2 and "looks numeric" in result.output and "--task-type regression" in result.output
    assert not out.exists()


def test_an_image_folder_cannot_hold_regression_targets(image_folder: Path, tmp_path: Path) -> None:
    message = _fit_fails(image_folder, "regression", tmp_path)
    assert "a folder of sub-folders labels each example with one class" in message and "--path-column" in message


def test_an_empty_label_in_a_label_set_is_named_by_its_row(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", [("text 0", "a|b"), ("text 1", "a||b")])
    message = _fit_fails(table, "multilabel", tmp_path)
    assert "t.csv line 3: the label ('label') ('a||b') has an empty label" in message


def test_a_malformed_json_label_list_is_named_by_its_row(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", [("text 0", "a|b"), ("text 1", '["a", "b"')])
    message = _fit_fails(table, "multilabel", tmp_path)
    assert "t.csv line 3: the label ('label') starts like a JSON list but is not one" in message


def test_a_label_only_in_the_test_data_is_named_by_its_row(tmp_path: Path) -> None:
    train = _table(tmp_path / "train.csv", [(f"text {i}", "a|b" if i % 2 else "b") for i in range(8)])
    test = _table(tmp_path / "test.csv", [("other 0", "a"), ("other 1", "b|c")])
    message = _fit_fails(train, "multilabel", tmp_path, "--test", test)
    assert "test.csv line 3: label 'c' never appears in the training data" in message


def test_a_single_label_is_not_multilabel(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", [(f"text {i}", "a" if i % 2 else "[]") for i in range(8)])
    message = _fit_fails(table, "multilabel", tmp_path)
    assert "has 1 label(s) (a); multi-label classification needs at least 2" in message
    assert "--task-type classification" in message


def test_two_spellings_of_a_label_are_refused_or_folded(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", [("text 0", "Drama|comedy"), ("text 1", "drama"), ("text 2", "drama")])
    with pytest.raises(DataError, match=r"label 'Drama' \(.*t.csv line 2\) and 'drama' \(.*t.csv line 3\) differ only"):
        tk.load_data(str(table), task="multilabel")
    folded = tk.load_data(str(table), task="multilabel", normalize_labels=True)
    assert folded.labels == ['["comedy", "drama"]', '["drama"]', '["drama"]']


def test_calibrate_is_refused_for_outputs_that_are_not_class_probabilities(tmp_path: Path) -> None:
    table = _table(tmp_path / "r.csv", [(f"text {i}", str(i)) for i in range(8)])
    message = _fit_fails(table, "regression", tmp_path, "--calibrate")
    assert "option 'calibrate'" in message and "Drop --calibrate" in message


def test_label_sets_read_from_separators_json_and_lists() -> None:
    data = tk.from_arrays(["a", "b", "c", "d"], ["x|y", "y; z", '["z", "x"]', ["y"]], task="multilabel")
    assert data.labels == ['["x", "y"]', '["y", "z"]', '["x", "z"]', '["y"]']
    from transferkit.tasks import get_task

    task = get_task("multilabel")
    Y = task.targets(data, task.label_space(data))
    np.testing.assert_array_equal(Y, [[1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 1, 0]])


def test_average_precision_matches_scikit_learn_with_ties() -> None:
    from sklearn.metrics import average_precision_score

    from transferkit.evaluation.task_metrics import average_precision

    rng = np.random.default_rng(0)
    for _ in range(50):
        truth = rng.integers(0, 2, 30)
        truth[0] = 1
        score = np.round(rng.random(30), 1)  # many ties
        assert average_precision(truth, score) == pytest.approx(average_precision_score(truth, score), abs=1e-12)


def test_regression_metrics_and_verdict_scores_agree() -> None:
    from transferkit.evaluation.task_metrics import regression_metrics
    from transferkit.tasks import get_task

    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 2.0, 200)
    pred = y + rng.normal(0, 1.0, 200)
    m = regression_metrics(y, pred)
    from sklearn.metrics import mean_absolute_error, r2_score

    from scipy.stats import spearmanr

    assert m["r2"] == pytest.approx(r2_score(y, pred)) and m["mae"] == pytest.approx(mean_absolute_error(y, pred))
    assert m["spearman"] == pytest.approx(spearmanr(y, pred).statistic)
    assert m["intervals"]["r2"][0] < m["r2"] < m["intervals"]["r2"][1]
    assert get_task("regression").per_example_scores(y, pred).mean() == pytest.approx(m["r2"])
    better = get_task("regression").compare(y, pred, np.full_like(y, y.mean()), "mean", seed=0)
    assert better.verdict == "helped" and better.baseline_accuracy == pytest.approx(0.0, abs=1e-12)


def test_logme_regression_prefers_features_that_explain_the_target_whatever_its_units() -> None:
    from transferkit.selection.scores import logme_regression_score

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 16))
    target = 2 * features[:, 0] + rng.normal(0, 0.5, 200)
    informative = logme_regression_score(features, target)
    assert informative > logme_regression_score(rng.normal(size=(200, 16)), target) + 0.5
    assert logme_regression_score(features, 100 * target - 7) == pytest.approx(informative)
    with pytest.raises(DataError, match="a target is constant"):
        logme_regression_score(features, np.ones(200))
