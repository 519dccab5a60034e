"""Cost in proportion at every size: the raw baseline's bounds, reduced-scale JPEG decoding, streamed features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.data.dataset import Dataset


def _image_arrays(n_per_class: int, classes=("a", "b", "c"), seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for index, name in enumerate(classes):
        for _ in range(n_per_class):
            image = rng.integers(0, 80, size=(12, 12), dtype=np.uint8)
            image[index * 4:(index + 1) * 4] += 150
            images.append(image)
            labels.append(name)
    return Dataset("image", np.stack(images), labels, "arrays")


# ------------------------------------------------------------------------------------------------- raw baseline

def test_raw_baseline_trains_on_a_stated_stratified_sample_above_its_cap(monkeypatch):
    from transferkit.evaluation import baselines

    monkeypatch.setattr(baselines, "RAW_MAX_TRAIN", 30)
    train, test = _image_arrays(40, seed=0), _image_arrays(5, seed=1)
    result = baselines.raw_baseline(train, test, ["a", "b", "c"], seed=0)
    assert result.extra["n_train"] == 30
    assert "stratified sample of 30 of 120 examples" in result.description
    assert result.probabilities.shape == (15, 3)
    assert np.mean(result.predictions == test.label_array(["a", "b", "c"])) >= 0.8


def test_raw_baseline_below_its_cap_uses_every_example_and_says_nothing():
    from transferkit.evaluation.baselines import raw_baseline

    result = raw_baseline(_image_arrays(10), _image_arrays(3, seed=1), ["a", "b", "c"])
    assert result.extra["n_train"] == 30 and "sample" not in result.description


def test_stratified_sample_keeps_every_class_in_proportion():
    from transferkit.evaluation.baselines import stratified_sample

    labels = np.array([0] * 900 + [1] * 99 + [2] * 1)
    rows = stratified_sample(labels, 100, seed=0)
    counts = np.bincount(labels[rows], minlength=3)
    assert counts.tolist() == [90, 10, 1] and np.all(np.diff(rows) > 0)
    assert stratified_sample(labels, 5000, seed=0).tolist() == list(range(1000))


def test_raw_baseline_scores_a_large_test_set_in_chunks_with_the_same_result(monkeypatch):
    from transferkit.evaluation import baselines

    train, test = _image_arrays(10), _image_arrays(7, seed=2)
    whole = baselines.raw_baseline(train, test, ["a", "b", "c"])
    monkeypatch.setattr(baselines, "RAW_TEST_CHUNK", 4)
    chunked = baselines.raw_baseline(train, test, ["a", "b", "c"])
    np.testing.assert_allclose(chunked.probabilities, whole.probabilities, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------------- reduced-scale JPEG decoding

def _photo(path: Path, size=(640, 480)) -> Path:
    from PIL import Image

    y, x = np.mgrid[0:size[1], 0:size[0]]
    pixels = np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def test_a_jpeg_needed_small_is_decoded_at_a_reduced_scale_never_below_the_request(tmp_path):
    from transferkit.data.images import load_rgb

    path = _photo(tmp_path / "photo.jpg")
    assert load_rgb(path).size == (640, 480)
    assert load_rgb(path, at_least=(32, 32)).size == (80, 60)  # 1/8 scale, both sides still >= 32
    assert load_rgb(path, at_least=(200, 200)).size == (320, 240)  # 1/2: 1/4 would make a side smaller than 200


def test_raw_pixels_of_a_jpeg_match_the_fully_decoded_image(tmp_path):
    from PIL import Image

    from transferkit.evaluation.baselines import RawInputEncoder

    path = _photo(tmp_path / "photo.jpg")
    data = Dataset("image", [str(path)], ["a"], "photos")
    fast = RawInputEncoder().fit_transform(data)[0]
    with Image.open(path) as image:
        full = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), np.float32).ravel() / 255
    assert fast.shape == (32 * 32 * 3,)
    assert np.abs(fast - full).mean() < 0.02  # same picture; resampling differs slightly


# ------------------------------------------------------------------------------- training memory bounded by a batch

def _engine_run(tmp_path: Path, model, **overrides):
    import torch

    from transferkit.engine.data import LabelledCollate, LabelledExamples
    from transferkit.engine.plan import TrainingPlan
    from transferkit.engine.settings import EngineSettings
    from transferkit.engine.trainer import run_training

    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 6)).astype(np.float32)
    y = ((X[:, 0] + 0.5 * X[:, 1]) > 0).astype(np.int64)
    train, val = LabelledExamples(X[:72], y[:72], torch.from_numpy), LabelledExamples(X[72:], y[72:], torch.from_numpy)
    settings = EngineSettings(**{**dict(work_dir=tmp_path / "run", epochs=2, batch_size=12, lr=5e-3, patience=0,
                                        tracking_uri="off", progress=False, device="cpu"), **overrides})
    collate = LabelledCollate(torch.stack)
    return run_training(model, TrainingPlan(), train, val, settings, train_collate=collate, val_collate=collate)


def _mlp(batchnorm: bool = False):
    import torch
    from torch import nn

    torch.manual_seed(0)
    middle = [nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.2)] if batchnorm else [nn.Tanh()]
    return nn.Sequential(nn.Linear(6, 12), *middle, nn.Linear(12, 2))


def test_a_batch_over_the_activation_budget_runs_as_micro_batches_with_the_same_updates(tmp_path):
    import torch

    whole, micro = _mlp(), _mlp()
    a = _engine_run(tmp_path / "whole", whole, cpu_activation_budget_bytes=0)
    b = _engine_run(tmp_path / "micro", micro, cpu_activation_budget_bytes=1)  # less than one example's activations
    assert (a.micro_batches, b.micro_batches) == (1, 12)
    assert a.global_step == b.global_step == 2 * 72 // 12  # optimiser steps of the whole batch
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(micro.state_dict()[key], value, atol=1e-6, rtol=1e-5)


def test_measuring_activations_leaves_no_trace_in_batchnorm_statistics_or_random_draws(tmp_path):
    import torch

    measured, plain = _mlp(batchnorm=True), _mlp(batchnorm=True)
    outcome = _engine_run(tmp_path / "measured", measured)  # default budget: measured, nothing to split
    _engine_run(tmp_path / "plain", plain, cpu_activation_budget_bytes=0)
    assert outcome.micro_batches == 1
    for key, value in plain.state_dict().items():
        assert torch.equal(measured.state_dict()[key], value), key


def test_activation_bytes_grow_with_the_layer_width_and_exclude_the_weights():
    import torch
    from torch import nn

    from transferkit.engine.memory import activation_bytes_per_example, micro_batch_factor

    def measure(width: int, size: int) -> int:
        model = nn.Sequential(nn.Linear(10, width), nn.ReLU(), nn.Linear(width, 2))
        x = torch.randn(size, 10)
        return activation_bytes_per_example(lambda: model(x).sum(), size, list(model.parameters()))

    assert measure(1000, 8) == measure(1000, 4)  # per example, whatever the batch
    # ReLU's output (1000 floats) is saved; the 10,000 + 2,000 weights are not counted
    assert 4 * 1000 <= measure(1000, 4) < 4 * (1000 + 1000 + 10 + 100)
    assert measure(4000, 4) > 3 * measure(1000, 4)
    assert micro_batch_factor(64, 80 << 20, 1 << 30) == 8  # 80 MB an example, 1 GB: micro-batches of 8
    assert micro_batch_factor(64, 1000, 1 << 30) == 1 and micro_batch_factor(6, 1 << 31, 1 << 30) == 6


# ------------------------------------------------------------------------- the feature cache: chunks, memory-mapped

def _texts(n: int):
    from transferkit.data import from_arrays

    return from_arrays([f"example sentence number {i % 7}" if i >= 9 else f"text {i}" for i in range(n)],
                       ["a" if i % 2 else "b" for i in range(n)])


def test_extraction_writes_a_shard_per_chunk_and_gives_the_unchunked_features(tiny_text_model, tmp_path, monkeypatch):
    from transferkit.backbones import create_backbone
    from transferkit.features import ExtractionStats, FeatureCache, extract
    from transferkit.features.extract import extract_features

    backbone = create_backbone(str(tiny_text_model))
    data = _texts(14)  # rows 9..13 repeat texts of rows 9..11 and 13 of itself: 12 distinct texts
    plain = extract_features(backbone, data, cache=None, progress=False)
    monkeypatch.setattr(extract, "CACHE_CHUNK", 5)
    cache = FeatureCache(tmp_path / "cache")
    chunked = extract_features(backbone, data, cache=cache, progress=False)
    np.testing.assert_allclose(chunked, plain, atol=1e-6)
    folder = tmp_path / "cache" / backbone.cache_key()
    assert len(list(folder.glob("shard-*.features.npy"))) == 3 == len(list(folder.glob("shard-*.keys.npy")))
    stats = ExtractionStats()
    again = extract_features(backbone, data, cache=FeatureCache(tmp_path / "cache"), progress=False, stats=stats)
    assert stats.computed == 0 and stats.from_cache == 14
    np.testing.assert_array_equal(again, chunked)


def test_cached_features_are_read_memory_mapped_and_older_npz_shards_still_count(tmp_path):
    from transferkit.features import FeatureCache
    from transferkit.features import cache as cache_module

    cache = FeatureCache(tmp_path / "cache")
    shard = cache.store("bk", ["k0", "k1", "k2"], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert isinstance(cache_module._open_features(shard), np.memmap)
    folder = tmp_path / "cache" / "bk"
    np.savez(folder / "shard-old.npz", keys=np.array(["k9"], dtype="U32"), features=np.full((1, 4), 7, np.float32))
    features, hits = FeatureCache(tmp_path / "cache").lookup("bk", ["k2", "missing", "k9", "k0"])
    assert hits.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(features, [[8, 9, 10, 11], [0, 0, 0, 0], [7, 7, 7, 7], [0, 1, 2, 3]])


def test_a_shard_whose_features_never_arrived_or_disagree_with_its_keys_is_ignored(tmp_path):
    from transferkit.features import FeatureCache

    folder = tmp_path / "cache" / "bk"
    folder.mkdir(parents=True)
    np.save(folder / "shard-a.keys.npy", np.array(["k0"], dtype="U32"))  # a crash before the features were written
    np.save(folder / "shard-b.keys.npy", np.array(["k1", "k2"], dtype="U32"))
    np.save(folder / "shard-b.features.npy", np.zeros((3, 4), np.float32))  # three rows for two keys
    np.save(folder / "shard-c.keys.npy", np.array(["k3"], dtype="U32"))
    np.save(folder / "shard-c.features.npy", np.zeros((1, 4), np.float64))  # not float32
    features, hits = FeatureCache(tmp_path / "cache").lookup("bk", ["k0", "k1", "k2", "k3"])
    assert features is None and not hits.any()


# --------------------------------------------------------------------------------------- the runtime chosen by auto

def test_auto_runtime_takes_onnx_runtime_for_enough_examples_and_gives_the_torch_features(tiny_text_model,
                                                                                             monkeypatch):
    from transferkit.backbones import create_backbone
    from transferkit.backbones.packaged import cache_root
    from transferkit.features import extract
    from transferkit.features.extract import choose_runtime, extract_features

    backbone = create_backbone(str(tiny_text_model), max_length=32)  # as test_fast_inference: one export for both
    seen = []
    original = backbone.forward_features
    backbone.forward_features = lambda batch: seen.append(len(batch["input_ids"])) or original(batch)
    data = _texts(6)
    assert choose_runtime("auto", backbone, "cpu", 6) == "torch"  # too few examples to repay an export
    plain = extract_features(backbone, data, cache=None, progress=False, device="cpu", batch_size=2)
    assert sum(seen) == 6
    monkeypatch.setattr(extract, "AUTO_ONNX_MIN_EXAMPLES", 5)
    assert choose_runtime("auto", backbone, "cpu", 6) == "onnx"
    assert choose_runtime("auto", backbone, "cpu", 6, custom_output=True) == "torch"
    assert choose_runtime("torch", backbone, "cpu", 10**6) == "torch"
    extract_features(backbone, data, cache=None, progress=False, device="cpu", batch_size=2)  # exports (traces)
    monkeypatch.setattr(extract, "_CHECKED_FILES", set())
    seen.clear()
    first = extract_features(backbone, data, cache=None, progress=False, device="cpu", batch_size=2)
    assert seen == [2]  # PyTorch ran only the parity check, on the first batch; ONNX Runtime computed every batch
    seen.clear()
    auto = extract_features(backbone, data, cache=None, progress=False, device="cpu", batch_size=2)
    assert seen == []  # the file was checked once in this process
    np.testing.assert_array_equal(auto, first)
    assert (cache_root() / "onnx" / f"{backbone.cache_key()}.onnx").is_file()  # exported once into the cache
    np.testing.assert_allclose(auto, plain, atol=1e-4)


def test_an_unknown_runtime_names_the_choices(tiny_text_model):
    from transferkit.backbones import create_backbone
    from transferkit.errors import ConfigError
    from transferkit.features.extract import extract_features

    with pytest.raises(ConfigError, match="runtime must be one of auto, torch, onnx; got 'tensorrt'"):
        extract_features(create_backbone(str(tiny_text_model)), _texts(2), runtime="tensorrt", progress=False)


# --------------------------------------------------------------------------------------------- streamed prediction

def _tiny_image_model():
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.models.heads.linear import LinearHead
    from transferkit.models.model import TransferModel

    torch.manual_seed(0)
    backbone = create_backbone("random:timm:test_efficientnet", image_size=16)
    return TransferModel(backbone, LinearHead(backbone.num_features, 3), ["a", "b", "c"])


def test_prediction_streams_in_blocks_with_the_probabilities_of_one_pass(monkeypatch):
    """Only one block's backbone features exist at a time (the numpy memory traced while predicting stays under
    half of all the features'), and the blocks give the one-pass probabilities and logits in the inputs' order."""
    import tracemalloc

    from transferkit.models import model as model_module

    model = _tiny_image_model()
    data = _image_arrays(200)  # 600 images
    run = {"progress": False, "device": "cpu", "batch_size": 16}
    whole = model.predict_proba(data, **run)
    whole_logits = model.predict_logits(data, **run)
    monkeypatch.setattr(model_module, "PREDICT_BLOCK", 64)
    tracemalloc.start()
    try:
        blocks = model.predict_proba(data, **run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    all_features = len(data) * model.backbone.num_features * 4
    assert peak < all_features / 2, f"peak {peak / all_features:.2f}x the features of every input"
    np.testing.assert_allclose(blocks, whole, atol=1e-6)
    np.testing.assert_allclose(model.predict_logits(data, **run), whole_logits, atol=1e-5)
    assert blocks.shape == (600, 3) and np.all(blocks.argmax(axis=1) == whole.argmax(axis=1))


def test_prediction_files_written_in_blocks_equal_the_whole_and_a_failed_write_keeps_the_earlier_file(
        tmp_path, monkeypatch):
    import json

    import transferkit
    from transferkit.workflows import predict as predict_module

    model = _tiny_image_model()
    rows = transferkit.predict(model, _image_arrays(5).items, progress=False, device="cpu")  # 15 records
    whole = {suffix: tmp_path / f"whole{suffix}" for suffix in (".csv", ".jsonl")}
    for path in whole.values():
        predict_module.write_predictions(rows, path, model)
    monkeypatch.setattr(predict_module, "WRITE_BLOCK", 4)
    for suffix, path in whole.items():
        blocks = tmp_path / f"blocks{suffix}"
        predict_module.write_predictions(rows, blocks, model)
        assert blocks.read_bytes() == path.read_bytes()
    lines = whole[".csv"].read_text().splitlines()
    assert len(lines) == 16 and lines[0].startswith("input,label,p_a") and lines.count(lines[0]) == 1
    assert [json.loads(line) for line in whole[".jsonl"].read_text().splitlines()] == rows
    earlier = whole[".jsonl"].read_bytes()
    broken = rows[:9] + [{**rows[9], "probabilities": {"a": float("nan")}}] + rows[10:]  # fails in the third block
    with pytest.raises(ValueError):
        predict_module.write_predictions(broken, whole[".jsonl"], model)
    assert whole[".jsonl"].read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.csv", "blocks.jsonl", "whole.csv", "whole.jsonl"]


# ------------------------------------------------------------------------------- extraction over several processes

def test_shards_are_whole_batches_of_the_single_process_order_dealt_in_turn():
    from transferkit.data import from_arrays
    from transferkit.features.sharded import shard_rows

    texts = from_arrays(["x" * n for n in (5, 1, 4, 2, 3, 7, 6)], ["a"] * 7)
    shards = shard_rows(texts, batch_size=2, processes=2)
    # by length: rows 1, 3, 4, 2, 0, 6, 5 -> batches (1, 3) (4, 2) (0, 6) (5)
    assert [s.tolist() for s in shards] == [[1, 3, 0, 6], [4, 2, 5]]


def test_two_processes_give_exactly_the_single_process_features_through_the_cache(tmp_path):
    import torch

    from conftest import TINY_IMAGE_BACKBONE
    from transferkit.backbones import create_backbone
    from transferkit.data import from_arrays
    from transferkit.errors import ConfigError
    from transferkit.features import ExtractionStats, FeatureCache
    from transferkit.features.extract import extract_features
    from transferkit.features.sharded import extract_sharded

    torch.manual_seed(0)
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    images = np.random.default_rng(1).integers(0, 256, size=(13, 24, 24, 3), dtype=np.uint8)
    data = from_arrays(images, ["a", "b"] * 6 + ["a"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per process: the processes are forked (start_method), in about a second
    try:
        single = extract_features(backbone, data, cache=None, progress=False, batch_size=4, device="cpu",
                                  runtime="torch")
    finally:
        torch.set_num_threads(threads)
    cache = FeatureCache(tmp_path / "cache")
    assert extract_sharded(backbone, data, processes=2, cache=cache, batch_size=4, threads=1, runtime="torch") == 13
    stats = ExtractionStats()
    merged = extract_features(backbone, data, cache=FeatureCache(tmp_path / "cache"), progress=False, stats=stats)
    assert stats.from_cache == 13 and stats.computed == 0
    np.testing.assert_array_equal(merged, single)
    assert extract_sharded(backbone, data, processes=2, cache=cache, batch_size=4) == 0  # nothing left to compute
    with pytest.raises(ConfigError, match="option 'processes' must be at least 1; got 0"):
        extract_sharded(backbone, data, processes=0, cache=cache)


def test_fit_with_two_processes_saves_the_model_of_one_process(text_csv, tiny_text_model, tmp_path):
    from typer.testing import CliRunner

    from transferkit.cli.main import app

    def fit(processes: str):
        output = tmp_path / f"model-{processes}"
        result = CliRunner().invoke(app, ["fit", str(text_csv), "--backbone", str(tiny_text_model), "--no-cache",
                                          "--processes", processes, "--runtime", "torch", "--output", str(output),
                                          "--no-report", "--quiet"])
        assert result.exit_code == 0, result.output
        return output

    one, two = fit("1"), fit("2")
    assert (two / "model.safetensors").read_bytes() == (one / "model.safetensors").read_bytes()
    assert (two / "predictions.csv").read_text() == (one / "predictions.csv").read_text()

    def predict(processes: str):
        output = tmp_path / f"predictions-{processes}.jsonl"
        result = CliRunner().invoke(app, ["predict", str(one), str(text_csv), "--processes", processes,
                                          "--output", str(output), "--quiet"])
        assert result.exit_code == 0, result.output
        return output.read_text()

    single, merged = predict("1"), predict("2")  # one file written from the features of two processes
    assert merged == single and len(merged.splitlines()) == len(text_csv.read_text().splitlines()) - 1
    refused = CliRunner().invoke(app, ["predict", str(one), str(text_csv), "--processes", "2", "--runtime", "onnx"])
    assert refused.exit_code == 2 and "option 'processes' (--processes 2)" in refused.output
    assert "Leave out --runtime onnx or --processes" in refused.output and "Traceback" not in refused.output


def test_processes_below_one_is_refused_before_any_work(text_csv, tmp_path):
    from typer.testing import CliRunner

    from transferkit.cli.main import app

    result = CliRunner().invoke(app, ["fit", str(text_csv), "--processes", "0", "--output", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "option 'processes'" in result.output and "greater than or equal to 1 (got 0)" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m").exists()
