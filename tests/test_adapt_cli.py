"""``transferkit adapt`` from the command line: a tiny text model end to end, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TEXTS
from transferkit.cli.main import _register_commands, app

_register_commands()


def _write(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def domains(tmp_path):
    source = [(t, label) for label, texts in TEXTS.items() for t in texts]
    target = [(f"honestly, {t}!!", label) for t, label in source]
    return (_write(tmp_path / "source.csv", source, ("text", "label")),
            _write(tmp_path / "target.csv", target, ("text", "sentiment")))


def test_adapt_cli_end_to_end(domains, tmp_path, tiny_text_model):
    source, target = domains
    out = tmp_path / "adapted"
    result = CliRunner().invoke(app, [
        "adapt", "--source", str(source), "--target", str(target), "--target-labels", "sentiment",
        "--method", "auto", "--candidates", "dann,coral-features", "--tradeoff", "0.5", "--epochs", "1",
        "--batch-size", "8", "--backbone", str(tiny_text_model), "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "<- chosen" in result.output and "best in hindsight" in result.output
    report = json.loads((out / "adaptation.json").read_text())
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Domain adaptation" in html and "class mix" in html and "target, predicted by the chosen model" in html
    assert {r["name"] for r in report["candidates"]} == {"source-only", "dann@0.5", "coral-features"}
    assert report["target_labels"]["n"] == 16
    assert (out / "embedding.png").read_bytes()[:4] == b"\x89PNG"
    predicted = CliRunner().invoke(app, ["predict", str(out), "what a great film"])
    assert predicted.exit_code == 0, predicted.output
    assert "positive" in predicted.output or "negative" in predicted.output
    again = CliRunner().invoke(app, ["adapt", "--source", str(source), "--target", str(target),
                                     "--method", "coral-features", "--backbone", str(tiny_text_model),
                                     "--output", str(out), "--quiet"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_adapt_cli_probe_mcc_saves_a_linear_model_that_loads_and_predicts_as_adapted(domains, tmp_path,
                                                                                   tiny_text_model):
    from transferkit.models.artifacts import load_model
    from transferkit.data.sources import load_data
    from transferkit.models.heads.linear import LinearHead

    source, target = domains
    out = tmp_path / "adapted"
    result = CliRunner().invoke(app, [
        "adapt", "--source", str(source), "--target", str(target), "--method", "probe-mcc", "--epochs", "2",
        "--batch-size", "8", "--backbone", str(tiny_text_model), "--output", str(out), "--embedding", "none",
        "--target-prior", "positive=0.7,negative=0.3", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "adaptation.json").read_text())
    assert report["chosen"]["name"] == "probe-mcc@1"
    assert report["target_prior"] == {"negative": 0.3, "positive": 0.7}
    assert "target class mix given: negative 0.30, positive 0.70; predictions moved to it from the source's " \
        "negative 0.50, positive 0.50" in result.output
    chosen_row = next(r for r in report["candidates"] if r["name"] == "probe-mcc@1")
    assert chosen_row["logit_shift"] == pytest.approx([np.log(0.3 / 0.5), np.log(0.7 / 0.5)], abs=1e-4)
    assert {r["name"] for r in report["candidates"]} == {"source-only", "probe-mcc@1"}
    model = load_model(out)
    assert isinstance(model.head, LinearHead)
    fractions = next(r for r in report["candidates"] if r["name"] == "probe-mcc@1")["target_predicted_fractions"]
    predicted = model.predict(load_data(str(target), label_column="sentiment"))
    # the saved model is the adapted one: it predicts the target's class mix the report recorded for it
    assert {c: round(predicted.count(c) / len(predicted), 4) for c in model.classes} == fractions


@pytest.mark.parametrize("extra, message", [
    (["--method", "magic"], "option 'method'"),
    (["--target-labels", "label"], "--target-labels 'label'"),
    (["--validator", "accuracy"], "option 'validator'"),
    (["--target-prior", "positive"], "--target-prior: cannot read 'positive'"),
    (["--target-prior", "positive=0.7,negative=0.7"], "sum to 1.4"),
    (["--target-prior", "positive=0.7,neutral=0.3"], "missing ['negative']"),
])
def test_adapt_cli_errors(domains, extra, message):
    source, target = domains
    result = CliRunner().invoke(app, ["adapt", "--source", str(source), "--target", str(target), *extra])
    assert result.exit_code == 2
    assert message in result.output


def test_adapt_cli_reads_a_config_file_and_names_unknown_options(domains, tmp_path):
    source, target = domains
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: dann\ntradeoffs: {dann: [0.1]}\nwarmstart: true\n")
    result = CliRunner().invoke(app, ["adapt", "--source", str(source), "--target", str(target), "-c", str(bad)])
    assert result.exit_code == 2 and "unknown option 'warmstart'" in result.output
    missing = CliRunner().invoke(app, ["adapt", "--source", str(source)])
    assert missing.exit_code == 2 and "--target" in missing.output


def test_adapt_cli_rejects_mismatched_modalities(domains, image_folder):
    source, _ = domains
    result = CliRunner().invoke(app, ["adapt", "--source", str(image_folder), "--target", str(source),
                                      "--method", "coral-features"])
    assert result.exit_code == 2
    assert "one modality" in result.output
