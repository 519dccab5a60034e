"""The HTML report: written by fit, complete offline, checked in a real headless Chromium; MLflow tracking of runs
read back from a real SQLite store."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_IMAGE_BACKBONE, write_image_folder
from _chromium import file_url, find_chromium, inspect_page
from test_cli import run

PNG_1PX_BROKEN = "data:image/png;base64,iVBORw0KGgo="  # a PNG signature and nothing else: cannot be decoded


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _noisy_test_folder(root: Path) -> Path:
    """A test folder where two images carry the wrong class, so that the model must make mistakes on them."""
    folder = write_image_folder(root, per_class=3, seed=5)
    shutil.move(str(folder / "cat" / "000.png"), folder / "dog" / "x-cat.png")
    shutil.move(str(folder / "fox" / "001.png"), folder / "cat" / "x-fox.png")
    return folder


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> tuple[Path, object]:
    """One linear-probe fit (tiny CNN) with its report, tracked in a SQLite MLflow store of its own."""
    from transferkit import fit

    root = tmp_path_factory.mktemp("image-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        train = write_image_folder(root / "train", per_class=8)
        test = _noisy_test_folder(root / "test")
        out = root / "model"
        result = fit(str(train), test=str(test), backbone=TINY_IMAGE_BACKBONE, output=str(out), progress=False,
                     device="cpu", tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return out, result


def _optional_files(folder: Path) -> None:
    """The files other commands leave in a run folder, in the shapes docs/reports.md gives."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / "embedding_before.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / "extra_plot.png")
    (folder / "ranking.json").write_text(json.dumps({
        "sort_by": "logme", "scores": ["logme"], "best": "efficientnet_lite0",
        "rows": [{"name": "efficientnet_lite0", "kind": "backbone", "scores": {"logme": 1.2},
                  "accuracy": {"linear_probe": 0.8}},
                 {"name": "raw", "kind": "raw", "scores": {"logme": 0.4}, "accuracy": {"linear_probe": 0.5}}],
        "correlations": {"logme": {"linear_probe": {"weighted_tau": 1.0}}}}))
    points = rng.normal(size=(40, 2)).tolist()
    (folder / "adaptation.json").write_text(json.dumps({
        "method": "dann", "a_distance": {"before": 1.7, "after": 0.6},
        "metrics": {"target_accuracy_source_only": 0.61, "target_accuracy_adapted": 0.72},
        "embeddings": {"after": {"points": points, "groups": ["source"] * 20 + ["target"] * 20}},
        "images": [{"file": "embedding_before.png", "caption": "before adaptation"}, "../outside.png"]}))
    (folder / "interpolation.json").write_text(json.dumps({
        "metric": "validation accuracy", "alphas": [0, 0.25, 0.5, 0.75, 1], "values": [0.5, 0.7, 0.8, 0.78, 0.75],
        "best_alpha": 0.5}))
    (folder / "compression.json").write_text(json.dumps({"variants": [
        {"name": "fp32", "accuracy": 0.9, "size_mb": 17.0, "latency_ms": 12.0},
        {"name": "int8 (onnx)", "accuracy": 0.89, "size_mb": 4.4, "latency_ms": 6.0}], "note": "batch 1, 1 thread"}))
    (folder / "report_sections.json").write_text(json.dumps({"sections": [
        {"title": "Something new", "text": "A paragraph.\n\nAnother <b>one</b>.",
         "table": {"columns": ["a", "b"], "rows": [[1, "x"], [2, "y"]]}, "images": ["extra_plot.png"]}]}))


