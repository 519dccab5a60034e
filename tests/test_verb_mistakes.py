"""User mistakes with the verbs that take a saved model (evaluate, predict, export, report, fuse, compress).

Each case is the exact command a user typed; each must stop with exit 2 and an error that names the path or option
(and the fix), print no traceback, and leave nothing behind: no output written, no earlier file changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE, write_image_folder, write_text_csv


@pytest.fixture(scope="module")
def place(tmp_path_factory, tiny_text_model) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mistakes")
    images = write_image_folder(root / "images")
    texts = write_text_csv(root / "reviews.csv")
    tk.fit(str(images), backbone=TINY_IMAGE_BACKBONE, output=str(root / "model"), device="cpu", report=False,
           baselines=[])
    tk.fit(str(texts), backbone=str(tiny_text_model), output=str(root / "text-model"), device="cpu", report=False,
           baselines=[])
    (root / "notes.txt").write_text("my notes\n")
    (root / "existing.html").write_text("<p>an earlier report</p>\n")
    (root / "existing.onnx").write_bytes(b"earlier export")
    (root / "empty").mkdir()
    (root / "holiday").mkdir()
    (root / "holiday" / "photo-list.txt").write_text("not a model\n")
    other = write_image_folder(root / "other-classes", classes=("ant", "bee"))
    tk.fit(str(other), backbone=TINY_IMAGE_BACKBONE, output=str(root / "other-model"), device="cpu", report=False,
           baselines=[])
    return {"root": root, "images": images, "texts": texts}


# (verb arguments with {placeholders}, words the error must contain (case-insensitive))
CASES = {
    "evaluate-missing-model": ("evaluate {root}/nowhere {images}", ["nowhere"]),
    "evaluate-data-folder-as-model": ("evaluate {images} {images}", ["config.json"]),
    "evaluate-text-on-image-model": ("evaluate {root}/model {texts}", ["text", "image"]),
    "evaluate-image-on-text-model": ("evaluate {root}/text-model {images}", ["image", "text"]),
    "evaluate-unseen-classes": ("evaluate {root}/model {root}/other-classes", ["ant"]),
    "evaluate-missing-data": ("evaluate {root}/model {root}/missing.csv", ["missing.csv"]),
    "evaluate-no-gpu": ("evaluate {root}/model {images} --device cuda:7", ["--device"]),
    "predict-no-gpu": ("predict {root}/model {images} --device cuda:7", ["--device"]),
    "predict-text-to-image-model": ("predict {root}/model hello", ["hello"]),
    "predict-missing-image": ("predict {root}/model {root}/gone.png", ["gone.png"]),
    "predict-notes-file": ("predict {root}/text-model {root}/notes.txt", ["notes.txt"]),
    "predict-output-over-input": ("predict {root}/text-model {texts} --output {texts}", ["--output"]),
    "export-unknown-format": ("export {root}/model --format tflite", ["tflite", "onnx"]),
    "export-existing-file": ("export {root}/model --output {root}/existing.onnx", ["--overwrite"]),
    "export-under-a-file": ("export {root}/model --output {root}/notes.txt/model.onnx", ["notes.txt"]),
    "export-wrong-modality-data": ("export {root}/model --data {texts} --output {root}/new.onnx", ["text", "image"]),
    "export-nan-tolerance": ("export {root}/model --tolerance nan --output {root}/new.onnx", ["--tolerance"]),
    "export-not-a-model": ("export {images}", ["config.json"]),
    "export-data-wrong-delimiter": ("export {root}/text-model --data {texts} --delimiter ; --output {root}/new.onnx",
                                    ["reviews.csv", "--delimiter ','"]),
    "report-missing-folder": ("report {root}/nowhere", ["nowhere"]),
    "report-empty-folder": ("report {root}/empty", ["empty"]),
    "report-existing-file": ("report {root}/model --output {root}/existing.html", ["--overwrite"]),
    "report-under-a-file": ("report {root}/model --output {root}/notes.txt/r.html", ["notes.txt"]),
    "report-output-is-a-folder": ("report {root}/model --output {root}/empty", ["empty"]),
    "fuse-unknown-method": ("fuse {root}/model {root}/model --method blend", ["blend", "--method"]),
    "fuse-different-classes": ("fuse {root}/model {root}/other-model --method ensemble --val {images} "
                               "--output {root}/new-fused", ["class"]),
    "fuse-image-and-text": ("fuse {root}/model {root}/text-model --method ensemble --val {images} "
                            "--output {root}/new-fused", ["text"]),
    "fuse-soup-of-one": ("fuse {root}/model --method soup --val {images} --output {root}/new-fused", ["soup"]),
    "fuse-alphas-out-of-range": ("fuse {root}/model --method interpolate --alphas 0,2 --train {images} --val {images} "
                                 "--output {root}/new-fused", ["--alphas"]),
    "fuse-val-wrong-delimiter": ("fuse {root}/text-model {root}/text-model --method ensemble --val {texts} "
                                 "--delimiter ; --output {root}/new-fused", ["reviews.csv", "--delimiter ','"]),
    "fuse-without-method": ("fuse {root}/model {root}/model --val {images} --output {root}/new-fused",
                            ["--method", "ensemble"]),
    "fuse-into-a-folder-of-notes": ("fuse {root}/model {root}/model --method ensemble --val {images} "
                                    "--output {root}/holiday", ["holiday"]),
    "compress-unknown-variant": ("compress {root}/model --data {images} --variants float,zip --output {root}/new-c",
                                 ["zip"]),
    "compress-wrong-modality-data": ("compress {root}/model --data {texts} --output {root}/new-c", ["text"]),
    "compress-into-the-model": ("compress {root}/model --data {images} --output {root}/model", ["--output"]),
    "compress-missing-model": ("compress {root}/nowhere --data {images} --output {root}/new-c", ["nowhere"]),
    "compress-without-data": ("compress {root}/model --output {root}/new-c", ["--data", "test data"]),
    "compress-data-wrong-delimiter": ("compress {root}/text-model --data {texts} --delimiter ; --output {root}/new-c",
                                      ["reviews.csv", "--delimiter ','"]),
    "compress-unknown-quantization": ("compress {root}/model --data {images} --quantization int3 --output {root}/new-c",
                                      ["int3"]),
}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_mistake_stops_with_a_clear_error_and_changes_nothing(case, place) -> None:
    from transferkit.cli.main import _register_commands, app

    command, words = CASES[case]
    args = command.format(**{k: str(v) for k, v in place.items()}).split()
    before = _snapshot(place["root"])
    _register_commands()
    result = CliRunner().invoke(app, args)
    output = result.output
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}\n{output}\n{result.exception!r}"
    assert "Traceback" not in output
    assert "\nerror: " in "\n" + output, output
    message = output[("\n" + output).index("\nerror: "):].lower()
    for word in words:
        assert word.lower() in message, f"{word!r} not in: {message}"
    after = _snapshot(place["root"])
    changed = [name for name in before if after.get(name) != before[name]]
    added = [name for name in after if name not in before and "cache" not in name]
    assert not changed and not added, (changed, added)
