"""Outputs: every verb checks where it writes before any long work, writes atomically, never replaces what it did
not write (nor anything without --overwrite), saves a model before the optional steps that follow it, follows the
umask; loading refuses every inconsistency of a model folder with an ArtifactError naming the file and the fix."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE, _class_image, write_text_csv
from transferkit.errors import ArtifactError, ConfigError, ExportError, OutputError

runner = CliRunner()


def cli(*args: str):
    """Run a command in this process (monkeypatches apply); returns the result with stdout and stderr merged."""
    from transferkit.cli.main import _register_commands, app

    _register_commands()
    return runner.invoke(app, [str(a) for a in args])


def _user_error(result, *words: str) -> str:
    """A user mistake on the command line: exit 2, one error line naming ``words``, no traceback."""
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error:" in output
    for word in words:
        assert word in output, (word, output)
    return output


def _no_backbone(monkeypatch) -> None:
    """Any backbone creation fails loudly: the output must be refused before the model is even built."""
    import transferkit.backbones as backbones
    import transferkit.backbones.registry as registry

    def forbidden(*args, **kwargs):
        raise AssertionError("a backbone was built before the output was checked")

    monkeypatch.setattr(registry, "create_backbone", forbidden)
    monkeypatch.setattr(backbones, "create_backbone", forbidden)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _resign(folder: Path) -> None:
    """Write the checksum of an edited config.json into manifest.json (as someone who edits both would)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["config.json"] = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _edit_config(folder: Path, change, resign: bool = True) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if resign:
        _resign(folder)


def _fit(data: Path, backbone: Path, out: Path, **options):
    return tk.fit(str(data), backbone=str(backbone), output=str(out), progress=False, tracking_uri="off", **options)


