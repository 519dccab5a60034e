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
    assert rows[0] == ["input", "value"] and len(rows) == len(ROWS) + 1
    values = np.array([float(r[1]) for r in rows[1:]])
    assert np.isfinite(values).all() and values.std() > 0  # the values are in the target's units, not one class
    api = tk.predict(out, [ROWS[0][0]], progress=False)
    assert set(api[0]) == {"input", "value"} and api[0]["value"] == pytest.approx(values[0], abs=1e-4)


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
