"""ONNX export: dynamic shapes, parity with PyTorch, a parity check that catches a broken file, the ONNX Runtime
feature extractor, and the `transferkit export` command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_IMAGE_BACKBONE, write_image_folder
from transferkit.backbones import create_backbone
from transferkit.compress.onnx import (
    OnnxFeatureExtractor,
    check_parity,
    export_backbone,
    export_model,
    onnx_session,
    read_metadata,
    sample_batches,
)
from transferkit.data.dataset import Dataset
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError, ExportError
from transferkit.features.extract import run_backbone

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def image_backbone():
    torch.manual_seed(0)
    return create_backbone(TINY_IMAGE_BACKBONE).eval()


@pytest.fixture(scope="module")
def image_export(image_backbone, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "backbone.onnx"
    return export_backbone(image_backbone, path, tolerance=1e-4)


def _images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 40, 40, 3), dtype=np.uint8)
    return from_arrays(images, [str(i % 2) for i in range(n)], origin="test images")


def test_image_backbone_export_has_dynamic_batch_and_matches_pytorch(image_backbone, image_export) -> None:
    assert image_export.parity is not None and image_export.parity.passed
    assert image_export.parity.batch_sizes == [1, 3, 4] and image_export.parity.max_abs_diff < 1e-4
    session = onnx_session(image_export.path, threads=1)
    (pixels,) = session.get_inputs()
    assert pixels.name == "pixels" and isinstance(pixels.shape[0], str)  # symbolic batch dimension
    assert pixels.shape[1:] == [3, 160, 160]
    for n in (1, 7):
        batch = image_backbone.collate([image_backbone.prepare(item) for item in _images(n, seed=n).items])
        got = session.run(None, {"pixels": np.ascontiguousarray(batch.numpy())})[0]
        with torch.inference_mode():
            expected = image_backbone.forward_features(batch).numpy()
        assert got.shape == (n, image_backbone.num_features)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    metadata = read_metadata(image_export.path)
    assert metadata["output"] == "features" and json.loads(metadata["preprocessing"])["input_size"] == 160


def test_parity_check_fails_on_a_perturbed_initializer(image_backbone, image_export, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(image_export.path))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(largest).copy()
    values.flat[: max(1, values.size // 10)] += 0.5
    largest.CopyFrom(numpy_helper.from_array(values, largest.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))

    batches, source = sample_batches(image_backbone, sizes=(2, 3))
    reference = image_backbone.forward_features
    with pytest.raises(ExportError, match="broken.onnx.*differ"):
        check_parity(reference, broken, batches, "image", tolerance=1e-3, input_source=source)
    # The intact file passes the same check with the same inputs.
    report = check_parity(reference, image_export.path, batches, "image", tolerance=1e-3, input_source=source)
    assert report.passed and report.examples == 5


def test_onnx_feature_extractor_matches_run_backbone(image_backbone, image_export) -> None:
    data = _images(11, seed=3)
    extractor = OnnxFeatureExtractor(image_export.path, image_backbone, threads=1)
    got = extractor.run(data, batch_size=4)
    expected = run_backbone(image_backbone, data, batch_size=4, progress=False)
    assert got.shape == (11, image_backbone.num_features) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_text_backbone_export_has_dynamic_batch_and_sequence(tiny_text_model: Path, tmp_path: Path) -> None:
    backbone = create_backbone(str(tiny_text_model), max_length=64)
    result = export_backbone(backbone, tmp_path / "text.onnx", tolerance=1e-4)
    assert result.inputs == ["input_ids", "attention_mask"] and result.parity.passed
    session = onnx_session(result.path, threads=1)
    for spec in session.get_inputs():
        assert all(isinstance(dim, str) for dim in spec.shape), spec.shape  # batch and sequence are symbolic
    texts = ["fine", "a considerably longer text than the first one, with many more tokens", "mid length text"]
    batch = backbone.collate(texts)
    got = session.run(None, {k: batch[k].numpy() for k in ("input_ids", "attention_mask")})[0]
    with torch.inference_mode():
        expected = backbone.forward_features(batch).numpy()
    assert got.shape == (3, backbone.num_features)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    extractor = OnnxFeatureExtractor(result.path, backbone, threads=1)
    data = Dataset("text", texts, None, "texts")
    np.testing.assert_allclose(extractor.run(data, batch_size=2), run_backbone(backbone, data, progress=False),
                               atol=1e-4, rtol=0)


def test_model_export_returns_logits_in_class_order(image_backbone, tmp_path: Path) -> None:
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    torch.manual_seed(1)
    head = LinearHead(image_backbone.num_features, 3)
    with torch.no_grad():
        head.mean.normal_()
        head.scale.uniform_(0.5, 2.0)
    model = TransferModel(image_backbone, head, ["ant", "bee", "cow"]).eval()
    result = export_model(model, tmp_path / "model.onnx", data=_images(8), tolerance=1e-4)
    assert result.output == "logits" and result.parity.input_source.startswith("8 examples of test images")
    assert json.loads(read_metadata(result.path)["classes"]) == ["ant", "bee", "cow"]
    batch = image_backbone.collate([image_backbone.prepare(item) for item in _images(5, seed=9).items])
    got = onnx_session(result.path).run(None, {"pixels": np.ascontiguousarray(batch.numpy())})[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, model(batch).numpy(), atol=1e-4, rtol=0)


def test_bad_export_options_raise_config_errors(image_backbone, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tolerance"):
        export_backbone(image_backbone, tmp_path / "x.onnx", tolerance=-1.0)
    with pytest.raises(ConfigError, match="is a folder"):
        export_backbone(image_backbone, tmp_path, check=False)
    with pytest.raises(ConfigError, match="text data"):
        sample_batches(image_backbone, Dataset("text", ["a", "b"], None, "texts"))


def test_export_command_end_to_end(tmp_path: Path) -> None:
    import transferkit

    images = write_image_folder(tmp_path / "images", per_class=5)
    folder = tmp_path / "model"
    transferkit.fit(str(images), backbone=TINY_IMAGE_BACKBONE, output=str(folder), no_cache=True, progress=False,
                    test_fraction=0.4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "transferkit.cli.main", "export"]
    out = tmp_path / "exported" / "m.onnx"
    proc = subprocess.run([*cli, str(folder), "--format", "onnx", "--output", str(out), "--tolerance", "1e-4",
                           "--data", str(images)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and f"exported: {out}" in proc.stdout and "max difference" in proc.stdout

    from transferkit.models.artifacts import load_model

    model = load_model(folder)
    batch = model.backbone.collate([model.backbone.prepare(p) for p in sorted(images.glob("*/*.png"))[:4]])
    got = onnx_session(out).run(None, {"pixels": np.ascontiguousarray(batch.numpy())})[0]
    with torch.inference_mode():
        np.testing.assert_allclose(got, model(batch).numpy(), atol=1e-4, rtol=0)
    assert json.loads(read_metadata(out)["classes"]) == model.classes

    again = subprocess.run([*cli, str(folder), "--output", str(out)], capture_output=True, text=True, env=env,
                           timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    wrong = subprocess.run([*cli, str(folder), "--format", "tflite"], capture_output=True, text=True, env=env,
                           timeout=300)
    assert wrong.returncode == 2 and "--format" in wrong.stderr and "onnx" in wrong.stderr
