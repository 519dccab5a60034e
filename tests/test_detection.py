"""Object detection: the three annotation formats, the checks before training, a tiny detector trained one epoch
and scored by the COCO evaluation, predict (records and drawings) from the saved folder, and the bootstrap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY_IMAGE_BACKBONE
from transferkit.data.detection import check_detection_set, read_detection
from transferkit.data.detection_synth import (compose_detection_set, digit_objects, sample_photographs,
                                              write_detection_set)
from transferkit.errors import DataError


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory) -> Path:
    """Twelve 32-px images: handwritten digits 0-2 on crops of scikit-learn's sample photographs, COCO format."""
    items, labels, names = digit_objects()
    keep = labels < 3
    folder = tmp_path_factory.mktemp("detection") / "coco"
    compose_detection_set(folder, items[keep], labels[keep], names[:3], sample_photographs(), n_images=12,
                          image_size=32, max_objects=2, scale=(0.3, 0.5), seed=0)
    return folder


def _by_name(dataset) -> dict[str, list[tuple[str, tuple[float, ...]]]]:
    return {p.name: sorted((dataset.classes[int(l)], tuple(np.round(b, 2))) for b, l in zip(boxes, labels))
            for p, boxes, labels in zip(dataset.images, dataset.boxes, dataset.labels)}


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_each_format_reads_to_the_same_boxes(coco_set: Path, tmp_path: Path, fmt: str) -> None:
    original = read_detection(coco_set)
    write_detection_set(original, tmp_path / fmt, fmt)
    again = read_detection(tmp_path / fmt)
    assert again.format == fmt and len(again) == len(original) == 12
    assert _by_name(again) == _by_name(original)
    assert original.n_boxes > 0


def test_yolo_class_names_from_data_yaml(coco_set: Path, tmp_path: Path) -> None:
    original = read_detection(coco_set)
    write_detection_set(original, tmp_path / "yolo", "yolo")
    (tmp_path / "yolo" / "classes.txt").unlink()
    (tmp_path / "yolo" / "data.yaml").write_text("names:\n  0: '0'\n  1: '1'\n  2: '2'\n")
    assert _by_name(read_detection(tmp_path / "yolo")) == _by_name(original)


def test_images_without_annotations_are_background_with_a_warning(coco_set: Path, tmp_path: Path, caplog) -> None:
    original = read_detection(coco_set)
    folder = tmp_path / "yolo"
    write_detection_set(original, folder, "yolo")
    first = next(folder.glob("labels/*.txt"))
    first.unlink()
    again = read_detection(folder)
    assert again.n_background == original.n_background + 1
    assert "no boxes; they train as background images" in caplog.text
    check_detection_set(again)  # background images are legal


def _yolo_copy(coco_set: Path, tmp_path: Path) -> Path:
    write_detection_set(read_detection(coco_set), tmp_path / "yolo", "yolo")
    return tmp_path / "yolo"


def test_a_box_outside_the_image_is_refused_naming_the_file_and_box(coco_set: Path, tmp_path: Path) -> None:
    folder = tmp_path / "coco"
    shutil.copytree(coco_set, folder)
    data = json.loads((folder / "annotations.json").read_text())
    data["annotations"][0]["bbox"] = [20, 20, 30, 5]
    (folder / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(DataError) as info:
        check_detection_set(read_detection(folder))
    message = str(info.value)
    assert f"{folder / 'annotations.json'} annotation {data['annotations'][0]['id']}" in message
    assert "outside the 32x32 image" in message and "Fix or remove these boxes" in message


def test_a_box_of_zero_area_is_refused_naming_the_xml_file_and_object(coco_set: Path, tmp_path: Path) -> None:
    folder = tmp_path / "voc"
    write_detection_set(read_detection(coco_set), folder, "voc")
    xml = next(p for p in sorted(folder.glob("Annotations/*.xml")) if "<object>" in p.read_text())
    text = xml.read_text()
    start = text.index("<xmax>") + len("<xmax>")
    xml.write_text(text[:start] + text[text.index("<xmin>") + 6:text.index("</xmin>")] + text[text.index("</xmax>"):])
    with pytest.raises(DataError, match=rf"{xml} object 1: box .* has zero or negative area"):
        check_detection_set(read_detection(folder))


def test_an_unknown_yolo_class_id_is_refused_naming_the_line(coco_set: Path, tmp_path: Path) -> None:
    folder = _yolo_copy(coco_set, tmp_path)
    label_file = sorted(folder.glob("labels/*.txt"))[0]
    label_file.write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=rf"{label_file} line 1: unknown class id 7; the 3 classes of "
                                        rf".*classes.txt have ids 0 to 2"):
        read_detection(folder)