@pytest.fixture
def text_model(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> Path:
    out = tmp_path / "model"
    _fit(text_csv, tiny_text_model, out, report=False)
    return out


# --- 1. earlier work is never lost -----------------------------------------------------------------------------

def test_report_output_that_exists_needs_overwrite(text_model: Path, tmp_path: Path) -> None:
    mine = tmp_path / "notes.html"
    mine.write_text("<p>my own notes</p>")
    result = cli("report", text_model, "--output", mine)
    _user_error(result, str(mine), "--overwrite")
    assert mine.read_text() == "<p>my own notes</p>"
    assert cli("report", text_model, "--output", mine, "--overwrite").exit_code == 0
    assert "transferkit report" in mine.read_text()
    # the default place is the report's own: written again without --overwrite
    assert cli("report", text_model).exit_code == 0 and cli("report", text_model).exit_code == 0
    # a file of the run folder that is not a report is never replaced, even with --overwrite
    metrics = (text_model / "metrics.json").read_bytes()
    _user_error(cli("report", text_model, "--output", text_model / "metrics.json", "--overwrite"), "metrics.json")
    assert (text_model / "metrics.json").read_bytes() == metrics


def test_tune_into_the_folder_of_another_study_needs_overwrite(text_csv: Path, tiny_text_model: Path,
                                                               tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    out = tmp_path / "search"
    options = dict(backbone=str(tiny_text_model), n_trials=2, output=str(out), tracking_uri="off", report=False,
                   progress=False)
    first = tk.tune(str(text_csv), study_name="first", **options)
    before = _tree(out)
    with pytest.raises(ConfigError, match="--overwrite") as error:
        tk.tune(str(text_csv), study_name="second", **options)
    assert "first" in str(error.value) and "--study-name first" in str(error.value)
    assert _tree(out) == before  # nothing of the first study's results changed
    again = tk.tune(str(text_csv), study_name="first", **{**options, "n_trials": 3})  # the same study continues
    assert again.n_complete == 3 and again.best_value >= first.best_value
    second = tk.tune(str(text_csv), study_name="second", overwrite=True, **options)
    assert json.loads((out / "tune.json").read_text())["study_name"] == "second"
    assert any("first" in note for note in second.notes)
    kept = {f"trial-{row['trial']}.yaml" for row in second.top}
    assert {p.name for p in (out / "trials").iterdir()} == kept  # no trial file of the replaced study is left


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_unwritable_output_is_refused_before_training(where: str, text_csv: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    out = "/proc/transferkit-model" if where == "proc" else str(tmp_path / "file.txt" / "model")
    _no_backbone(monkeypatch)
    result = cli("fit", text_csv, "--strategy", "finetune", "--output", out, "--tracking-uri", "off", "-q")
    _user_error(result, "--output", out)
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def _verb_args(verb: str, tmp_path: Path, out: str) -> list[str]:
    """The command line of each verb that writes, with ``out`` as where it writes (inputs need not exist: the
    output is checked first)."""
    data, model = str(tmp_path / "reviews.csv"), str(tmp_path / "model")
    config = tmp_path / "tasks.yaml"
    config.write_text(f"tasks:\n  - name: a\n    data: {data}\n")
    return {
        "fit": ["fit", data, "--output", out],
        "cv": ["cv", data, "--output", out],
        "tune": ["tune", data, "--output", out],
        "distill": ["distill", data, "--teacher", model, "--output", out],
        "adapt": ["adapt", "--source", data, "--target", data, "--output", out],
        "multitask": ["multitask", str(config), "--output", out],
        "fuse": ["fuse", model, "--method", "interpolate", "--val", data, "--output", out],
        "compress": ["compress", model, "--data", data, "--output", out],
        "export": ["export", model, "--output", out],
        "report": ["report", model, "--output", out],
        "predict": ["predict", model, "texts", "--output", out],
    }[verb]


VERBS = ["fit", "cv", "tune", "distill", "adapt", "multitask", "fuse", "compress", "export", "report", "predict"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_refuses_an_output_under_a_file(verb: str, text_csv: Path, tiny_text_model: Path,
                                                    tmp_path: Path) -> None:
    _fit(text_csv, tiny_text_model, tmp_path / "model", report=False)
    (tmp_path / "file.txt").write_text("not a folder")
    out = str(tmp_path / "file.txt" / "result")
    result = cli(*_verb_args(verb, tmp_path, out), "-q")
    _user_error(result, "file.txt")
    assert (tmp_path / "file.txt").read_text() == "not a folder"


def _earlier_output(verb: str, tmp_path: Path) -> Path:
    """What an earlier run of ``verb`` left at its output."""
    if verb in ("export", "report", "predict"):
        path = tmp_path / f"earlier.{ {'export': 'onnx', 'report': 'html', 'predict': 'jsonl'}[verb] }"
        path.write_text("an earlier result")
        return path
    path = tmp_path / "earlier"
    if verb in ("cv", "tune", "compress"):
        path.mkdir()
        (path / {"cv": "cv.json", "tune": "tune.json", "compress": "tradeoff.json"}[verb]).write_text(
            json.dumps({"study_name": "an earlier study"}))
        return path
    model = tk.load_model(tmp_path / "model")
    return tk.save_model(model, path)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_needs_overwrite_to_replace_its_earlier_output(verb: str, text_csv: Path, tiny_text_model: Path,
                                                                   tmp_path: Path, monkeypatch) -> None:
    _fit(text_csv, tiny_text_model, tmp_path / "model", report=False)
    earlier = _earlier_output(verb, tmp_path)
    before = _tree(earlier) if earlier.is_dir() else earlier.read_bytes()
    _no_backbone(monkeypatch)
    result = cli(*_verb_args(verb, tmp_path, str(earlier)), "-q")
    _user_error(result, str(earlier), "--overwrite")
    assert (_tree(earlier) if earlier.is_dir() else earlier.read_bytes()) == before


def test_overwrite_replaces_a_model_only_once_the_new_one_is_complete(text_model: Path, monkeypatch) -> None:
    import transferkit.models.artifact_kinds as artifact_kinds

    before = _tree(text_model)
    model = tk.load_model(text_model)

    def broken_card(config, metrics):
        raise RuntimeError("disk trouble while writing the card")

    monkeypatch.setattr(artifact_kinds, "_model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk trouble"):
        tk.save_model(model, text_model, overwrite=True)
    assert _tree(text_model) == before
    assert sorted(p.name for p in text_model.parent.iterdir()) == ["model", "reviews.csv"]  # no staging left


def test_ctrl_c_during_save_keeps_the_old_model(text_model: Path, monkeypatch) -> None:
    import safetensors.torch

    before = _tree(text_model)
    model = tk.load_model(text_model)
    real = safetensors.torch.save_file

    def interrupted(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)  # half-way through the folder
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tk.save_model(model, text_model, overwrite=True)
    assert _tree(text_model) == before
    assert not [p for p in text_model.parent.iterdir() if p.name.startswith(".model.")]
    tk.load_model(text_model)


# --- 2. the model is saved before the optional late steps ------------------------------------------------------

def test_a_failing_report_does_not_lose_the_model(text_csv: Path, tiny_text_model: Path, tmp_path: Path,
                                                  monkeypatch) -> None:
    import transferkit.reporting.report as report

    def broken(*args, **kwargs):
        raise RuntimeError("the report broke")

    monkeypatch.setattr(report, "write_report", broken)
    out = tmp_path / "model"
    result = cli("fit", text_csv, "--backbone", tiny_text_model, "--output", out, "--tracking-uri", "off", "-q")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "the report failed" in result.output
    tk.load_model(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0 and any("report broke" in n for n in metrics["notes"])
    assert "note: the report failed" in (out / "summary.txt").read_text()
    assert "pending" not in metrics


def test_an_unreachable_tracking_store_does_not_lose_the_model(text_csv: Path, tiny_text_model: Path,
                                                               tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    out = tmp_path / "model"
    result = cli("fit", text_csv, "--backbone", tiny_text_model, "--output", out, "--no-report",
                 "--tracking-uri", "sqlite:////proc/no-such-store/mlflow.db", "-q")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "tracking: could not log the run" in result.output
    tk.load_model(out)
    notes = json.loads((out / "metrics.json").read_text())["notes"]
    assert any("/proc/no-such-store" in note for note in notes)


def test_a_broken_matplotlib_does_not_lose_the_model(text_csv: Path, tiny_text_model: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # importing it now fails, as a broken install does
    out = tmp_path / "model"
    with pytest.warns(UserWarning, match="reliability diagram failed"):
        result = _fit(text_csv, tiny_text_model, out, calibrate=True)
    assert (out / "model.safetensors").is_file() and result.output == out
    assert result.model.temperature != 1.0 or "temperature_scaling" in result.config
    assert len(result.notes) >= 1 and "note:" in result.summary()
    tk.load_model(out)


def test_a_failing_baseline_is_a_note_beside_the_saved_model(text_csv: Path, tiny_text_model: Path,
                                                             tmp_path: Path, monkeypatch) -> None:
    import transferkit.evaluation.baselines as baselines

    def broken(*args, **kwargs):
        raise MemoryError("the raw baseline ran out of memory")

    monkeypatch.setitem(baselines.BASELINES, "raw", broken)
    out = tmp_path / "model"
    with pytest.warns(UserWarning, match="baseline raw failed"):
        result = _fit(text_csv, tiny_text_model, out, report=False, baselines=["raw"])
    assert result.baselines == {} and "raw" in result.skipped_baselines
    assert json.loads((out / "metrics.json").read_text())["test"]["accuracy"] == result.accuracy
    tk.load_model(out)


# --- 3. loading checks every model folder ---------------------------------------------------------------------

def test_a_class_list_longer_than_the_head_is_refused_by_predict_and_evaluate(text_model: Path,
                                                                              text_csv: Path) -> None:
    _edit_config(text_model, lambda c: c["classes"].append("neutral"))
    with pytest.raises(ArtifactError, match="3 names but the head has 2 outputs"):
        tk.load_model(text_model)
    _user_error(cli("predict", text_model, "a fine film", "-q"), "config.json", "head has 2 outputs", "re-save")
    evaluated = _user_error(cli("evaluate", text_model, text_csv, "-q"), "config.json")
    assert "reviews.csv" not in evaluated  # the model is blamed, not the data


def test_swapped_class_names_are_detected(text_model: Path) -> None:
    _edit_config(text_model, lambda c: c["classes"].reverse(), resign=False)
    with pytest.raises(ArtifactError, match="config.json: changed since the model was saved") as error:
        tk.load_model(text_model)
    assert "re-save the model" in str(error.value)


def test_weights_that_pass_the_checksums_but_are_not_safetensors(text_model: Path) -> None:
    garbage = b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + os.urandom(64)
    (text_model / "model.safetensors").write_bytes(garbage)
    digest = hashlib.sha256(garbage).hexdigest()

    def relist(config):
        config["files"]["model.safetensors"] = digest

    _edit_config(text_model, relist)
    manifest = json.loads((text_model / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = digest
    (text_model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="model.safetensors: not a transferkit safetensors weights file"):
        tk.load_model(text_model)
    _user_error(cli("predict", text_model, "a fine film", "-q"), "model.safetensors", "re-save")


def test_a_folder_saved_before_the_manifest_loads_with_a_warning(text_model: Path) -> None:
    (text_model / "manifest.json").unlink()
    with pytest.warns(UserWarning, match="no manifest.json"):
        tk.load_model(text_model)


def test_non_finite_head_weights_are_refused(text_model: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(text_model / "model.safetensors"))
    name = next(k for k in tensors if k.startswith("head.") and tensors[k].is_floating_point() and tensors[k].numel())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(text_model / "model.safetensors"), metadata={"format": "transferkit-model"})
    digest = hashlib.sha256((text_model / "model.safetensors").read_bytes()).hexdigest()
    _edit_config(text_model, lambda c: c["files"].update({"model.safetensors": digest}))
    manifest = json.loads((text_model / "manifest.json").read_text())
    manifest["files"]["model.safetensors"] = digest
    (text_model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=f"tensor {name} holds NaN"):
        tk.load_model(text_model)


def _kind_folders(tiny_text_model: Path, root: Path) -> dict[str, Path]:
    """One folder of every kind, made without training: single (as distill and compress write it), multi-task,
    ensemble, stacked."""
    from transferkit.models.artifact_kinds import save_ensemble, save_multitask_model, save_stacked
    from transferkit.backbones import create_backbone
    from transferkit.models.combined import EnsembleModel, StackedModel
    from transferkit.models.heads import HeadSet, LinearHead
    from transferkit.models.model import TransferModel
    from transferkit.models.multitask_model import MultiTaskModel

    torch.manual_seed(0)
    backbone = create_backbone(str(tiny_text_model), max_length=16)
    single = TransferModel(backbone, LinearHead(backbone.num_features, 2), ["neg", "pos"], strategy="distill")
    other = TransferModel(backbone, LinearHead(backbone.num_features, 2), ["pos", "neg"], strategy="finetune")
    folders = {"single": tk.save_model(single, root / "single", include_backbone=True)}
    heads = HeadSet(backbone.num_features, {"sentiment": 2, "topic": 3})
    folders["multitask"] = save_multitask_model(
        MultiTaskModel(backbone, heads, {"sentiment": ["neg", "pos"], "topic": ["a", "b", "c"]}), root / "multitask")
    folders["ensemble"] = save_ensemble(EnsembleModel([single, other]), root / "ensemble")
    folders["stacked"] = save_stacked(StackedModel([backbone], [None], LinearHead(backbone.num_features, 2),
                                                   ["neg", "pos"]), root / "stacked")
    return folders


CLASS_LISTS = {"single": lambda c: c["classes"].pop(), "ensemble": lambda c: c["classes"].pop(),
               "stacked": lambda c: c["classes"].pop(), "multitask": lambda c: c["tasks"]["topic"]["classes"].pop()}


@pytest.mark.parametrize("kind", list(CLASS_LISTS))
def test_every_model_kind_checks_its_config_and_its_class_lists(kind: str, tiny_text_model: Path,
                                                               tmp_path: Path) -> None:
    folder = _kind_folders(tiny_text_model, tmp_path)[kind]
    tk.load_model(folder)  # intact: loads
    _edit_config(folder, CLASS_LISTS[kind], resign=False)
    with pytest.raises(ArtifactError, match="config.json: changed since the model was saved"):
        tk.load_model(folder)
    _resign(folder)
    with pytest.raises(ArtifactError, match=r"config.json: .* names but the head has \d outputs") as error:
        tk.load_model(folder)
    assert str(folder) in str(error.value) and "re-save" in str(error.value)


def test_a_structured_pruned_variant_checks_its_config(tiny_text_model: Path, tmp_path: Path) -> None:
    from transferkit.compress.prune import prune_structured

    folder = _kind_folders(tiny_text_model, tmp_path)["single"]
    model = tk.load_model(folder)
    prune_structured(model, 0.5)
    pruned = tk.save_model(model, tmp_path / "pruned", include_backbone=True)
    tk.load_model(pruned)

    def widen(config):
        config["backbone"]["architecture_changes"] = []  # the record of the removed neurons lost

    _edit_config(pruned, widen)
    with pytest.raises(ArtifactError, match="model.safetensors: weights do not fit"):
        tk.load_model(pruned)


def test_onnx_files_of_a_model_folder_are_checked(tiny_text_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from transferkit.workflows.export import export_model_folder

    folders = _kind_folders(tiny_text_model, tmp_path)
    folder = folders["single"]
    (folder / "model.onnx").write_bytes(b"this is not an onnx graph")
    with pytest.raises(ExportError, match="model.onnx: cannot be read as an ONNX file") as error:
        tk.predict(str(folder), ["a fine film"], runtime="onnx", progress=False)
    assert "transferkit export" in str(error.value) and isinstance(error.value, ArtifactError)
    # an export of another model (3 classes) put in this one's place
    model = tk.load_model(folder)
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    wider = tk.save_model(TransferModel(model.backbone, LinearHead(model.backbone.num_features, 3),
                                        ["a", "b", "c"], strategy="finetune"), tmp_path / "wider",
                          include_backbone=True)
    export_model_folder(wider)
    (folder / "model.onnx").write_bytes((wider / "model.onnx").read_bytes())
    with pytest.raises(ExportError, match="model.onnx"):
        tk.predict(str(folder), ["a fine film"], runtime="onnx", progress=False)


# --- 4. export and compress -------------------------------------------------------------------------------------

def test_export_with_data_of_the_wrong_modality_writes_nothing(text_model: Path, image_folder: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    _user_error(cli("export", text_model, "--data", image_folder, "--output", out), "--data", "image", "text")
    assert not out.exists() and not list(tmp_path.glob(".model.onnx*"))


def test_a_failed_parity_check_leaves_no_file_and_keeps_the_old_one(text_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an earlier export")
    result = cli("export", text_model, "--output", out, "--overwrite", "--tolerance", "0")
    if result.exit_code == 0:  # float kernels happened to agree bit for bit: nothing to check here
        pytest.skip("ONNX Runtime matched PyTorch exactly")
    _user_error(result, str(out), "Nothing was written")
    assert out.read_bytes() == b"an earlier export"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.onnx")]


def _image_model(root: Path) -> tuple[Path, object]:
    from transferkit.backbones import create_backbone
    from transferkit.data.sources import from_arrays
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    rng = np.random.default_rng(1)
    classes = ["cat", "dog", "fox"]
    labels = [name for name in classes for _ in range(6)]
    data = from_arrays(np.stack([_class_image(rng, classes.index(n), size=24) for n in labels]), labels,
                       origin="tiny-images")
    torch.manual_seed(0)
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    model = TransferModel(backbone, LinearHead(backbone.num_features, 3), classes, strategy="finetune").eval()
    return tk.save_model(model, root / "image-model", include_backbone=True), data


def test_compress_with_a_relative_output_quantizes_as_well_as_with_an_absolute_one(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from transferkit.workflows.compress import compress_model

    model_dir, data = _image_model(tmp_path)
    monkeypatch.chdir(tmp_path)
    options = dict(calibration=data, variants=["onnx", "int8"], threads=1)
    relative = compress_model(model_dir, data, output="variants", **options)
    absolute = compress_model(model_dir, data, output=str(tmp_path / "variants-abs"), **options)
    int8 = relative.row("int8")
    assert int8.size_bytes == absolute.row("int8").size_bytes
    assert int8.size_bytes < 0.4 * relative.row("onnx").size_bytes
    assert int8.path == str(Path("variants") / "int8") and Path(int8.path, "model.onnx").is_file()


def test_compress_refuses_the_model_folder_itself(text_model: Path, text_csv: Path) -> None:
    before = _tree(text_model)
    _user_error(cli("compress", text_model, "--data", text_csv, "--output", text_model, "--overwrite"),
                "model folder")
    assert _tree(text_model) == before


# --- 5. modes follow the umask ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_saved_files_and_folders_follow_the_umask(mask: int, text_csv: Path, tiny_text_model: Path,
                                                  tmp_path: Path) -> None:
    previous = os.umask(mask)
    try:
        out = tmp_path / "model"
        _fit(text_csv, tiny_text_model, out)
        predictions = tmp_path / "predictions.jsonl"
        assert cli("predict", out, "a fine film", "--output", predictions, "-q").exit_code == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    for path in [*out.iterdir(), predictions]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


# --- 6. more output mistakes ------------------------------------------------------------------------------------

def test_a_folder_that_is_not_a_model_is_never_written_into(text_csv: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    _no_backbone(monkeypatch)
    _user_error(cli("fit", text_csv, "--output", out, "--overwrite", "-q"), "thesis", "not a model",
                "even with --overwrite")
    assert _tree(out) == {"thesis.tex": b"precious"}


@pytest.mark.parametrize("verb", ["cv", "tune"])
def test_results_are_never_written_into_a_model_folder(verb: str, text_model: Path, text_csv: Path) -> None:
    before = _tree(text_model)
    _user_error(cli(verb, text_csv, "--output", text_model, "--overwrite", "-q"), "holds a transferkit model")
    assert _tree(text_model) == before


@pytest.mark.parametrize("where", ["itself", "inside"])
def test_the_data_folder_is_never_the_output(where: str, image_folder: Path, monkeypatch) -> None:
    out = image_folder if where == "itself" else image_folder / "model"
    before = _tree(image_folder)
    _no_backbone(monkeypatch)
    _user_error(cli("fit", image_folder, "--output", out, "--overwrite", "-q"), "training data")
    assert _tree(image_folder) == before


def test_a_table_is_never_overwritten_by_predictions(text_model: Path, text_csv: Path) -> None:
    before = text_csv.read_bytes()
    _user_error(cli("predict", text_model, text_csv, "--output", text_csv, "--overwrite", "-q"), "input")
    assert text_csv.read_bytes() == before


def test_paths_with_spaces_and_unicode(text_csv: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "mes modèles" / "critiques de films ✓"
    result = _fit(text_csv, tiny_text_model, out)
    assert result.output == out and (out / "report.html").is_file()
    assert tk.predict(str(out), ["a wonderful film"], progress=False)[0]["label"] in ("positive", "negative")


def test_a_read_only_folder_is_refused(text_csv: Path, tmp_path: Path, monkeypatch) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the /proc case covers an unwritable place)")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    _no_backbone(monkeypatch)
    try:
        _user_error(cli("fit", text_csv, "--output", locked / "model", "-q"), "cannot write")
    finally:
        locked.chmod(0o755)


def test_a_full_disk_during_save_keeps_the_old_model(text_model: Path, tmp_path: Path) -> None:
    """The file-size limit stands in for a full disk: writing the weights fails half-way."""
    before = _tree(text_model)
    script = textwrap.dedent(f"""
        import resource, signal
        import transferkit as tk
        from transferkit.errors import OutputError
        model = tk.load_model({str(text_model)!r})
        model.head.linear.weight.data.add_(1.0)
        model.strategy = "finetune"  # the backbone goes in too: the weights file is larger than the limit
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        try:
            tk.save_model(model, {str(text_model)!r}, overwrite=True)
        except OutputError as exc:
            print("OutputError:", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "OutputError:" in proc.stdout, proc.stdout + proc.stderr
    assert str(text_model) in proc.stdout and "nothing there was changed" in proc.stdout
    assert _tree(text_model) == before
    assert not [p for p in text_model.parent.iterdir() if p.name.startswith(".model.")]


def test_a_folder_filled_during_the_run_is_left_alone(text_csv: Path, tiny_text_model: Path, tmp_path: Path,
                                                      monkeypatch) -> None:
    from transferkit.estimators.linear_probe import LinearProbe

    out = tmp_path / "model"
    real_fit = LinearProbe.fit

    def fit_while_someone_writes(self, *args, **kwargs):
        out.mkdir(exist_ok=True)
        (out / "theirs.txt").write_text("another program's file")
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(LinearProbe, "fit", fit_while_someone_writes)
    with pytest.warns(UserWarning, match="changed while this run worked"):
        result = _fit(text_csv, tiny_text_model, out, report=False, label_prior="off")  # the plain probe runs
    assert _tree(out) == {"theirs.txt": b"another program's file"}
    assert result.output != out and result.output.parent == out.parent
    tk.load_model(result.output)
