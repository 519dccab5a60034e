"""Fine-tuning on the packaged weights and real data: short versions of benchmarks/finetune_transfer.py.

The full runs (EfficientNet-Lite0 on Fashion-MNIST with 100 labels per class, MiniLM on VADER movie snippets with
400 per class, five epochs) take tens of minutes on two CPU cores; their figures are in
benchmarks/results/finetune_transfer.json. These keep the same procedure at a size that runs in a few minutes,
and assert what holds at that size with a wide margin: fine-tuning from pretrained weights beats the same network
trained from random weights; lp-ft (which starts from the probe) stays near the probe.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _run(task: str, tmp_path: Path, **sizes) -> dict:
    from transferkit.backbones.packaged import lite_available, minilm_available

    if not (lite_available(0) if task == "fashion" else minilm_available()):
        pytest.skip("packaged weights not installed")
    try:
        from finetune_transfer import run_task
    except ImportError:  # pragma: no cover
        pytest.skip("benchmarks/ not present")
    from transferkit.errors import DataNotFoundError

    try:
        return run_task(task, work=tmp_path, lr=None, echo=lambda *_: None, **sizes)
    except DataNotFoundError as exc:
        pytest.skip(str(exc))


def _accuracies(result: dict) -> dict[str, float]:
    acc = {name: row["accuracy"] for name, row in result["results"].items()}
    for model in ("finetune", "lp-ft"):
        assert result["comparisons"][f"{model} vs scratch"]["verdict"] == "helped", (model, acc)
    return acc


def test_minilm_on_vader_movies(tmp_path: Path) -> None:
    acc = _accuracies(_run("vader", tmp_path, shots=100, n_test=300, epochs=3, batch_size=32))
    assert acc["lp-ft"] >= acc["linear-probe"] - 0.03, acc
    assert acc["finetune"] > 0.6, acc


def test_efficientnet_lite0_on_fashion_mnist(tmp_path: Path) -> None:
    # Twelve steps: too few for a new head to catch up with the probe, enough for lp-ft to keep its probed head
    # working while the backbone moves (the full benchmark gives both their budget).
    acc = _accuracies(_run("fashion", tmp_path, shots=10, n_test=100, epochs=2, batch_size=16))
    assert acc["lp-ft"] > acc["finetune"] + 0.1, acc
    assert acc["lp-ft"] >= acc["linear-probe"] - 0.15, acc
