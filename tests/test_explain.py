"""explain: attributions that find a planted cue (a bright corner square in one class's images, a trigger word in
one class's texts), every model kind explained, faithfulness against random orders, bad requests refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import TINY_IMAGE_BACKBONE
from transferkit.cli.main import _register_commands, app
from transferkit.errors import ArtifactError, ConfigError, DataError

_register_commands()
runner = CliRunner()

#: The planted square: the top-left CUE x CUE pixels of a 32-pixel image.
CUE = 8
TRIGGER = "zebra"
FILLER = "the a film story plot actor scene music long short old new city night day house road water light".split()


def _cue_images(root: Path, per_class: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cue", "plain"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(40, 120, size=(32, 32, 3)).astype(np.uint8)
            if label == "cue":
                image[:CUE, :CUE] = 255
            Image.fromarray(image).save(root / label / f"{i:02d}.png")
    return root


def _cue_texts(path: Path) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        words = [str(w) for w in rng.choice(FILLER, size=6)]
        label = "alpha" if i % 2 == 0 else "beta"
        if label == "alpha":
            words.insert(int(rng.integers(0, 7)), TRIGGER)
        rows.append((" ".join(words), label))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    return path, [text for text, label in rows if label == "alpha"][:6]


def _train_cue_model(images: Path, folder: Path, epochs: int = 2) -> Path:
    """A tiny CNN and a linear head trained end to end (Adam, cross-entropy) on the planted-cue images, saved as a
    model folder like fit's (fit's own training is tested in test_finetune.py; here the model only has to exist)."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.models.artifacts import save_model
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    torch.manual_seed(0)
    backbone = create_backbone(TINY_IMAGE_BACKBONE, image_size=32)
    model = TransferModel(backbone, LinearHead(backbone.num_features, 2), ["cue", "plain"], strategy="finetune")
    paths = sorted(images.rglob("*.png"))
    x = backbone.collate([backbone.prepare(p) for p in paths])
    y = torch.tensor([0 if p.parent.name == "cue" else 1 for p in paths])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(8):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    model.eval()
    backbone.invalidate_digest()
    return save_model(model, folder)


@pytest.fixture(scope="module")
def image_cue(tmp_path_factory):
    """A tiny CNN trained on images where only the corner square tells the classes apart."""
    root = tmp_path_factory.mktemp("image-cue")
    images = _cue_images(root / "images")
    return _train_cue_model(images, root / "model"), images


@pytest.fixture(scope="module")
def text_cue(tmp_path_factory, tiny_text_model):
    """A linear probe on a tiny BERT, trained on texts where only the trigger word tells the classes apart."""
    import transferkit as tk

    root = tmp_path_factory.mktemp("text-cue")
    table, cue_texts = _cue_texts(root / "texts.csv")
    tk.fit(str(table), backbone=str(tiny_text_model), probe_c=20.0, baselines=[], output=str(root / "model"),
           report=False, progress=False)
    return root / "model", cue_texts


def _cue_share(attribution: np.ndarray) -> float:
    """The part of the attribution's positive mass (the evidence for the explained class) inside the square."""
    positive = attribution.clip(min=0)
    return float(positive[:CUE, :CUE].sum() / positive.sum())


# --- the planted cue ------------------------------------------------------------------------------------------------
def test_image_attributions_put_most_mass_on_the_planted_square(image_cue) -> None:
    import transferkit as tk

    model, images = image_cue
    cue_images = sorted(str(p) for p in (images / "cue").glob("*.png"))[:6]
    result = tk.explain(str(model), cue_images, method=["integrated-gradients", "smoothgrad"],
                        target="cue", random_orders=2, steps=16, samples=8, progress=False)
    shares = {method: np.mean([_cue_share(maps[method]) for maps in result.attributions])
              for method in result.methods}
    assert shares["integrated-gradients"] >= 0.6, shares  # the square is 1/16 of the image
    assert shares["smoothgrad"] >= 0.3, shares  # noisier: about 0.5 measured
    for method in result.methods:
        assert result.faithfulness[method]["verdict"] == "better than random"
        assert result.faithfulness[method]["deletion"]["interval"][0] > 0
    assert all(r["label"] == "cue" for r in result.records)


def test_text_attributions_put_most_mass_on_the_trigger_word(text_cue) -> None:
    import transferkit as tk

    model, texts = text_cue
    for method in ("integrated-gradients", "occlusion"):
        result = tk.explain(str(model), texts, method=[method], random_orders=2, steps=16, progress=False)
        shares = []
        for record, maps in zip(result.records, result.attributions):
            words = [word for word, _ in record["methods"][method]["tokens"]]
            positive = maps[method].clip(min=0)
            shares.append(sum(w for word, w in zip(words, positive) if word == TRIGGER) / positive.sum())
            assert record["label"] == "alpha"
        assert np.mean(shares) >= 0.6, (method, shares)
        assert result.faithfulness[method]["better_than_random"] is True


