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


# --- the report ------------------------------------------------------------------------------------------------------
def _section(page: str, key: str) -> str:
    start = page.index(f'<section id="{key}">')
    return page[start:page.index("</section>", start)]


def _highlighted_words(section: str) -> list[list[tuple[str, float]]]:
    import html
    import re

    return [[(html.unescape(word), float(weight)) for weight, word in
             re.findall(r'<span title="([+-][\d.]+)"[^>]*>([^<]*)</span>', paragraph)]
            for paragraph in re.findall(r'<p class="explained-text">(.*?)</p>', section)]


@pytest.mark.filterwarnings("ignore:.*also appear in the training data")  # mislabelled copies, on purpose
def test_report_explains_the_surest_mistakes_and_shows_the_planted_word(tiny_text_model, tmp_path, monkeypatch) -> None:
    """Test texts with the trigger word but labelled with the other class: the model is sure and wrong, and the
    report's explanation of each mistake puts the most weight on the trigger."""
    import transferkit as tk
    from transferkit.reporting.explanations import explanations_html
    from transferkit.reporting.report import build_report

    train, cue_texts = _cue_texts(tmp_path / "train.csv")
    with open(train, newline="", encoding="utf-8") as handle:
        plain = [row["text"] for row in csv.DictReader(handle) if row["label"] == "beta"]
    rows = [(text, "beta") for text in cue_texts[:3]] + [(text, "beta") for text in plain[:3]]
    rows += [(text, "alpha") for text in cue_texts[3:6]]
    with open(tmp_path / "test.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    model = tmp_path / "model"
    tk.fit(str(train), test=str(tmp_path / "test.csv"), backbone=str(tiny_text_model), probe_c=20.0, baselines=[],
           output=str(model), report=False, progress=False)

    section = _section(build_report(model, explain_mistakes=2), "explanations")
    assert "The 2 test mistake(s) the model was surest of (of 3 misclassified)" in section
    assert "integrated-gradients" in section and "than random" in section
    highlighted = _highlighted_words(section)
    assert len(highlighted) == 2
    for words in highlighted:
        assert max(words, key=lambda pair: pair[1])[0] == TRIGGER, words

    examples = json.loads((model / "examples.json").read_text())
    assert "--explain-mistakes N" in explanations_html(model, examples, 0)
    monkeypatch.setitem(__import__("sys").modules, "captum", None)  # captum cannot be imported
    section = explanations_html(model, examples, 2)
    assert "captum is not installed" in section and "pip install &#x27;transferkit[explain]&#x27;" in section


def test_report_explains_moved_images_from_thumbnails_and_notes_a_model_it_cannot_explain(image_cue, tmp_path) -> None:
    import shutil

    import torch

    import transferkit as tk
    from transferkit.backbones import create_backbone
    from transferkit.models.artifact_kinds import save_any
    from transferkit.models.combined import EnsembleModel
    from transferkit.models.heads import LinearHead
    from transferkit.models.model import TransferModel
    from transferkit.reporting.evidence import thumbnail_data_uri
    from transferkit.reporting.report import build_report

    model_folder, images = image_cue
    cue = images / "cue" / "03.png"
    moved = {"row_id": str(tmp_path / "gone" / "03.png"), "thumbnail": thumbnail_data_uri(cue), "true": "plain",
             "predicted": "cue", "p_true": 0.02, "p_predicted": 0.98}
    lost = {"row_id": str(tmp_path / "gone" / "04.png"), "true": "plain", "predicted": "cue", "p_true": 0.1,
            "p_predicted": 0.9}
    examples = {"modality": "image", "classes": ["cue", "plain"], "hardest": [lost, moved], "n_misclassified": 2}
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    (folder / "examples.json").write_text(json.dumps(examples))
    section = _section(build_report(folder, explain_mistakes=2), "explanations")
    assert section.count('<img class="explained"') == 1
    assert "03.png: the file is no longer there; explained from the report&#x27;s thumbnail" in section
    assert "04.png: the input is no longer there (moved or deleted); left out" in section

    torch.manual_seed(0)
    other = create_backbone(TINY_IMAGE_BACKBONE, image_size=16)
    members = [tk.load_model(str(model_folder)), TransferModel(other, LinearHead(other.num_features, 2),
                                                               ["cue", "plain"])]
    ensemble = tmp_path / "ensemble"
    save_any(EnsembleModel(members, [0.5, 0.5]), ensemble)
    (ensemble / "examples.json").write_text(json.dumps(examples))
    section = _section(build_report(ensemble, explain_mistakes=2), "explanations")
    assert "No explanations: this model cannot be explained" in section
    assert "prepare their input differently" in section and "<img" not in section


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