def test_an_unknown_coco_category_is_refused(coco_set: Path, tmp_path: Path) -> None:
    folder = tmp_path / "coco"
    shutil.copytree(coco_set, folder)
    data = json.loads((folder / "annotations.json").read_text())
    data["annotations"][0]["category_id"] = 42
    (folder / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations.json annotation \d+: unknown category_id 42; known ids \[1, 2, 3\]"):
        read_detection(folder)


def test_an_unreadable_image_is_refused_naming_it(coco_set: Path, tmp_path: Path) -> None:
    folder = tmp_path / "coco"
    shutil.copytree(coco_set, folder)
    broken = sorted((folder / "images").iterdir())[0]
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=rf"image {broken} cannot be read"):
        check_detection_set(read_detection(folder))


def test_box_augmentation_moves_the_boxes_with_the_object() -> None:
    import torch

    from transferkit.data.detection_augment import box_augmentation, to_box_tensors

    image = torch.zeros(3, 48, 48)
    image[:, 8:20, 4:16] = 1.0
    transform = box_augmentation("medium")
    for seed in range(4):
        torch.manual_seed(seed)
        moved, target = transform(*to_box_tensors(image, [[4, 8, 16, 20]], [1]))
        for x1, y1, x2, y2 in target["boxes"].round().int().tolist():
            inside = moved[:, y1:y2, x1:x2]
            ring = moved[:, max(0, y1 - 2):y2 + 2, max(0, x1 - 2):x2 + 2]
            # the box holds the (uniform) object and nothing else: one colour inside, another just around it
            assert inside.numel() and float(inside.std(dim=(1, 2)).max()) < 1e-3
            outside = (ring.sum(dim=(1, 2)) - inside.sum(dim=(1, 2))) / max(1, ring[0].numel() - inside[0].numel())
            assert ring[0].numel() == inside[0].numel() or \
                float((outside - inside.mean(dim=(1, 2))).abs().max()) > 0.02


def test_bootstrap_reaccumulation_equals_a_full_evaluation_of_the_resample() -> None:
    from transferkit.evaluation.detection_metrics import _accumulated_ap, _matched, map50

    rng = np.random.default_rng(0)
    truths = [{"boxes": np.array([[10, 10, 30, 30], [40, 40, 70, 70]], float), "labels": np.array([i % 3, 1])}
              for i in range(30)]
    found = [{"boxes": t["boxes"] + rng.normal(0, 4, (2, 4)), "labels": np.array([i % 3, (i + 1) % 3]),
              "scores": rng.random(2)} for i, t in enumerate(truths)]
    idx = rng.integers(0, 30, 30)
    full = map50([found[i] for i in idx], [truths[i] for i in idx])
    assert 0 < full < 1
    assert _accumulated_ap(_matched(found, truths), idx) == pytest.approx(full, abs=1e-6)


@pytest.fixture(scope="module")
def fitted_detector(coco_set: Path, tmp_path_factory) -> tuple[Path, object]:
    """``fit --task-type detection`` of the tiny detector for one epoch, with the scratch baseline: the model
    folder and the command's result."""
    from transferkit.cli.main import app

    out = tmp_path_factory.mktemp("fitted") / "model"
    result = CliRunner().invoke(app, ["fit", str(coco_set), "--task-type", "detection", "--backbone",
                                      TINY_IMAGE_BACKBONE, "--epochs", "1", "--image-size", "32", "--batch-size", "4",
                                      "--baselines", "scratch", "--test-fraction", "0.25", "--device", "cpu",
                                      "--output", str(out), "--quiet"])
    return out, result


