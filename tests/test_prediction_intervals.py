"""Split-conformal prediction intervals of regression models: calibrated by fit on held-out residuals, saved with
the model, given by predict (``low``, ``high``) and serve, and reported with the test coverage beside the nominal
level."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from test_task_types import ROWS, _table
from transferkit.cli.main import _register_commands, app

_register_commands()


def _invoke(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def fitted(tiny_text_model: Path, tmp_path_factory) -> dict[str, Path]:
    """A regression probe fitted with validation data (every third row), its tables and folder."""
    import transferkit as tk

    folder = tmp_path_factory.mktemp("intervals")
    rows = [(text, f"{rating:g}") for text, rating, _ in ROWS]
    paths = {"train": _table(folder / "train.csv", [r for i, r in enumerate(rows) if i % 3]),
             "val": _table(folder / "val.csv", rows[::3]), "model": folder / "model"}
    tk.fit(str(paths["train"]), val=str(paths["val"]), task="regression", backbone=str(tiny_text_model),
           output=str(paths["model"]), report=False, progress=False, baselines=[], interval=0.8)
    return paths


def test_the_half_width_is_the_conformal_quantile_of_the_validation_residuals(fitted) -> None:
    import transferkit as tk
    from transferkit.data.sources import load_data

    model = tk.load_model(fitted["model"])
    val = load_data(fitted["val"], task="regression")
    residuals = np.abs(model.predict_proba(val, progress=False, cache=None)[:, 0] - np.asarray(val.labels, float))
    rank = math.ceil((len(residuals) + 1) * 0.8)  # 16 examples: the 14th smallest residual
    assert model.interval["half_width"] == pytest.approx(np.sort(residuals)[rank - 1], rel=1e-5)
    assert model.interval["level"] == 0.8 and model.interval["calibration_examples"] == len(residuals)
    assert "validation data" in model.interval["calibrated_on"]
    test = json.loads((fitted["model"] / "metrics.json").read_text())["test"]["interval"]
    assert test["level"] == 0.8 and 0 <= test["coverage"] <= 1 and test["width"] == pytest.approx(
        2 * model.interval["half_width"])
    summary = (fitted["model"] / "summary.txt").read_text()
    assert "prediction interval: value ±" in summary and "(80% split conformal); test coverage" in summary


def test_predict_gives_low_and_high_around_each_value(fitted, tmp_path: Path) -> None:
    import transferkit as tk

    half = tk.load_model(fitted["model"]).interval["half_width"]
    out = tmp_path / "predictions.csv"
    result = _invoke("predict", fitted["model"], fitted["val"], "--output", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "input,value,low,high" and len(lines) == 17
    for line in lines[1:]:
        value, low, high = (float(cell) for cell in line.rsplit(",", 3)[1:])
        assert low == pytest.approx(value - half, abs=1e-4) and high == pytest.approx(value + half, abs=1e-4)


def test_serve_answers_the_interval_and_the_report_sets_test_coverage_beside_the_level(fitted, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from transferkit.serving.app import create_app
    from transferkit.serving.settings import ServeConfig

    with TestClient(create_app(ServeConfig(model=str(fitted["model"])))) as client:
        answer = client.post("/predict", json={"texts": ["great acting and a great story"]})
    assert answer.status_code == 200, answer.text
    record = answer.json()["predictions"][0]
    assert record["low"] < record["value"] < record["high"] and record["level"] == 0.8
    report = tmp_path / "report.html"
    result = _invoke("report", fitted["model"], "--output", report)
    assert result.exit_code == 0, result.output
    html = report.read_text()
    assert "Nominal coverage 80%" in html and "of the true values fall inside" in html


def test_too_few_calibration_examples_give_no_interval_with_a_warning(tiny_text_model: Path, tmp_path: Path) -> None:
    """At 90 % split conformal needs 9 calibration examples; with 5 the model has no interval and predict no
    bounds. --interval 0 turns intervals off."""
    import transferkit as tk

    rows = [(text, f"{rating:g}") for text, rating, _ in ROWS]
    train, val = _table(tmp_path / "train.csv", rows[5:]), _table(tmp_path / "val.csv", rows[:5])
    with pytest.warns(UserWarning, match=r"5 calibration examples .* too few for a 90% .* at least 9"):
        result = tk.fit(str(train), val=str(val), task="regression", backbone=str(tiny_text_model), report=False,
                        progress=False, baselines=[])
    assert result.model.interval is None and "interval" not in result.metrics
    records = tk.predict(result.model, [rows[0][0]])
    assert set(records[0]) == {"input", "value"}
    off = tk.fit(str(train), task="regression", backbone=str(tiny_text_model), report=False, progress=False,
                 baselines=[], interval=0)
    assert off.model.interval is None


def test_without_validation_data_the_probe_calibrates_on_out_of_fold_predictions(tiny_text_model: Path,
                                                                                 tmp_path: Path) -> None:
    import transferkit as tk

    table = _table(tmp_path / "ratings.csv", [(text, f"{rating:g}") for text, rating, _ in ROWS])
    result = tk.fit(str(table), task="regression", backbone=str(tiny_text_model), report=False, progress=False,
                    baselines=[])
    interval = result.model.interval
    assert "out-of-fold" in interval["calibrated_on"] and interval["half_width"] > 0
    assert interval["calibration_examples"] == result.config["n_train"]


def test_a_malformed_saved_interval_is_refused_naming_config_json(fitted, tmp_path: Path) -> None:
    import shutil

    import transferkit as tk
    from transferkit.errors import ArtifactError

    copy = tmp_path / "model"
    shutil.copytree(fitted["model"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["interval"]["level"] = 1.5
    (copy / "config.json").write_text(json.dumps(config))
    manifest = json.loads((copy / "manifest.json").read_text())  # as a writer would have signed it
    manifest["files"]["config.json"] = hashlib.sha256((copy / "config.json").read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"config\.json: 'interval' must hold a 'level' in \(0, 1\)"):
        tk.load_model(copy)


def test_split_conformal_covers_the_nominal_level_on_average() -> None:
    """The finite-sample guarantee on exchangeable data: with 19 calibration examples the 90 % interval uses the
    18th smallest residual, whose expected coverage of a new example is exactly 18 / 20 = 90 % (the plain 90 %
    quantile of the residuals would cover about 86 %). Averaged over 1,000 calibration sets (heavy-tailed noise)."""
    from transferkit.evaluation.conformal import interval_coverage, split_conformal_interval

    rng = np.random.default_rng(0)
    coverages = []
    for _ in range(1000):
        y_cal, y_new = rng.standard_t(3, size=19), rng.standard_t(3, size=100)
        interval = split_conformal_interval(y_cal, np.zeros(19), 0.9, calibrated_on="draws")
        assert interval["half_width"] == np.sort(np.abs(y_cal))[17]
        coverages.append(interval_coverage(interval, y_new, np.zeros(100))["coverage"])
    assert abs(np.mean(coverages) - 0.9) < 0.01  # Monte Carlo standard error about 0.002
    with pytest.warns(UserWarning, match="too few"):
        assert split_conformal_interval(np.arange(8.0), np.zeros(8), 0.9, calibrated_on="draws") is None