def test_fit_writes_a_report_with_its_evidence(image_run) -> None:
    out, result = image_run
    assert (out / "report.html").is_file()
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "index,row_id,true,predicted,p_true,p_predicted" and len(predictions) == 1 + 9
    examples = json.loads((out / "examples.json").read_text())
    assert examples["counts"]["train"] == {"cat": 8, "dog": 8, "fox": 8}
    assert sum(examples["counts"]["test"].values()) == 9
    assert all(len(v) == 4 for v in examples["class_examples"].values())
    # the two mislabelled test images are among the mistakes, with thumbnails
    wrong = {Path(h["row_id"]).name for h in examples["hardest"]}
    assert {"x-cat.png", "x-fox.png"} <= wrong and examples["n_misclassified"] == len(examples["hardest"])
    assert all(h["thumbnail"].startswith("data:image/") for h in examples["hardest"])
    assert all(h["p_true"] <= h["p_predicted"] for h in examples["hardest"])
    page = (out / "report.html").read_text()
    assert "x-cat.png" in page and "Hardest misclassified examples" in page and "Confusion matrix" in page
    # self-contained: nothing is loaded from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)
    assert "<script" not in page.lower()


def test_report_opens_in_headless_chromium_without_errors(image_run, tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: run `make chromium` (apt-get install -y chromium)")
    source, _ = image_run
    out = tmp_path / "run"
    shutil.copytree(source, out)
    _optional_files(out)
    report = run("report", str(out), "-o", str(tmp_path / "full.html")).stdout
    assert "full.html" in report
    page = inspect_page(file_url(tmp_path / "full.html"))
    assert page.console_errors == []
    assert page.title.startswith("transferkit report: random:timm:test_efficientnet")
    plots = [i for i in page.images if i["cls"] == "plot"]
    # data, accuracy, verdict, confusion, ranking, embedding (drawn) + embedding (file), alpha, 2 trade-offs, extra
    assert len(plots) == 11, [p["alt"] for p in plots]
    assert all(p["complete"] and p["width"] > 50 and p["height"] > 50 and p["shown_width"] > 0 for p in plots)
    thumbs = [i for i in page.images if i["cls"] == "thumb"]
    assert len(thumbs) >= 12 and all(t["width"] > 0 for t in thumbs)
    width, height = _png_size(page.screenshot)
    assert 1100 <= width <= 1200 and height > 3000  # the whole page (less a scroll bar), every section
    (tmp_path / "screenshot.png").write_bytes(page.screenshot)
    text = (tmp_path / "full.html").read_text()
    assert "outside the run folder" in text  # ../outside.png was refused, and said so
    assert "Another &lt;b&gt;one&lt;/b&gt;." in text  # manifest text is escaped, not markup
    # the explanations section: the mistakes the model was surest of (the two mislabelled images, at least), each a
    # heat map drawn in the page
    explained = [i for i in page.images if i["cls"] == "explained"]
    mistakes = json.loads((out / "examples.json").read_text())["n_misclassified"]
    assert len(explained) == min(4, mistakes) >= 2, [i["alt"] for i in page.images]
    assert {"x-cat.png", "x-fox.png"} <= {Path(i["alt"].split(" for ")[1]).name for i in explained}
    assert all(i["complete"] and i["width"] >= 224 and i["shown_width"] > 0 for i in explained)
    assert "Explanations of the surest mistakes" in text and "integrated-gradients" in text
    assert re.search(r"gain [+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]: <b>(no )?better than random</b>", text)


def test_the_browser_check_catches_console_errors_and_broken_images(tmp_path: Path) -> None:
    if find_chromium() is None:
        pytest.fail("chromium is not installed: run `make chromium` (apt-get install -y chromium)")
    bad = tmp_path / "bad.html"
    bad.write_text(f'<html><body><img class="plot" src="{PNG_1PX_BROKEN}"><script>console.error("boom");'
                   "undefined_function();</script></body></html>")
    page = inspect_page(file_url(bad))
    assert any("boom" in e for e in page.console_errors)
    assert any("undefined_function" in e for e in page.console_errors)
    assert page.images[0]["width"] == 0


def test_learning_curves_and_tracking_of_an_engine_run(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from transferkit import fit

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "model"
    result = fit(str(text_csv), backbone=str(tiny_text_model), strategy="finetune", epochs=2, batch_size=4,
                 patience=0, output=str(out), tracking_uri=uri, progress=False, device="cpu", baselines=["raw"],
                 work_dir=str(tmp_path / "work"), test_fraction=0.25)
    page = (out / "report.html").read_text()
    assert "Learning curves" in page and "best_epoch" in page
    examples = json.loads((out / "examples.json").read_text())
    assert examples["modality"] == "text" and all("text" in e for v in examples["class_examples"].values() for e in v)
    tracking = json.loads((out / "tracking.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    mlflow_run = client.get_run(tracking["run_id"])
    # the engine's run: its parameters and per-epoch metrics, plus the test metrics and the files added at the end
    assert tracking["run_id"] == result.config["training"]["training"]["mlflow_run_id"]
    assert mlflow_run.data.params["strategy"] == "finetune"
    assert len(client.get_metric_history(tracking["run_id"], "val_accuracy")) == 2
    assert mlflow_run.data.metrics["test_accuracy"] == pytest.approx(result.accuracy)
    assert mlflow_run.data.metrics["baseline_raw_accuracy"] == pytest.approx(result.baselines["raw"]["accuracy"])
    names = {a.path for a in client.list_artifacts(tracking["run_id"])}
    assert {"report.html", "model"} <= names
    assert "model/config.json" in {a.path for a in client.list_artifacts(tracking["run_id"], "model")}


def test_a_linear_probe_run_is_tracked_in_a_new_mlflow_run(image_run, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out, result = image_run
    uri = f"sqlite:///{out.parent / 'mlflow.db'}"
    tracking = json.loads((out / "tracking.json").read_text())
    assert tracking["tracking_uri"] == uri
    client = MlflowClient(tracking_uri=uri)
    mlflow_run = client.get_run(tracking["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["backbone"] == TINY_IMAGE_BACKBONE
    assert mlflow_run.data.params["strategy"] == "linear-probe"
    assert mlflow_run.data.tags["transferkit.output"] == str(out.resolve())
    assert mlflow_run.data.metrics["test_accuracy"] == pytest.approx(result.accuracy)
    assert mlflow_run.data.metrics["vs_raw_difference"] == pytest.approx(result.comparisons[0].difference)
    artifacts = {a.path for a in client.list_artifacts(tracking["run_id"])}
    assert {"report.html", "model"} <= artifacts
    stored = Path(client.download_artifacts(tracking["run_id"], "model/metrics.json", str(tmp_path / "dl")))
    assert json.loads(stored.read_text())["test"]["accuracy"] == result.accuracy
    experiment = client.get_experiment_by_name("transferkit")  # its artifacts beside the database, not in the cwd
    assert experiment is not None and experiment.artifact_location == (out.parent / "artifacts").as_uri()


def test_no_report_and_tracking_off(image_folder: Path, tmp_path: Path) -> None:
    from transferkit import fit

    out = tmp_path / "m"
    fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, output=str(out), progress=False, device="cpu",
        report=False, tracking_uri="off")
    assert not (out / "report.html").exists() and not (out / "tracking.json").exists()
    assert (out / "predictions.csv").is_file()  # the report can still be written later
    proc = run("report", str(out), "-q")
    assert proc.stdout.strip() == str(out / "report.html") and (out / "report.html").is_file()


def test_report_errors_name_the_folder_or_file(tmp_path: Path) -> None:
    from transferkit.errors import ArtifactError
    from transferkit.reporting import build_report

    proc = run("report", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2 and "no such run folder" in proc.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="holds none of the files"):
        build_report(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"metrics\.json: not valid JSON"):
        build_report(tmp_path / "bad")


def test_a_run_folder_with_only_optional_files_gets_a_report(tmp_path: Path) -> None:
    from transferkit.reporting import build_report

    folder = tmp_path / "adapt-run"
    folder.mkdir()
    _optional_files(folder)
    page = build_report(folder)
    for heading in ("Transferability ranking", "Domain adaptation", "Weight interpolation", "Compressed variants",
                    "Something new"):
        assert f">{heading}</h2>" in page
    assert "Confusion matrix" not in page  # no metrics.json: no section pretending otherwise
    images = re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    sizes = [_png_size(base64.b64decode(i)) for i in images]
    assert len(sizes) == 7 and all(w > 0 and h > 0 for w, h in sizes)


def test_epoch_history_from_the_engine_csv_log() -> None:
    from transferkit.reporting.report import epoch_history

    rows = [{"epoch": "0", "step": "3", "train_loss_step": "0.9", "val_loss": "", "val_accuracy": ""},
            {"epoch": "0", "step": "4", "train_loss_step": "", "val_loss": "0.7", "val_accuracy": "0.5"},
            {"epoch": "1", "step": "9", "train_loss_step": "", "val_loss": "0.4", "val_accuracy": "0.75"}]
    history = epoch_history(rows, None)
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[0]["val_loss"] == 0.7 and history[0]["train_loss_step"] == 0.9 and history[1]["val_accuracy"] == 0.75
    fallback = epoch_history(None, {"training": {"history": [{"epoch": 0, "val_accuracy": 0.5}]}})
    assert fallback == [{"epoch": 0, "val_accuracy": 0.5}]


def test_wilson_interval_contains_the_estimate_and_narrows_with_n() -> None:
    from transferkit.reporting.report import wilson_interval

    low10, high10 = wilson_interval(0.8, 10)
    low1000, high1000 = wilson_interval(0.8, 1000)
    assert low10 < low1000 < 0.8 < high1000 < high10
    assert wilson_interval(1.0, 6)[1] == pytest.approx(1.0) and wilson_interval(0.0, 6)[0] == 0.0
    assert wilson_interval(1.0, 6)[0] == pytest.approx(0.6097, abs=1e-4)  # 6 of 6 right is not proof of 100%


def test_bootstrap_macro_f1_matches_scikit_learn_on_each_resample() -> None:
    from sklearn.metrics import f1_score

    from transferkit.reporting.report import bootstrap_macro_f1

    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 60)
    y_pred = np.where(rng.random(60) < 0.7, y_true, rng.integers(0, 4, 60))
    low, high = bootstrap_macro_f1(y_true, y_pred, 4, n_boot=400, seed=3)
    boot = np.random.default_rng(3).integers(0, 60, size=(100, 60))  # the first chunk, drawn the same way
    reference = [f1_score(y_true[i], y_pred[i], labels=np.arange(4), average="macro", zero_division=0) for i in boot]
    ours = bootstrap_macro_f1(y_true, y_pred, 4, n_boot=100, seed=3, confidence=0.0)  # the median, twice
    assert ours[0] == pytest.approx(float(np.quantile(reference, 0.5)))
    point = f1_score(y_true, y_pred, average="macro")
    assert low < point < high and 0.0 <= low and high <= 1.0


def test_default_store_and_the_environment_variable(image_folder: Path, tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    from transferkit import fit
    from transferkit.backbones.packaged import cache_root

    monkeypatch.delenv("TRANSFERKIT_TRACKING_URI", raising=False)
    fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, output=str(tmp_path / "a"), progress=False, device="cpu",
        report=False)
    tracking = json.loads((tmp_path / "a" / "tracking.json").read_text())
    assert tracking["tracking_uri"] == f"sqlite:///{(cache_root() / 'mlflow' / 'mlflow.db').resolve()}"
    assert MlflowClient(tracking_uri=tracking["tracking_uri"]).get_run(tracking["run_id"]).info.status == "FINISHED"
    other = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("TRANSFERKIT_TRACKING_URI", other)
    fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, output=str(tmp_path / "b"), progress=False, device="cpu",
        report=False)
    assert json.loads((tmp_path / "b" / "tracking.json").read_text())["tracking_uri"] == other


def test_the_shapes_adapt_and_fuse_write_are_read(tmp_path: Path) -> None:
    from PIL import Image

    from transferkit.reporting import build_report

    folder = tmp_path / "run"
    folder.mkdir()
    Image.new("RGB", (90, 60), (20, 120, 200)).save(folder / "embedding.png")
    (folder / "adaptation.json").write_text(json.dumps({
        "method": "coral", "chosen": {"name": "coral x1"}, "embedding_plot": "embedding.png",
        "domain_gap": {"measure": "proxy A-distance", "before": 1.8, "after": 0.9},
        "candidates": [{"name": "source-only", "method": "source-only", "proxy_a_distance": 1.8},
                       {"name": "coral x1", "method": "coral", "proxy_a_distance": 0.9, "target_accuracy": 0.7,
                        "target_predicted_fractions": {"neg": 0.375, "pos": 0.625}}],
        "source_class_fractions": {"neg": 0.5125, "pos": 0.4875}, "target_prior": {"neg": 0.3, "pos": 0.7},
        "target_labels": {"chosen_accuracy": 0.7, "source_only_accuracy": 0.6}}))
    (folder / "interpolation.json").write_text(json.dumps({"method": "interpolate", "alpha": 0.4, "curve": [
        {"alpha": a, "val_accuracy": 0.5 + a / 4, "test_accuracy": 0.5 + a / 5} for a in (0.0, 0.4, 1.0)]}))
    (folder / "tradeoff.json").write_text(json.dumps({"model": "m", "test": "t.csv", "n_test": 50, "threads": 1,
        "rows": [{"name": "float", "runtime": "pytorch", "accuracy": 0.9, "size_bytes": 17_000_000,
                  "latency_ms": {"1": 11.0, "32": 90.0}, "accuracy_change": 0.0, "size_ratio": 1.0},
                 {"name": "int8", "runtime": "onnxruntime", "accuracy": 0.89, "size_bytes": 4_400_000,
                  "latency_ms": {"1": 5.0, "32": 40.0}, "accuracy_change": -0.01, "size_ratio": 0.26}]}))
    page = build_report(folder)
    assert "coral x1" in page and "source_only_accuracy" in page and "1.8" in page
    mix = page[page.index("class mix"):]
    mix = mix[:mix.index("</table>")]
    assert [row in mix for row in ("source labels", "target (given)", "target, predicted by the chosen model")] == \
        [True] * 3
    assert all(value in mix for value in ("0.5125", "0.3", "0.625"))
    assert ">Compressed variants</h2>" in page and "latency_ms_batch32" in page and 'alt="accuracy against size_mb"' in page
    assert 'alt="2-D embedding of source and target features"' in page
    assert "val accuracy against the interpolation weight alpha" in page and "test accuracy" in page


def test_many_classes_still_give_readable_plots(tmp_path: Path) -> None:
    from transferkit.reporting import build_report

    classes = [f"class-{i:03d}" for i in range(80)]
    rng = np.random.default_rng(0)
    matrix = (np.eye(80, dtype=int) * 5 + rng.integers(0, 2, (80, 80))).tolist()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"test": {
        "accuracy": 0.7, "macro_f1": 0.68, "n": int(np.sum(matrix)), "classes": classes, "confusion_matrix": matrix,
        "per_class": {c: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 5} for c in classes}}}))
    page = build_report(folder)
    images = re.findall(r'alt="confusion matrix[^"]*" src="data:image/png;base64,([^"]+)"', page)
    width, height = _png_size(base64.b64decode(images[0]))
    assert 1000 <= width <= 1400 and 1000 <= height <= 1300  # capped, not 80 x 0.45 inches
    assert page.count("class-079") == 1  # in the per-class table; not drawn as 80 overlapping tick labels