def test_cli_fit_detection_trains_scores_saves_and_predicts(coco_set: Path, fitted_detector, tmp_path: Path) -> None:
    from transferkit.cli.main import app
    from transferkit.models.artifacts import load_model

    out, result = fitted_detector
    runner = CliRunner()
    assert result.exit_code == 0, result.output
    assert "mAP@0.5" in result.output and "verdict:" in result.output
    import yaml

    assert yaml.safe_load((out / "run_config.yaml").read_text())["strategy"] == "finetune"  # a detector's default
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test"]["map_50"] <= 1 and set(metrics["test"]["per_class"]) == {"0", "1", "2"}
    assert metrics["baselines"]["scratch"]["images"] == 3 and metrics["comparisons"][0]["baseline"] == "scratch"
    examples = json.loads((out / "examples.json").read_text())
    assert examples and {"image", "predicted", "true"} <= set(examples[0])
    assert sorted(p.stem for p in (out / "examples").iterdir()) == sorted(Path(e["image"]).stem for e in examples)

    model = load_model(out)
    images = sorted((coco_set / "images").iterdir())[:2]
    direct = model.detect(images, score_threshold=0.0)
    drawn = tmp_path / "drawn"
    result = runner.invoke(app, ["predict", str(out), *map(str, images), "--score-threshold", "0",
                                 "--draw", str(drawn), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["input"] for r in rows] == [str(i) for i in images]
    for row, found in zip(rows, direct):
        assert len(row["detections"]) == len(found["scores"])
        best = int(np.argmax(found["scores"]))
        assert row["detections"][0]["box"] == pytest.approx(found["boxes"][best].tolist(), abs=0.01)
    assert sorted(p.name for p in drawn.iterdir()) == [f"{i.stem}.png" for i in images]


def test_cli_fit_detection_with_a_bad_box_exits_2_before_training(coco_set: Path, tmp_path: Path) -> None:
    from transferkit.cli.main import app

    folder = tmp_path / "coco"
    shutil.copytree(coco_set, folder)
    data = json.loads((folder / "annotations.json").read_text())
    data["annotations"][0]["bbox"] = [5, 5, 0, 4]
    (folder / "annotations.json").write_text(json.dumps(data))
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["fit", str(folder), "--task-type", "detection", "--backbone",
                                      TINY_IMAGE_BACKBONE, "--device", "cpu", "--output", str(out)])
    assert result.exit_code == 2
    assert "error:" in result.output and "annotations.json annotation" in result.output
    assert "zero or negative area" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_fit_detection_refuses_a_strategy_it_cannot_train(coco_set: Path, tmp_path: Path) -> None:
    from transferkit.cli.main import app

    result = CliRunner().invoke(app, ["fit", str(coco_set), "--task-type", "detection", "--strategy", "contrastive",
                                      "--output", str(tmp_path / "model")])
    assert result.exit_code == 2
    assert ("option 'strategy': a detector trains by linear-probe, finetune, lp-ft, l2sp, lora; got 'contrastive'. "
            "Use --strategy finetune") in result.output
    assert "Traceback" not in result.output and not (tmp_path / "model").exists()


def test_predict_draw_refuses_a_folder_with_files(coco_set: Path, tmp_path: Path) -> None:
    from transferkit.cli.main import app

    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / "keep.png").write_bytes(b"earlier")
    out = tmp_path / "model"
    _save_tiny_detector(out)
    result = CliRunner().invoke(app, ["predict", str(out), str(coco_set / "images"), "--draw", str(drawn)])
    assert result.exit_code == 2 and "option 'draw'" in result.output and "Traceback" not in result.output
    assert (drawn / "keep.png").read_bytes() == b"earlier"


def _save_tiny_detector(folder: Path) -> None:
    from transferkit.models.artifact_kinds import save_detection
    from transferkit.models.detector import DetectionModel, build_detector

    network, spec = build_detector(TINY_IMAGE_BACKBONE, ["0", "1", "2"], image_size=32)
    save_detection(DetectionModel(network, ["0", "1", "2"], spec), folder)


