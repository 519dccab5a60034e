"""fit --probe-views: augmented views of few training images as extra rows of the linear probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from conftest import TINY_IMAGE_BACKBONE
from transferkit.cli.main import _register_commands, app

COMMON = ["--tracking-uri", "off", "--device", "cpu", "--no-report", "--baselines", "raw", "-q"]


def invoke(*args: str):
    _register_commands()
    return CliRunner().invoke(app, list(args))


def _head(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if k.startswith("head.")}


def test_probe_views_add_a_flip_and_four_crops_of_each_training_image(image_folder: Path, tmp_path: Path) -> None:
    outputs = {}
    for mode in ("auto", "off"):
        out = outputs[mode] = tmp_path / f"model-{mode}"
        result = invoke("fit", str(image_folder), "--backbone", TINY_IMAGE_BACKBONE, "--strategy", "linear-probe",
                        "--probe-views", mode, "--probe-c", "1.0", "--output", str(out), "--work-dir",
                        str(tmp_path / "work"), *COMMON)
        assert result.exit_code == 0, result.output
    auto = yaml.safe_load((outputs["auto"] / "run_config.yaml").read_text())
    assert auto["probe_views"] == "auto"
    views = auto["augmented_views"]
    assert views["views"] == ["flip", "crop top-left", "crop top-right", "crop bottom-left", "crop bottom-right"]
    assert "at most 20" in views["reason"]
    off = yaml.safe_load((outputs["off"] / "run_config.yaml").read_text())
    assert off["augmented_views"] == {"views": [], "reason": "--probe-views off"}
    with_views, without = _head(outputs["auto"]), _head(outputs["off"])
    assert not all(np.allclose(with_views[k], without[k]) for k in with_views)  # the views changed the head


def test_probe_views_on_text_is_refused_before_any_work(text_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = invoke("fit", str(text_csv), "--backbone", "all-MiniLM-L6-v2", "--strategy", "linear-probe",
                    "--probe-views", "on", "--output", str(out), "--work-dir", str(tmp_path / "work"), *COMMON)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert "--probe-views on" in result.output and "text data has no augmented views" in result.output
    assert "--probe-views auto or off" in result.output
    assert not out.exists() and not (tmp_path / "work").exists()


def test_image_views_are_the_flip_and_the_four_corner_crops() -> None:
    from PIL import Image

    from transferkit.data.views import image_view

    array = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    image = Image.fromarray(array)
    assert np.array_equal(np.asarray(image_view(image, "flip")), array[:, ::-1])
    h, w = round(10 * 0.85), round(20 * 0.85)
    assert np.array_equal(np.asarray(image_view(image, "crop top-left")), array[:h, :w])
    assert np.array_equal(np.asarray(image_view(image, "crop bottom-right")), array[10 - h:, 20 - w:])
    assert np.array_equal(np.asarray(image_view(image, "crop top-right")), array[:h, 20 - w:])
