"""Every CLI command end to end, in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_IMAGE_BACKBONE

CLI = [sys.executable, "-m", "transferkit.cli.main"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_help_is_fast_and_explains_every_command() -> None:
    start = time.perf_counter()
    proc = run("--help")
    assert time.perf_counter() - start < 20  # generous: it only has to avoid importing torch
    for command in ("fit", "evaluate", "predict", "models", "demo"):
        assert command in proc.stdout
    fit_help = run("fit", "--help").stdout
    for option in ("--backbone", "--strategy", "--output", "--config", "--shots", "--baselines"):
        assert option in fit_help


def test_help_does_not_import_torch() -> None:
    code = "import sys, transferkit.cli.main as m; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_version() -> None:
    assert run("--version").stdout.startswith("transferkit ")


def test_models_lists_packaged_backbones() -> None:
    out = run("models", "--json").stdout
    names = {entry["name"] for entry in json.loads(out)}
    assert "efficientnet_lite0" in names and "all-MiniLM-L6-v2" in names


def test_fit_evaluate_predict_text(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    fit = run("fit", str(text_csv), "--backbone", str(tiny_text_model), "--output", str(out), "--seed", "1")
    assert "baseline: raw" in fit.stdout and "verdict:" in fit.stdout and f"saved: {out}" in fit.stdout
    assert (out / "model.safetensors").is_file()
    evaluation = run("evaluate", str(out), str(text_csv), "--json", "-q")
    metrics = json.loads(evaluation.stdout)
    assert metrics["n"] == 16 and 0 <= metrics["accuracy"] <= 1 and len(metrics["confusion_matrix"]) == 2
    table = run("evaluate", str(out), str(text_csv), "-q").stdout
    assert "macro-F1" in table and "confusion matrix" in table
    pred = run("predict", str(out), "a lovely film", "a boring mess", "--top-k", "1", "-q")
    rows = [json.loads(line) for line in pred.stdout.splitlines()]
    assert len(rows) == 2 and all(r["label"] in ("negative", "positive") for r in rows)
    assert all(len(r["probabilities"]) == 1 for r in rows)
    csv_out = tmp_path / "pred.csv"
    run("predict", str(out), str(text_csv), "-o", str(csv_out), "-q")
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "input,label,p_negative,p_positive" and len(lines) == 17


def test_fit_from_yaml_config_with_flag_override(image_folder: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    out = tmp_path / "m"
    config.write_text(f"data: {image_folder}\nbackbone: '{TINY_IMAGE_BACKBONE}'\noutput: {out}\nseed: 5\n"
                      "test-fraction: 0.34\n")
    run("fit", "--config", str(config), "--seed", "7", "-q")
    import yaml

    resolved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert resolved["seed"] == 7 and resolved["test_fraction"] == 0.34
    pred = run("predict", str(out), str(image_folder / "cat"), "-q")
    assert len(pred.stdout.splitlines()) == 6


def test_user_errors_print_one_line_without_traceback(tmp_path: Path, text_csv: Path) -> None:
    cases = [
        ("fit", str(tmp_path / "missing.csv")),
        ("fit", str(text_csv), "--batch-size", "0"),
        ("fit", str(text_csv), "--backbone", "no-such-model"),
        ("evaluate", str(tmp_path), str(text_csv)),
    ]
    for args in cases:
        proc = run(*args, check=False)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("error: "), proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_demo_quick(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = run("demo", "--quick", "--output", str(out))
    assert "verdict" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    tasks = {row["task"]: row for row in summary}
    assert set(tasks) == {"fashion-mnist", "vader-movies", "sklearn-digits"}
    assert tasks["vader-movies"]["verdict"] == "helped"
    assert tasks["sklearn-digits"]["verdict"] != "helped"  # the negative-transfer example must not claim success
    assert (out / "fashion-mnist" / "model.safetensors").is_file()