def test_cli_export_of_a_detector_checks_parity_on_its_images(coco_set: Path, tmp_path: Path) -> None:
    import transferkit.cli.export  # noqa: F401  (registers the command)
    from transferkit.cli.main import app

    _save_tiny_detector(tmp_path / "model")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "model"), "--data", str(coco_set / "images"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "post-processing inside" in result.output and "parity: max difference" in result.output

    from transferkit.compress.detection_onnx import OnnxDetector
    from transferkit.errors import ConfigError
    from transferkit.models.artifacts import load_model

    model = load_model(tmp_path / "model")
    runner = OnnxDetector(tmp_path / "model" / "model.onnx")
    assert runner.classes == ["0", "1", "2"] and runner.size == (32, 32)
    images = sorted((coco_set / "images").iterdir())[:3]
    for got, want in zip(runner.detect(images), model.detect(images)):
        np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-3)
        np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-4)
        np.testing.assert_array_equal(got["labels"], want["labels"])
    with pytest.raises(ConfigError, match="16x16 pixels, but .*model.onnx takes 32x32"):
        runner.detect([np.zeros((3, 16, 16), np.float32)])


def test_cli_evaluate_a_detector_on_annotated_images(coco_set: Path, tmp_path: Path) -> None:
    from transferkit.cli.main import app

    _save_tiny_detector(tmp_path / "model")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "model"), str(coco_set), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "mAP@0.5" in result.output and "(12 images," in result.output
    voc = tmp_path / "voc"
    original = read_detection(coco_set)
    original.classes = ["a", "b", "c"]
    write_detection_set(original, voc, "voc")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "model"), str(voc), "--device", "cpu"])
    assert result.exit_code == 2 and "differ from the model's ['0', '1', '2']" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory) -> Path:
    """An untrained tiny detector saved as a model folder (random weights: many low-scoring boxes)."""
    folder = tmp_path_factory.mktemp("detector") / "model"
    _save_tiny_detector(folder)
    return folder


def test_serve_a_detector_answers_the_boxes_predict_gives_within_the_service_limits(
        coco_set: Path, tiny_detector: Path, tmp_path: Path) -> None:
    httpx = pytest.importorskip("httpx")
    from test_serving import Server
    from transferkit import predict

    images = sorted((coco_set / "images").iterdir())[:2]
    upload = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in images]
    server = Server(tiny_detector, "--max-batch", "2", "--max-image-pixels", "2000", cache=tmp_path / "cache")
    try:
        health = httpx.get(f"{server.url}/health", timeout=30).json()
        info = httpx.get(f"{server.url}/info", timeout=30).json()
        answer = httpx.post(f"{server.url}/predict?score_threshold=0", files=upload, timeout=60)
        default = httpx.post(f"{server.url}/predict", files=upload, timeout=60).json()
        too_many = httpx.post(f"{server.url}/predict", files=upload + upload[:1], timeout=60)
        from PIL import Image
        import io

        large = io.BytesIO()
        Image.new("RGB", (64, 64)).save(large, "PNG")
        too_large = httpx.post(f"{server.url}/predict", files=[("files", ("large.png", large.getvalue()))],
                               timeout=60)
        top_k = httpx.post(f"{server.url}/predict?top_k=2", files=upload, timeout=60)
        bad_threshold = httpx.post(f"{server.url}/predict?score_threshold=1.5", files=upload, timeout=60)
        explain = httpx.post(f"{server.url}/explain", files=upload, timeout=60)
    finally:
        server.stop()
    assert health["task"] == info["task"] == "detection" and info["classes"] == ["0", "1", "2"]
    assert info["detector"]["image_size"] == 32 and info["backbone"] == TINY_IMAGE_BACKBONE
    assert answer.status_code == 200, answer.text
    direct = predict(tiny_detector, [str(p) for p in images], score_threshold=0.0, progress=False)
    served = answer.json()["predictions"]
    assert [p["input"] for p in served] == [p.name for p in images]
    for got, want in zip(served, direct):  # the same detections; the order of near-equal scores may differ
        assert len(got["detections"]) == len(want["detections"]) > 0
        for a, b in zip(*(sorted(d["detections"], key=lambda r: (r["label"], r["box"])) for d in (got, want))):
            assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=2e-4)
            assert a["box"] == pytest.approx(b["box"], abs=0.05)
        assert [r["score"] for r in got["detections"]] == sorted((r["score"] for r in got["detections"]),
                                                                 reverse=True)
    default_kept = [[d for d in p["detections"] if d["score"] >= 0.3] for p in served]
    assert [p["detections"] for p in default["predictions"]] == default_kept  # predict's 0.3 by default
    assert too_many.status_code == 413 and "3 files in one request; the limit is 2" in too_many.json()["detail"]
    assert too_large.status_code == 413 and "large.png" in too_large.json()["detail"]
    assert top_k.status_code == 422 and "only score_threshold is taken" in top_k.json()["detail"]
    assert bad_threshold.status_code == 422 and "score_threshold must be a number from 0 to 1" in \
        bad_threshold.json()["detail"]
    assert explain.status_code == 400 and "object detector" in explain.json()["detail"]


