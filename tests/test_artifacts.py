"""Saved models: a folder of safetensors + JSON that reloads to the same predictions and never unpickles."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE
from transferkit.errors import ArtifactError


@pytest.fixture
def text_model(text_csv: Path, tiny_text_model: Path, tmp_path: Path):
    out = tmp_path / "model"
    result = tk.fit(str(text_csv), backbone=str(tiny_text_model), output=str(out), seed=3, progress=False)
    return result, out


def test_folder_layout_and_contents(text_model) -> None:
    result, out = text_model
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "examples.json", "manifest.json",
                                                       "metrics.json", "model.safetensors", "predictions.csv",
                                                       "report.html", "run_config.yaml", "summary.txt"]
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == ["negative", "positive"]
    assert config["backbone"]["weights_included"] is False
    assert len(config["files"]["model.safetensors"]) == 64
    run = yaml.safe_load((out / "run_config.yaml").read_text())
    assert run["seed"] == 3 and run["strategy"] == "linear-probe" and run["n_test"] == result.metrics["n"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == result.accuracy
    assert metrics["comparisons"][0]["baseline"] == "raw"
    assert "test accuracy" in (out / "README.md").read_text()
    assert not list(out.parent.glob(".model.partial-*"))


def test_reload_predicts_the_same(text_model) -> None:
    result, out = text_model
    texts = ["what a great film", "dull and boring"]
    before = tk.predict(result.model, texts, progress=False)
    after = tk.predict(str(out), texts, progress=False)
    for a, b in zip(before, after):
        assert a["label"] == b["label"]
        for name, p in a["probabilities"].items():
            assert abs(p - b["probabilities"][name]) < 1e-6


def test_random_backbone_weights_are_saved(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "img-model"
    result = tk.fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, output=str(out), test_fraction=0.34,
                    progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"]["weights_included"] is True
    reloaded = tk.load_model(out)
    assert reloaded.backbone.weights_digest() == result.model.backbone.weights_digest()
    images = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    a = tk.predict(result.model, images, progress=False)
    b = tk.predict(reloaded, images, progress=False)
    for ra, rb in zip(a, b):
        assert ra["probabilities"] == pytest.approx(rb["probabilities"], abs=1e-5)


def test_image_size_is_used_and_reloaded(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "small-input"
    result = tk.fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, image_size=48, output=str(out),
                    test_fraction=0.34, progress=False)
    assert result.model.backbone.prepare(np.zeros((32, 32, 3), dtype=np.uint8)).shape == (3, 48, 48)
    assert result.config["image_size"] == 48
    assert tk.load_model(out).backbone.preprocessing["input_size"] == 48


def test_tampered_weights_are_detected(text_model) -> None:
    _, out = text_model
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum does not match"):
        tk.load_model(out)


def test_missing_files_are_named(text_model) -> None:
    _, out = text_model
    (out / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing model.safetensors"):
        tk.load_model(out)
    with pytest.raises(ArtifactError, match="no such model folder"):
        tk.load_model(out / "nope")


class _Bomb:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Bomb.marker}",))


def test_pickle_in_place_of_the_weights_is_never_executed(text_model, tmp_path: Path) -> None:
    """Even with matching checksums (an attacker rewrote config.json and manifest.json too), loading does not
    unpickle."""
    import hashlib

    _, out = text_model
    _Bomb.marker = tmp_path / "pwned"
    payload = pickle.dumps(_Bomb())
    (out / "model.safetensors").write_bytes(payload)
    (out / "weights.pkl").write_bytes(payload)
    config = json.loads((out / "config.json").read_text())
    config["files"]["model.safetensors"] = hashlib.sha256(payload).hexdigest()
    (out / "config.json").write_text(json.dumps(config))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = {"config.json": hashlib.sha256((out / "config.json").read_bytes()).hexdigest(),
                         "model.safetensors": config["files"]["model.safetensors"]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="safetensors"):
        tk.load_model(out)
    assert not _Bomb.marker.exists()


def test_config_that_is_not_ours(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ArtifactError, match="not a transferkit model"):
        tk.load_model(tmp_path)
