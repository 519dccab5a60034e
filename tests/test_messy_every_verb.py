"""Every verb, end to end through the command line, on the messy corpus (tests/messy_corpus.py): real photographs
of every size, mode, format and orientation with stray files and links, and tables in every encoding and layout.

Each command must finish (exit 0, no traceback) and produce what it promises; the inputs that cannot work must
stop with exit 2 and a one-line error before any model runs. One module-scoped set of models is shared by the
verbs that take a model, so the whole file runs in a few minutes on the tiny backbones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY_IMAGE_BACKBONE

IMAGE_OPTIONS = ["--backbone", TINY_IMAGE_BACKBONE, "--device", "cpu", "--seed", "0"]


def _cli(*args: str, code: int = 0) -> str:
    """Run one command in process; check its exit code and that no traceback reached the user."""
    from transferkit.cli.main import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(app, [str(a) for a in args])
    output = result.output
    assert result.exit_code == code, f"exit {result.exit_code} (wanted {code}) for {args}:\n{output}\n{result.exception!r}"
    assert "Traceback" not in output, output
    if code == 2:
        assert "\nerror: " in "\n" + output, output
        return output[("\n" + output).index("\nerror: "):]  # the error message, from "error:" on
    return output


def _json(output: str):
    """The first JSON document in ``output`` (warnings, on stderr, are mixed into the runner's output)."""
    return json.JSONDecoder().raw_decode(output[output.index("{"):])[0]


def _images_in(folder: Path) -> int:
    from transferkit.data import load_data

    return len(load_data(folder))


@pytest.fixture(scope="module")
def runs(messy_corpus, tmp_path_factory) -> dict[str, Path]:
    """Models fitted on the messy image folders: a probe (default strategy) and a one-epoch fine-tune."""
    root = tmp_path_factory.mktemp("messy-runs")
    probe, finetuned = root / "probe", root / "finetuned"
    _cli("fit", messy_corpus["images"], *IMAGE_OPTIONS, "--output", probe)
    _cli("fit", messy_corpus["images"], *IMAGE_OPTIONS, "--strategy", "finetune", "--epochs", "1", "--batch-size",
         "8", "--augment", "light", "--work-dir", root / "work", "--no-report", "--baselines", "raw",
         "--output", finetuned)
    return {"probe": probe, "finetuned": finetuned, "root": root}


def test_fit_on_messy_photos_keeps_every_image_and_writes_everything(runs, messy_corpus) -> None:
    config = json.loads((runs["probe"] / "config.json").read_text())
    assert config["classes"] == ["china", "flower", "hopper"]
    run_config = (runs["probe"] / "run_config.yaml").read_text()
    total = _images_in(messy_corpus["images"])
    assert total == 42
    import yaml

    resolved = yaml.safe_load(run_config)
    assert resolved["n_train"] + resolved["n_val"] + resolved["n_test"] == total
    metrics = json.loads((runs["probe"] / "metrics.json").read_text())
    assert "raw" in metrics["baselines"]  # the raw-pixel baseline ran on every size and mode
    assert (runs["probe"] / "report.html").stat().st_size > 10_000
    assert json.loads((runs["finetuned"] / "metrics.json").read_text())["test"]["accuracy"] >= 0


def test_fit_with_links_skips_the_escaping_ones_and_keeps_labels(messy_corpus, tmp_path) -> None:
    folder = messy_corpus.get("images_with_links")
    if folder is None:
        pytest.skip("no symbolic links on this system")
    out = _cli("fit", folder, *IMAGE_OPTIONS, "--output", tmp_path / "m", "--no-report")
    assert "up" in out and "loop" in out and "gone.jpg" in out  # each skipped link is named
    from transferkit.data import load_data

    data = load_data(folder)
    for item, label in zip(data.items, data.labels):
        assert Path(item).relative_to(folder).parts[0] == label  # no image took another folder's label


@pytest.mark.parametrize("key", ["images_odd_shapes", "images_undecodable_names", "images_conflicting_duplicate",
                                 "image_table"])
def test_fit_on_other_image_layouts(key, messy_corpus, tmp_path) -> None:
    out = _cli("fit", messy_corpus[key], *IMAGE_OPTIONS, "--output", tmp_path / "m", "--no-report")
    assert "verdict:" in out
    if key == "images_conflicting_duplicate":
        assert "No model can get both right" in out


def test_evaluate_predict_export_report(runs, messy_corpus, tmp_path) -> None:
    evaluated = _json(_cli("evaluate", runs["probe"], messy_corpus["images"], "--json", "-q"))
    assert evaluated["n"] == 42 and 0 <= evaluated["accuracy"] <= 1
    lines = _cli("predict", runs["probe"], messy_corpus["images_odd_shapes"], "-q").strip().splitlines()
    answers = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(answers) == _images_in(messy_corpus["images_odd_shapes"])
    assert all(a["label"] in ("china", "flower", "hopper") for a in answers)
    onnx = tmp_path / "model.onnx"
    _cli("export", runs["probe"], "--data", messy_corpus["images"], "--output", onnx)
    assert onnx.stat().st_size > 1000
    html = tmp_path / "report.html"
    _cli("report", runs["finetuned"], "--output", html, "-q")
    assert "<html" in html.read_text(encoding="utf-8").lower()
    _cli("report", runs["finetuned"], "--output", html, "-q", code=2)  # never over an existing file


def test_rank_cv_tune(messy_corpus, tmp_path) -> None:
    ranked = _cli("rank", messy_corpus["images"], "--candidates", f"{TINY_IMAGE_BACKBONE},random:timm:test_resnet",
                  "--device", "cpu")
    assert "test_resnet" in ranked and "raw" in ranked
    cv = _cli("cv", messy_corpus["images"], *IMAGE_OPTIONS, "--folds", "2", "--output", tmp_path / "cv")
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert "fold" in cv.lower()
    _cli("tune", messy_corpus["images"], *IMAGE_OPTIONS, "--n-trials", "2", "--folds", "2",
         "--output", tmp_path / "tune")
    assert (tmp_path / "tune" / "best_config.yaml").is_file()


def test_adapt_distill_compress(runs, messy_corpus, tmp_path) -> None:
    _cli("adapt", "--source", messy_corpus["images"], "--target", messy_corpus["images_odd_shapes"],
         "--method", "coral-features", "--backbone", TINY_IMAGE_BACKBONE, "--device", "cpu",
         "--output", tmp_path / "adapted", "-q")
    assert (tmp_path / "adapted" / "config.json").is_file()
    _cli("distill", messy_corpus["images"], "--teacher", runs["probe"], "--student", TINY_IMAGE_BACKBONE,
         "--epochs", "1", "--batch-size", "8", "--augment", "none", "--device", "cpu", "--work-dir",
         tmp_path / "work", "--output", tmp_path / "student", "--quiet")
    import transferkit as tk

    assert tk.load_model(tmp_path / "student").strategy == "distill"
    _cli("compress", runs["finetuned"], "--data", messy_corpus["images"], "--variants", "float,int8",
         "--output", tmp_path / "compressed", "-q")
    assert any((tmp_path / "compressed").iterdir())


def test_multitask_and_fuse(runs, messy_corpus, tmp_path) -> None:
    config = tmp_path / "multitask.yaml"
    config.write_text(f"""
backbone: {TINY_IMAGE_BACKBONE}
epochs: 1
batch_size: 8
augment: none
tracking_uri: "off"
work_dir: {tmp_path / 'run'}
tasks:
  - name: photos
    data: {messy_corpus['images']}
  - name: shapes
    data: {messy_corpus['images_odd_shapes']}
""")
    out = _cli("multitask", config, "--output", tmp_path / "multi", "--quiet")
    assert "photos" in out and "shapes" in out
    fused = _cli("fuse", runs["probe"], runs["finetuned"], "--method", "ensemble", "--val", messy_corpus["images"],
                 "--output", tmp_path / "ensemble", "--json")
    assert sum(_json(fused)["weights"]) == pytest.approx(1.0)


TABLES = [("text_clean", []), ("text_csv_bom", []), ("text_semicolon", []), ("text_excel_sep", []),
          ("text_tsv", []), ("text_crlf_quoted", []), ("text_jsonl", []), ("text_parquet", []), ("text_utf16", []),
          ("text_latin1", ["--encoding", "latin-1"]), ("text_label_variants", ["--normalize-labels"]),
          ("text_conflicting_duplicates", [])]


@pytest.mark.parametrize("key,extra", TABLES, ids=[key for key, _ in TABLES])
def test_text_tables_fit_and_predict(key, extra, messy_corpus, tiny_text_model, tmp_path) -> None:
    if key not in messy_corpus:
        pytest.skip(f"{key} needs an optional package")
    out = tmp_path / "m"
    _cli("fit", messy_corpus[key], "--backbone", tiny_text_model, "--device", "cpu", "--no-report", *extra,
         "--output", out)
    classes = json.loads((out / "config.json").read_text())["classes"]
    assert len(classes) == 2
    evaluated = _json(_cli("evaluate", out, messy_corpus[key], *extra, "--json", "-q"))
    assert evaluated["n"] >= 20
    answer = json.loads(_cli("predict", out, "a wonderful, moving film", "-q").strip().splitlines()[-1])
    assert answer["label"] in classes


FAILING = [("text_latin1", ["latin-1", "line 2"]), ("text_label_variants", ["--normalize-labels"]),
           ("text_jsonl_broken", ["line 4"]), ("text_float_labels", ["numeric"]), ("images_broken", ["truncated"]),
           ("text_nul", ["line"])]


@pytest.mark.parametrize("verb", ["fit", "cv", "rank"])
@pytest.mark.parametrize("key,words", FAILING, ids=[key for key, _ in FAILING])
def test_inputs_that_cannot_work_stop_every_verb_before_any_model(verb, key, words, messy_corpus, tmp_path) -> None:
    out_dir = tmp_path / "out"
    args = {"fit": ["--output", out_dir], "cv": ["--folds", "2"], "rank": ["--candidates", TINY_IMAGE_BACKBONE]}[verb]
    output = _cli(verb, messy_corpus[key], *args, code=2)
    message = output
    assert str(messy_corpus[key].name) in message or "line" in message
    for word in words:
        assert word.lower() in message.lower(), message
    assert not out_dir.exists()  # nothing was written


def test_serve_answers_messy_photos(runs, messy_corpus, tmp_path) -> None:
    httpx = pytest.importorskip("httpx")
    from test_serving import Server

    server = Server(runs["probe"], cache=tmp_path / "cache")
    try:
        photos = sorted(p for p in (messy_corpus["images"] / "china").iterdir() if not p.name.startswith(".") and p.suffix.lower() in
                        (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"))
        files = [("files", (p.name, p.read_bytes())) for p in photos[:8]]
        answer = httpx.post(f"{server.url}/predict", files=files, timeout=120)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert len(predictions) == len(files)
        assert all(np.isfinite(list(p["probabilities"].values())).all() for p in predictions)
        log = server.output()
    finally:
        server.stop()
    assert "Traceback" not in log
