"""The label-name prior in fit: --label-descriptions and --label-prior, the PrototypeHead the probe becomes, the
zero-shot row beside the baselines, and the refusals of bad description tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conftest import TINY_IMAGE_BACKBONE, write_text_csv
from transferkit.cli.main import _register_commands, app

COMMON = ["--tracking-uri", "off", "--device", "cpu", "--no-report", "--baselines", "raw,zero-shot", "-q"]
ZERO_SHOT = "zero-shot (label names)"


def invoke(*args: str):
    _register_commands()
    return CliRunner().invoke(app, list(args))


def descriptions(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_fit_with_label_descriptions_saves_a_prototype_head_and_reports_the_zero_shot_row(
        text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    table = descriptions(tmp_path / "labels.csv", "label,description\npositive,a review that praises the film\n")
    out = tmp_path / "model"
    result = invoke("fit", str(text_csv), "--backbone", str(tiny_text_model), "--label-descriptions", str(table),
                    "--calibrate", "--test-fraction", "0.25", "--output", str(out), *COMMON)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["head"]["type"] == "PrototypeHead"
    run_config = yaml.safe_load((out / "run_config.yaml").read_text())
    assert run_config["label_names"]["used"] is True
    assert run_config["label_names"]["class_texts"] == ["negative", "a review that praises the film"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["baselines"][ZERO_SHOT]["accuracy"] <= 1.0
    assert any(c["baseline"] == ZERO_SHOT for c in metrics["comparisons"])
    assert metrics["probe"]["label_prior"] is True
    summary = (out / "summary.txt").read_text()
    assert f"baseline: {ZERO_SHOT}" in summary

    # the saved head computes what the fitted probe computed
    import transferkit as tk
    from transferkit.data import load_table

    model = tk.load_model(out)
    data = load_table(text_csv)
    again = model.predict_proba(data, device="cpu")
    assert again.shape == (16, 2) and np.allclose(again.sum(axis=1), 1.0, atol=1e-5)
    predicted = invoke("predict", str(out), "a wonderful, moving film", "--device", "cpu", "-q")
    assert predicted.exit_code == 0, predicted.output


def test_prototype_head_matches_the_prototype_probe() -> None:
    import torch

    from transferkit.estimators.label_names import PrototypeProbe

    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 6)) * 3 + 1
    y = np.repeat(np.arange(3), 10)
    probe = PrototypeProbe(rng.normal(size=(3, 6)), C=0.5).fit(X, y)
    head = probe.to_head().eval()
    with torch.inference_mode():
        logits = head(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
    assert np.allclose(logits, probe.decision_function(X), atol=1e-4)


def test_prototype_probe_chooses_C_on_validation_data() -> None:
    from transferkit.estimators.label_names import PrototypeProbe

    rng = np.random.default_rng(2)
    centres = np.eye(3, 8) * 3
    X = np.vstack([centres[k] + rng.normal(scale=0.5, size=(10, 8)) for k in range(3)])
    y = np.repeat(np.arange(3), 10)
    probe = PrototypeProbe(centres[[1, 2, 0]]).fit(X[::2], y[::2], X[1::2], y[1::2])  # a misleading prior
    assert set(probe.validation_scores_) == {float(c) for c in probe.Cs}
    assert probe.validation_scores_[probe.C_] == max(probe.validation_scores_.values())
    assert probe.validation_scores_[min(probe.Cs)] < probe.validation_scores_[probe.C_] - 0.3  # the prior is wrong
    assert probe.C_ >= 1.0 and np.mean(probe.predict(X[1::2]) == y[1::2]) >= 0.9


def test_label_prior_off_keeps_the_plain_probe_and_no_zero_shot_row(text_csv: Path, tiny_text_model: Path,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = invoke("fit", str(text_csv), "--backbone", str(tiny_text_model), "--label-prior", "off",
                    "--output", str(out), *COMMON)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["head"]["type"] == "LinearHead"
    assert ZERO_SHOT not in json.loads((out / "metrics.json").read_text())["baselines"]
    assert yaml.safe_load((out / "run_config.yaml").read_text())["label_names"]["reason"] == "--label-prior off"


def test_class_codes_do_not_use_the_prior_unless_described(tiny_text_model: Path, tmp_path: Path) -> None:
    rows = [(f"{word} text number {i}", code) for i in range(8) for word, code in (("sunny", "0"), ("rainy", "1"))]
    data = write_text_csv(tmp_path / "codes.csv", rows)
    out = tmp_path / "model"
    result = invoke("fit", str(data), "--backbone", str(tiny_text_model), "--output", str(out), *COMMON)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert ZERO_SHOT not in metrics["baselines"] and "not words" in metrics["baselines_not_run"]["zero-shot"]
    prior = yaml.safe_load((out / "run_config.yaml").read_text())["label_names"]
    assert prior["used"] is False and "not words" in prior["reason"] and "--label-descriptions" in prior["reason"]
    assert json.loads((out / "config.json").read_text())["head"]["type"] == "LinearHead"

    table = descriptions(tmp_path / "labels.csv", "label,description\n0,sunny weather\n1,rainy weather\n")
    described = invoke("fit", str(data), "--backbone", str(tiny_text_model), "--label-descriptions", str(table),
                       "--output", str(tmp_path / "described"), *COMMON)
    assert described.exit_code == 0, described.output
    assert json.loads((tmp_path / "described" / "config.json").read_text())["head"]["type"] == "PrototypeHead"


@pytest.mark.parametrize("text, expected", [
    ("label,description\npositive,praise\npostive,a typo\n",
     ["row 3", "'postive' is not a class", "negative, positive", "fix the label or drop the row"]),
    ("label,description\npositive,praise\nnegative,\n",
     ["row 3", "description of 'negative' is empty", "write one line about the class or drop the row"]),
    ("label,description\npositive,praise\npositive,again\n", ["row 3", "described twice", "keep one row"]),
])
def test_bad_description_rows_are_refused_before_the_backbone_runs(text_csv: Path, tiny_text_model: Path,
                                                                    tmp_path: Path, text: str,
                                                                    expected: list[str]) -> None:
    table = descriptions(tmp_path / "labels.csv", text)
    out = tmp_path / "model"
    result = invoke("fit", str(text_csv), "--backbone", str(tiny_text_model), "--label-descriptions", str(table),
                    "--output", str(out), *COMMON)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert "--label-descriptions" in result.output and "labels.csv" in result.output
    for part in expected:
        assert part in " ".join(result.output.split()), part
    assert not out.exists() and table.read_text(encoding="utf-8") == text


def test_missing_description_file_is_refused_before_data_is_read(tiny_text_model: Path, tmp_path: Path) -> None:
    result = invoke("fit", str(tmp_path / "no-data.csv"), "--backbone", str(tiny_text_model),
                    "--label-descriptions", str(tmp_path / "nowhere.csv"), "--output", str(tmp_path / "m"), *COMMON)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "--label-descriptions" in output and "nowhere.csv does not exist" in output
    assert "label,description" in output and "Traceback" not in output
    assert not (tmp_path / "m").exists()


def test_label_descriptions_with_image_data_are_refused(image_folder: Path, tmp_path: Path) -> None:
    table = descriptions(tmp_path / "labels.csv", "label,description\ncat,a small furry pet\n")
    result = invoke("fit", str(image_folder), "--backbone", TINY_IMAGE_BACKBONE, "--label-descriptions",
                    str(table), "--output", str(tmp_path / "m"), *COMMON)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "--label-descriptions" in output and "image backbone does not embed texts" in output
    assert "leave --label-descriptions out" in output and "Traceback" not in output
    assert not (tmp_path / "m").exists()