# --- the command line ---------------------------------------------------------------------------------------------
def test_cli_writes_heat_maps_json_and_index(image_cue, tmp_path) -> None:
    model, images = image_cue
    out = tmp_path / "why"
    proc = runner.invoke(app, ["explain", str(model), str(images / "cue" / "00.png"), str(images / "plain" / "00.png"),
                               "--method", "gradcam,integrated-gradients", "--steps", "8", "--random-orders", "2",
                               "-o", str(out), "-q"])
    assert proc.exit_code == 0, proc.output
    saved = json.loads((out / "explanations.json").read_text())
    assert saved["methods"] == ["gradcam", "integrated-gradients"]
    assert [r["label"] for r in saved["inputs"]] == ["cue", "plain"]
    for record in saved["inputs"]:
        for method, entry in record["methods"].items():
            assert (out / entry["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert entry["faithfulness"]["units"] > 1
    assert set(saved["faithfulness"]) == {"gradcam", "integrated-gradients"}
    assert "<img" in (out / "index.html").read_text()


def test_cli_text_highlights_and_token_weights(text_cue, tmp_path) -> None:
    model, texts = text_cue
    out = tmp_path / "why"
    proc = runner.invoke(app, ["explain", str(model), texts[0], "--no-faithfulness", "-o", str(out), "-q"])
    assert proc.exit_code == 0, proc.output
    record = json.loads((out / "explanations.json").read_text())["inputs"][0]
    tokens = record["methods"]["integrated-gradients"]["tokens"]
    assert " ".join(word for word, _ in tokens) == texts[0]
    assert TRIGGER in (out / "index.html").read_text()


# --- every model kind ------------------------------------------------------------------------------------------------
def test_lora_multitask_ensemble_and_stacked_models_explain(image_cue, tmp_path) -> None:
    import torch

    import transferkit as tk
    from transferkit.models.artifact_kinds import save_any
    from transferkit.models.combined import EnsembleModel, StackedModel
    from transferkit.models.heads import HeadSet, LinearHead
    from transferkit.models.multitask_model import MultiTaskModel

    model_folder, images = image_cue
    one = [str(images / "cue" / "01.png")]
    options = dict(steps=4, samples=2, random_orders=1, progress=False)
    lora = tmp_path / "lora"
    tk.fit(str(images), backbone=TINY_IMAGE_BACKBONE, strategy="lora", epochs=1, image_size=32, baselines=[],
           output=str(lora), report=False, progress=False)
    explained = tk.explain(str(lora), one, method=["integrated-gradients"], **options)
    assert explained.records[0]["target"] in ("cue", "plain")

    single = tk.load_model(str(model_folder))
    torch.manual_seed(0)
    heads = HeadSet(single.backbone.num_features, {"corner": 2, "shade": 3})
    save_any(MultiTaskModel(single.backbone, heads, {"corner": ["cue", "plain"], "shade": ["a", "b", "c"]}),
             tmp_path / "multi")
    result = tk.explain(str(tmp_path / "multi"), one, task="shade", target="b", **options)
    assert result.records[0]["target"] == "b"
    with pytest.raises(ConfigError, match="--task"):
        tk.explain(str(tmp_path / "multi"), one, **options)

    save_any(EnsembleModel([single, tk.load_model(str(model_folder))], [0.5, 0.5]), tmp_path / "ensemble")
    ensemble = tk.explain(str(tmp_path / "ensemble"), one, method=["integrated-gradients"], **options)
    assert ensemble.records[0]["label"] == "cue"
    with pytest.raises(ConfigError, match="gradcam cannot explain this model.*integrated-gradients"):
        tk.explain(str(tmp_path / "ensemble"), one, method=["gradcam"], **options)

    stacked = StackedModel([single.backbone], [None], LinearHead(single.backbone.num_features, 2), ["cue", "plain"])
    assert tk.explain(stacked, one, method=["smoothgrad"], **options).attributions[0]["smoothgrad"].shape == (32, 32)


def test_audio_attribution_over_time_and_frequency(tmp_path) -> None:
    import torch

    import transferkit as tk
    from _audio_clips import write_drum_folder
    from transferkit.backbones import create_backbone
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel

    drums = write_drum_folder(tmp_path / "drums", per_class=1, seconds=0.3)
    clip = next(p for p in sorted(drums.rglob("*")) if p.is_file())
    torch.manual_seed(0)
    backbone = create_backbone("random:aisfx", clip_seconds=0.5).eval()
    model = TransferModel(backbone, LinearHead(backbone.num_features, 2), ["kick", "snare"])
    out = tmp_path / "why"
    result = tk.explain(model, [str(clip)], method=["gradcam", "integrated-gradients"], steps=4, faithfulness=False,
                        output=str(out), progress=False)
    spectrogram = backbone.prepare(clip)
    for method in ("gradcam", "integrated-gradients"):
        assert result.attributions[0][method].shape == tuple(spectrogram.shape)  # (frames, bands)
        assert (out / result.records[0]["methods"][method]["file"]).stat().st_size > 0


# --- mistakes --------------------------------------------------------------------------------------------------------
def test_unknown_class_is_refused_before_work_and_nothing_is_written(text_cue, tmp_path) -> None:
    model, texts = text_cue
    out = tmp_path / "why"
    proc = runner.invoke(app, ["explain", str(model), texts[0], "--target", "gamma", "-o", str(out)])
    assert proc.exit_code == 2 and "Traceback" not in proc.output
    assert "option 'target': 'gamma' is not a class" in proc.output and "alpha, beta" in proc.output
    assert not out.exists()


def test_method_of_another_modality_is_refused(text_cue) -> None:
    import transferkit as tk

    model, texts = text_cue
    with pytest.raises(ConfigError, match="unknown method 'gradcam' for text models; known methods: "
                                          "integrated-gradients, occlusion"):
        tk.explain(str(model), texts[:1], method=["gradcam"])


def test_images_given_to_a_text_model_are_refused(text_cue, image_cue) -> None:
    import transferkit as tk

    model, _ = text_cue
    _, images = image_cue
    with pytest.raises(DataError, match="text"):
        tk.explain(str(model), str(images), progress=False)


def test_missing_model_folder_is_refused(tmp_path) -> None:
    proc = runner.invoke(app, ["explain", str(tmp_path / "nowhere"), "some text", "-o", str(tmp_path / "why")])
    assert proc.exit_code == 2 and "Traceback" not in proc.output
    assert "nowhere" in proc.output and "no such model folder" in proc.output
    with pytest.raises(ArtifactError):
        import transferkit as tk

        tk.explain(str(tmp_path / "nowhere"), ["some text"])


def test_existing_output_is_kept_without_overwrite(text_cue, tmp_path) -> None:
    model, texts = text_cue
    out = tmp_path / "why"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = runner.invoke(app, ["explain", str(model), texts[0], "-o", str(out)])
    assert proc.exit_code == 2 and "Traceback" not in proc.output
    assert "--overwrite" in proc.output and str(out) in proc.output
    assert (out / "notes.txt").read_text() == "mine"


def test_an_explanation_no_better_than_random_is_flagged() -> None:
    from transferkit.explanations.faithfulness import summarise

    same = [{"units": 4, "deletion": 0.5, "insertion": 0.5, "random_deletion": [0.45, 0.55],
             "random_insertion": [0.5, 0.5]} for _ in range(5)]
    summary = summarise(same)
    assert summary["better_than_random"] is False and summary["verdict"] == "no better than random"
    better = [dict(m, deletion=0.1) for m in same]
    assert summarise(better)["verdict"] == "better than random"


# --- the service -----------------------------------------------------------------------------------------------------
def test_service_explains_with_the_limits_of_predict(image_cue, text_cue) -> None:
    import base64

    from fastapi.testclient import TestClient

    from transferkit.serving.app import create_app
    from transferkit.serving.settings import ServeConfig

    model, images = image_cue
    with TestClient(create_app(ServeConfig(model=str(model), max_batch=2))) as client:
        upload = ("files", ("00.png", (images / "cue" / "00.png").read_bytes(), "image/png"))
        answer = client.post("/explain", files=[upload])
        assert answer.status_code == 200, answer.text
        (explained,) = answer.json()["explanations"]
        assert explained["label"] == "cue" and explained["input"] == "00.png"
        assert base64.b64decode(explained["heatmap_png"])[:4] == b"\x89PNG"
        assert explained["faithfulness"]["units"] > 1
        too_many = client.post("/explain", files=[upload] * 3)  # the same limit as /predict
        assert too_many.status_code == 413 and "3" in too_many.json()["detail"]
        wrong = client.post("/explain", json={"texts": ["a text"]})
        assert wrong.status_code == 415 and "multipart/form-data" in wrong.json()["detail"]

    text_model, texts = text_cue
    with TestClient(create_app(ServeConfig(model=str(text_model)))) as client:
        answer = client.post("/explain", json={"texts": texts[:1]})
        assert answer.status_code == 200, answer.text
        tokens = answer.json()["explanations"][0]["tokens"]
        assert max(tokens, key=lambda pair: pair[1])[0] == TRIGGER