def test_serve_a_detector_with_the_onnx_runtime_is_refused_before_it_starts(tiny_detector: Path) -> None:
    import transferkit.cli.serve  # noqa: F401  (registers the command)
    from transferkit.cli.main import app

    result = CliRunner().invoke(app, ["serve", str(tiny_detector), "--runtime", "onnx", "--port", "0"])
    assert result.exit_code == 2
    assert "option 'runtime' (--runtime onnx)" in result.output and "object detector" in result.output
    assert "Leave out --runtime" in result.output and "Traceback" not in result.output
    assert not (tiny_detector / "model.onnx").exists()


def test_missed_boxes_match_each_true_box_once_by_class_iou_and_score() -> None:
    from transferkit.evaluation.detection_metrics import hardest_misses, missed_boxes

    truth = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 40], [0, 0, 11, 11]], float),
             "labels": np.array([0, 1, 0])}
    found = {"boxes": np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40], [21, 21, 40, 40]], float),
             "labels": np.array([0, 0, 0, 1]), "scores": np.array([0.9, 0.8, 0.7, 0.2])}
    # the two class-0 detections find the two overlapping class-0 boxes, one each; the class-1 box is found only
    # by a detection of the wrong class (0.7) or one below the score threshold (0.2)
    assert missed_boxes(found, truth).tolist() == [False, True, False]
    assert missed_boxes(found, truth, score_threshold=0.1).tolist() == [False, False, False]
    assert missed_boxes(found, truth, score_threshold=0.85).tolist() == [False, True, True]
    assert missed_boxes(found, truth, iou_threshold=0.95).tolist() == [False, True, True]
    empty = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int), "scores": np.zeros(0)}
    rows = hardest_misses([found, empty, found], [truth, truth, {"boxes": np.zeros((0, 4)), "labels": []}])
    assert [(r["index"], r["recall"], r["missed"]) for r in rows] == [(1, 0.0, [1, 2, 0]),
                                                                      (0, pytest.approx(2 / 3), [1])]
    assert rows[1]["false_detections"] == 1 and rows[1]["largest_missed_area"] == 400


