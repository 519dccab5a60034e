"""Crash safety and determinism: a run killed with SIGKILL resumes to the weights of an uninterrupted run; a killed
run leaves no output that looks complete; the same seed gives the same metrics and weights for every strategy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import transferkit as tk
from conftest import TEXTS, write_text_csv
from test_cli import CLI, run


def _many_rows(path: Path, copies: int) -> Path:
    """The fixture's 16 reviews with numbered variants: enough batches that an epoch takes a while."""
    rows = [(f"{text} ({i})", label) for i in range(copies) for label, texts in TEXTS.items() for text in texts]
    return write_text_csv(path, rows)


def _fit_args(data: Path, backbone: Path, work: Path, out: Path) -> list[str]:
    return ["fit", str(data), "--backbone", str(backbone), "--strategy", "finetune", "--epochs", "4",
            "--patience", "0", "--batch-size", "4", "--baselines", "raw", "--tracking-uri", "off", "--device", "cpu",
            "--test-fraction", "0.25", "--seed", "3", "--work-dir", str(work), "--output", str(out), "-q"]


def _weights(folder: Path) -> dict[str, np.ndarray]:
    return load_file(str(folder / "model.safetensors"))


def test_kill_9_during_fit_then_resume_ends_with_the_uninterrupted_weights(tiny_text_model: Path,
                                                                            tmp_path: Path) -> None:
    data = _many_rows(tmp_path / "reviews.csv", copies=12)
    work, out = tmp_path / "work", tmp_path / "model"
    args = _fit_args(data, tiny_text_model, work, out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    last = work / "finetune" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be killed (exit {proc.returncode}): "
                    f"{proc.stderr.read().decode()[-2000:]}")
    time.sleep(0.3)  # into the next epoch (or the middle of writing a checkpoint: either must be survivable)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # nothing in the output folder looks like a finished model
    assert not (out / "config.json").exists() and not (out / "model.safetensors").exists()

    run(*args, "--resume")
    reference = tmp_path / "reference"
    run(*_fit_args(data, tiny_text_model, tmp_path / "work-ref", reference))
    resumed, uninterrupted = _weights(out), _weights(reference)
    assert resumed.keys() == uninterrupted.keys()
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    assert (out / "metrics.json").read_text() != ""  # the resumed run finished and evaluated


STRATEGY_OPTIONS = {
    "linear-probe": {},
    "finetune": {"epochs": 2},
    "lp-ft": {"epochs": 2, "finetune": {"keep_probe": False}},  # (else the probe may be the result: no move)
    "lora": {"epochs": 2, "lora": {"rank": 2}},
    "l2sp": {"epochs": 2},
}


@pytest.mark.parametrize("strategy", list(STRATEGY_OPTIONS))
def test_same_seed_same_metrics_and_weights(strategy: str, tiny_text_model: Path, tmp_path: Path) -> None:
    data = _many_rows(tmp_path / "reviews.csv", copies=2)

    def once(name: str):
        result = tk.fit(str(data), backbone=str(tiny_text_model), strategy=strategy, seed=5, batch_size=4,
                        baselines=["raw"], tracking_uri="off", device="cpu", progress=False, no_cache=True,
                        work_dir=str(tmp_path / f"work-{name}"), output=str(tmp_path / name),
                        **STRATEGY_OPTIONS[strategy])
        return result, _weights(tmp_path / name)

    (first, weights_a), (second, weights_b) = once("a"), once("b")
    assert first.metrics == second.metrics
    assert first.baselines == second.baselines
    for name, value in weights_a.items():
        np.testing.assert_array_equal(weights_b[name], value, err_msg=name)
    if strategy != "linear-probe":  # and training did move the backbone from its start
        start = tk.load_model(tmp_path / "a").backbone  # noqa: F841 (loads: the folder is complete)
        initial = load_file(str(next(Path(tiny_text_model).glob("*.safetensors"))))
        moved = [k for k in weights_a if k.startswith("backbone.") and
                 k.removeprefix("backbone.model.") in initial and
                 not np.array_equal(weights_a[k], initial[k.removeprefix("backbone.model.")])]
        assert moved, "no backbone weight changed"
