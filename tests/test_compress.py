"""Compression: int8 (dynamic and static) and pruned (magnitude and structured) models still load and predict, the
pruning is what was asked and is permanent, the ONNX parity check fails on a broken export, `predict --runtime onnx`
matches PyTorch, and `transferkit compress` makes the variants and the trade-off table end to end."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE, _class_image
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError, ExportError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CLASSES = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    labels = [name for name in CLASSES for _ in range(12)]
    arrays = np.stack([_class_image(rng, CLASSES.index(name), size=24) for name in labels])
    data = from_arrays(arrays, labels, origin="tiny-images")
    test = np.arange(0, 36, 3)
    return data.subset(np.setdiff1d(np.arange(36), test)), data.subset(test)


@pytest.fixture(scope="module")
def model_dir(images, tmp_path_factory) -> Path:
    train, test = images
    root = tmp_path_factory.mktemp("compress")
    tk.fit(train, test=test, backbone=TINY_IMAGE_BACKBONE, strategy="finetune", output=str(root / "model"),
           baselines=["raw"], lr=1e-2, epochs=2, batch_size=8, tracking_uri="off", progress=False, device="cpu",
           augment="none", patience=0, work_dir=str(root / "work"))
    return root / "model"


@pytest.fixture(scope="module")
def exported(model_dir) -> Path:
    from transferkit.workflows.export import export_model_folder

    return export_model_folder(model_dir).path


def _proba(model, data) -> np.ndarray:
    return model.predict_proba(data, device="cpu", progress=False, cache=None)


def test_predict_with_onnx_runtime_matches_pytorch(model_dir, exported, images) -> None:
    _, test = images
    torch_rows = tk.predict(model_dir, np.asarray(test.items), progress=False)
    onnx_rows = tk.predict(model_dir, np.asarray(test.items), progress=False, runtime="onnx")
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    for a, b in zip(torch_rows, onnx_rows):
        for name, p in a["probabilities"].items():
            assert b["probabilities"][name] == pytest.approx(p, abs=1e-4)
    with pytest.raises(ConfigError, match="transferkit export"):
        tk.predict(model_dir.parent / "work", np.asarray(test.items), runtime="onnx")
    with pytest.raises(ConfigError, match="runtime"):
        tk.predict(model_dir, np.asarray(test.items), runtime="tensorrt")


def test_parity_check_fails_on_a_deliberately_broken_export(model_dir, exported, images, tmp_path: Path) -> None:
    """An export whose graph computes something else (its head's weights changed) fails the check loudly."""
    import onnx
    from onnx import numpy_helper

    from transferkit.backbones.onnx_graph import sample_batches
    from transferkit.compress.onnx import check_parity

    model = tk.load_model(model_dir)
    proto = onnx.load(str(exported))
    shapes = {(len(CLASSES), model.head.in_features), (model.head.in_features, len(CLASSES))}
    head = next(t for t in proto.graph.initializer if tuple(t.dims) in shapes)
    values = numpy_helper.to_array(head).copy()
    swapped = values[::-1] if values.shape[0] == len(CLASSES) else values[:, ::-1]
    head.CopyFrom(numpy_helper.from_array(swapped.copy(), head.name))  # classes swapped: a silent mislabelling
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    batches, _ = sample_batches(model.backbone, images[1])
    with pytest.raises(ExportError, match="differ from PyTorch's"):
        check_parity(model, broken, batches, "image")
    report = check_parity(model, exported, batches, "image")  # the intact file passes on the same inputs
    assert report.passed and report.max_abs_diff < 1e-3


@pytest.mark.parametrize("method, signed", [("dynamic", False), ("static", False), ("static", True)])
def test_a_quantized_model_loads_and_predicts(method, signed, model_dir, exported, images, tmp_path: Path) -> None:
    from transferkit.compress.quantize import quantize_model

    train, test = images
    model = tk.load_model(model_dir)
    path = tmp_path / f"int8-{method}.onnx"
    report = quantize_model(model, path, method=method, calibration=train if method == "static" else None,
                            check=test, float_path=exported, signed_activations=signed)
    assert report.method == method and report.check_examples == len(test)
    assert report.size_bytes < report.float_size_bytes
    if method == "static":  # convolutions as int8: the file is about a quarter of the float one
        assert report.size_ratio < 0.5 and report.calibration_examples == len(train)
        import onnx

        proto = onnx.load(str(path))
        types = {i.name: i.data_type for i in proto.graph.initializer}
        activations = {types.get(n.input[2]) for n in proto.graph.node if n.op_type == "QuantizeLinear"}
        assert activations == {onnx.TensorProto.INT8 if signed else onnx.TensorProto.UINT8}
        # the stem (the convolution reading the image) and the head stay float; every other convolution is int8
        produced_by_dequantize = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        convs = [n for n in proto.graph.node if n.op_type == "Conv"]
        quantized = [n.input[1] in produced_by_dequantize for n in convs]
        image_input = proto.graph.input[0].name
        assert not quantized[0] and image_input in convs[0].input and all(quantized[1:]), quantized
        head = [n for n in proto.graph.node if n.op_type in ("Gemm", "MatMul")]
        assert head and not any(n.input[1] in produced_by_dequantize for n in head)
    assert 0.0 <= report.agreement <= 1.0
    rows = tk.predict(model_dir, np.asarray(test.items), progress=False, runtime="onnx", onnx_file=str(path))
    assert len(rows) == len(test) and all(r["label"] in CLASSES for r in rows)
    assert all(abs(sum(r["probabilities"].values()) - 1.0) < 1e-4 for r in rows)


def test_static_quantization_needs_calibration_data(model_dir, tmp_path: Path) -> None:
    from transferkit.compress.quantize import quantize_model

    with pytest.raises(ConfigError, match="calibration"):
        quantize_model(tk.load_model(model_dir), tmp_path / "x.onnx", method="static")
    with pytest.raises(ConfigError, match="method"):
        quantize_model(tk.load_model(model_dir), tmp_path / "x.onnx", method="int4")


def test_magnitude_pruning_is_global_permanent_and_survives_recovery_and_reloading(model_dir, images,
                                                                                    tmp_path: Path) -> None:
    from transferkit.compress.prune import prunable_layers, prune_magnitude, recover

    train, test = images
    model = tk.load_model(model_dir)
    report = prune_magnitude(model, 0.6)
    layers = prunable_layers(model.backbone)
    weights = torch.cat([m.weight.detach().reshape(-1) for _, m in layers])
    assert float((weights == 0).float().mean()) == pytest.approx(0.6, abs=0.01)
    assert not any(hasattr(m, "weight_orig") or hasattr(m, "weight_mask") for _, m in layers)  # made permanent
    assert report.nonzero_after < report.nonzero_before and report.parameters_after == report.parameters_before
    zeros = [m.weight.detach() == 0 for _, m in layers]
    before = [m.weight.detach().clone() for _, m in layers]
    recover(model, train, epochs=1, lr=1e-3, batch_size=8, work_dir=str(tmp_path / "recover"))
    assert any(not torch.equal(b, m.weight.detach()) for b, (_, m) in zip(before, layers))  # it trained
    assert all(bool((m.weight.detach()[z] == 0).all()) for z, (_, m) in zip(zeros, layers))  # zeros stayed
    tk.save_model(model, tmp_path / "pruned", include_backbone=True)
    reloaded = tk.load_model(tmp_path / "pruned")
    np.testing.assert_allclose(_proba(reloaded, test), _proba(model, test), atol=1e-6)


def test_structured_pruning_shrinks_channels_and_reloads_from_the_record(model_dir, images, tmp_path: Path) -> None:
    from transferkit.compress.prune import count_parameters, prune_structured

    _, test = images
    model = tk.load_model(model_dir)
    original = copy.deepcopy(model)
    report = prune_structured(model, 0.5)
    assert report.parameters_after < report.parameters_before and report.changes
    expanded = [c for c in report.changes if c["module"].endswith("conv_pw")]
    originals = {n: m.out_channels for n, m in original.backbone.named_modules() if n.endswith("conv_pw")}
    assert expanded and all(c["size"] == originals[c["module"]] - round(0.5 * originals[c["module"]])
                            for c in expanded)
    out = _proba(model, test)
    assert out.shape == (len(test), len(CLASSES)) and np.isfinite(out).all()
    tk.save_model(model, tmp_path / "pruned", include_backbone=True)
    saved = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert saved["backbone"]["architecture_changes"] == report.changes
    reloaded = tk.load_model(tmp_path / "pruned")
    assert count_parameters(reloaded.backbone) == count_parameters(model.backbone)
    np.testing.assert_allclose(_proba(reloaded, test), out, atol=1e-6)


def test_structured_pruning_of_a_transformer_removes_neurons_and_heads(tiny_text_model, tmp_path: Path) -> None:
    from transferkit.backbones import create_backbone
    from transferkit.compress.prune import prune_structured
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    torch.manual_seed(0)
    backbone = create_backbone(str(tiny_text_model))
    model = TransferModel(backbone, LinearHead(backbone.num_features, 2), ["neg", "pos"], strategy="finetune").eval()
    report = prune_structured(model, 0.5, heads=0.5)
    layer = backbone.model.encoder.layer[0]
    assert layer.intermediate.dense.out_features == 32 and layer.output.dense.in_features == 32
    assert layer.attention.self.num_attention_heads == 1 and layer.attention.self.query.out_features == 16
    texts = from_arrays(["a fine film", "dull and long, a waste of an evening"], ["pos", "neg"], origin="texts")
    out = _proba(model, texts)
    tk.save_model(model, tmp_path / "pruned-text", include_backbone=True)
    reloaded = tk.load_model(tmp_path / "pruned-text")
    np.testing.assert_allclose(_proba(reloaded, texts), out, atol=1e-6)
    assert report.parameters_after < report.parameters_before


def test_compress_makes_the_variants_and_the_tradeoff_table(model_dir, images, tmp_path: Path) -> None:
    from transferkit.compress.tradeoff import read_tradeoff
    from transferkit.workflows.compress import compress_model

    train, test = images
    report = compress_model(model_dir, test, train=train, output=tmp_path / "variants",
                            variants=["onnx", "int8", "magnitude"], recovery_epochs=1, recovery_lr=1e-3,
                            batch_size=8, threads=1)
    names = [r.name for r in report.rows]
    assert names == ["float", "onnx", "int8", "magnitude"]
    float_row, onnx_row = report.row("float"), report.row("onnx")
    assert onnx_row.accuracy == pytest.approx(float_row.accuracy)  # same function, other runtime
    assert report.row("int8").facts["method"] == "static"          # images with calibration data
    assert report.row("int8").size_bytes < onnx_row.size_bytes
    assert report.row("magnitude").parameters < float_row.parameters
    for row in report.rows:
        assert set(row.latency_ms) == {"1", "32"} and all(v > 0 for v in row.latency_ms.values())
        assert 0.0 <= row.accuracy <= 1.0 and row.size_bytes > 0
    table = report.table()
    assert "int8" in table and "ms @32" in table
    saved = read_tradeoff(model_dir)
    assert saved is not None and [r["name"] for r in saved["rows"]] == names
    for variant in ("int8", "magnitude"):
        rows = tk.predict(tmp_path / "variants" / variant, np.asarray(test.items), progress=False,
                          runtime="onnx" if variant == "int8" else "torch")
        assert len(rows) == len(test)
    with pytest.raises(ConfigError, match="not empty"):
        compress_model(model_dir, test, output=tmp_path / "variants", variants=["onnx"])
    with pytest.raises(ConfigError, match="variants"):
        compress_model(model_dir, test, output=tmp_path / "other", variants=["int3"])
    with pytest.raises(ConfigError, match="calibration"):  # checked before any work
        compress_model(model_dir, test, output=tmp_path / "other", variants=["int8"], quantization="static")
    assert not (tmp_path / "other").exists()


def test_compress_and_predict_commands_end_to_end(model_dir, images, tmp_path: Path) -> None:
    from PIL import Image

    _, test = images
    root = tmp_path / "test-images"
    for index, (item, label) in enumerate(zip(test.items, test.labels)):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(item)).save(root / label / f"{index:03d}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "transferkit.cli.main"]
    proc = subprocess.run([*cli, "compress", str(model_dir), "--data", str(root), "--calibration", str(root),
                           "--variants", "int8", "--output", str(tmp_path / "out"), "--threads", "1", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "float" in proc.stdout and "int8" in proc.stdout and "tradeoff.json" in proc.stdout
    predicted = subprocess.run([*cli, "predict", str(tmp_path / "out" / "int8"), str(root), "--runtime", "onnx",
                                "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    lines = [json.loads(line) for line in predicted.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(test) and all(line["label"] in CLASSES for line in lines)


def test_quantizing_a_text_model_leaves_the_working_directory_clean(tiny_text_model, tmp_path: Path,
                                                                    monkeypatch) -> None:
    from transferkit.backbones import create_backbone
    from transferkit.workflows.export import export_model_folder
    from transferkit.compress.quantize import quantize_model
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    torch.manual_seed(0)
    backbone = create_backbone(str(tiny_text_model), max_length=32)
    model = TransferModel(backbone, LinearHead(backbone.num_features, 2), ["neg", "pos"], strategy="finetune").eval()
    tk.save_model(model, tmp_path / "text-model", include_backbone=True)
    exported = export_model_folder(tmp_path / "text-model").path
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    texts = from_arrays(["a fine film", "dull and long, a waste of an evening"], ["pos", "neg"], origin="texts")
    report = quantize_model(tk.load_model(tmp_path / "text-model"), tmp_path / "int8.onnx", method="dynamic",
                            check=texts, float_path=exported)
    assert report.size_bytes < report.float_size_bytes
    assert list(cwd.iterdir()) == []  # ONNX Runtime's shape-inference dumps went to a scratch folder