def test_report_of_a_detector_in_headless_chromium(fitted_detector, tmp_path: Path) -> None:
    from _chromium import file_url, find_chromium, inspect_page
    import transferkit.cli.report  # noqa: F401  (registers the command)
    from transferkit.cli.main import app
    from transferkit.evaluation.verdict import Comparison

    if find_chromium() is None:
        pytest.fail("chromium is not installed: run `make chromium` (apt-get install -y chromium)")
    out, _ = fitted_detector
    assert (out / "report.html").is_file()  # fit writes it
    metrics = json.loads((out / "metrics.json").read_text())
    examples = json.loads((out / "examples.json").read_text())
    misses = json.loads((out / "hardest_misses.json").read_text())
    assert [m["recall"] for m in misses] == sorted(m["recall"] for m in misses) and misses
    assert all(box in m["true"] for m in misses for box in m["missed"])
    page_file = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(out), "-o", str(page_file)])
    assert result.exit_code == 0, result.output
    page = inspect_page(file_url(page_file), probe="[...document.querySelectorAll('section')].map(s => s.id)")
    assert page.console_errors == []
    assert page.probe[page.probe.index("learning-curves"):] == [
        "learning-curves", "detection-metrics", "per-class-ap", "detection-examples", "hardest-misses"]
    drawings = [i for i in page.images if i["cls"] == "boxes"]
    assert len(drawings) == len(examples) + len(misses)
    assert all(i["complete"] and i["width"] > 0 and i["shown_width"] > 0 for i in drawings)
    html = page_file.read_text()
    assert Comparison(**metrics["comparisons"][0]).sentence() in html
    assert "mAP@0.5 difference against each baseline" in [i["alt"] for i in page.images if i["cls"] == "plot"]
    for name, row in metrics["test"]["per_class"].items():
        assert f"<tr><td>{name}</td>" in html
    assert all(Path(m["image"]).name in html for m in misses)
    # a folder fitted before the hardest misses were written: they come from its examples, and it says so
    (out / "hardest_misses.json").rename(tmp_path / "kept.json")
    try:
        from transferkit.reporting.report import build_report

        older = build_report(out)
    finally:
        (tmp_path / "kept.json").rename(out / "hardest_misses.json")
    assert "this folder has no hardest_misses.json" in older and "Hardest misses" in older


def test_detector_lora_trains_adapters_then_merges_them_into_the_targeted_layers(coco_set: Path) -> None:
    import torch

    from transferkit.engine.detection import DetectorTraining, train_detector
    from transferkit.models.detector import build_detector
    from transferkit.strategies.lora import resolve_targets
    from transferkit.strategies.options import LoraConfig

    dataset = read_detection(coco_set)
    network, _ = build_detector(TINY_IMAGE_BACKBONE, dataset.classes, image_size=32)
    start = {k: v.clone() for k, v in network.state_dict().items()}
    targets = {f"backbone.body.{name}" for name in resolve_targets(network.backbone.body, None)}
    facts = train_detector(network, dataset, dataset, DetectorTraining(epochs=1, batch_size=6, patience=0,
                                                                       device="cpu", lora=LoraConfig(rank=2)))
    after = network.state_dict()
    assert set(after) == set(start) and facts["epochs"] == 1  # a plain detector again: no adapter left
    changed = {k for k in start if not torch.equal(start[k], after[k])}
    in_backbone = {k.rsplit(".", 1)[0] for k in changed if k.startswith("backbone.body.")}
    assert in_backbone and in_backbone <= targets  # only the adapted layers moved (by their merged adapters)
    assert any(k.startswith("head.") for k in changed) and any(k.startswith("backbone.fpn.") for k in changed)


def test_cli_fit_detection_with_l2sp_trains_with_its_penalty_term(coco_set: Path, tmp_path: Path) -> None:
    from transferkit.cli.main import app
    from transferkit.models.artifacts import load_model

    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["fit", str(coco_set), "--task-type", "detection", "--strategy", "l2sp",
                                      "--l2sp-beta", "0.5", "--backbone", TINY_IMAGE_BACKBONE, "--epochs", "1",
                                      "--image-size", "32", "--batch-size", "6", "--baselines", "raw", "--no-report",
                                      "--device", "cpu", "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    epoch = json.loads((out / "metrics.json").read_text())["training"]["history"][0]
    terms = {k: v for k, v in epoch.items() if k.startswith("train_") and k != "train_loss"}
    assert set(terms) == {"train_classification", "train_bbox_regression", "train_bbox_ctrness", "train_l2sp"}
    assert terms["train_l2sp"] > 0 and epoch["train_loss"] == pytest.approx(sum(terms.values()), rel=1e-5)
    assert load_model(out).strategy == "l2sp"
