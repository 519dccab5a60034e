"""Two CPU processes (DDP over gloo) make the same updates as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from test_cli import run

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def _train(out: Path, devices: int, work: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), str(devices), str(work)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_two_processes_end_where_one_does(tmp_path: Path) -> None:
    single = _train(tmp_path / "one.pt", 1, tmp_path / "w1")
    double = _train(tmp_path / "two.pt", 2, tmp_path / "w2")
    assert single["world_size"] == 1 and double["world_size"] == 2
    assert single["steps"] == double["steps"] and single["best_epoch"] == double["best_epoch"]
    assert abs(single["best_score"] - double["best_score"]) < 1e-6
    for key, value in single["state"].items():
        torch.testing.assert_close(double["state"][key], value, atol=1e-6, rtol=1e-5)
    # and training did something: the weights left their (shared) seeded start
    torch.manual_seed(0)
    start = torch.nn.Linear(6, 16)
    assert not torch.allclose(single["state"]["0.weight"], start.weight.detach())


def test_cli_fit_on_two_processes_reports_once_and_saves(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    proc = run("fit", str(text_csv), "--backbone", str(tiny_text_model), "--strategy", "finetune", "--epochs", "1",
               "--batch-size", "4", "--devices", "2", "--distributed", "ddp", "--tracking-uri", "off",
               "--work-dir", str(tmp_path / "work"), "--baselines", "raw", "--device", "cpu", "--output", str(out))
    assert proc.stdout.count("(finetune)") == 1 and proc.stdout.count("saved:") == 1
    import json

    training = json.loads((out / "metrics.json").read_text())["training"]["training"]
    assert training["world_size"] == 2
