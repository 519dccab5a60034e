"""Messy real-world inputs: photos of every size, mode and orientation, symbolic links, duplicates, label spellings,
tables in other delimiters and encodings. One test per case; see tests/messy_corpus.py for the corpus."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY_IMAGE_BACKBONE
from transferkit.cli.main import _register_commands, app
from transferkit.data import load_data, stratified_split, validate_dataset, validate_splits
from transferkit.data.images import load_rgb, to_rgb
from transferkit.data.sources import from_arrays
from transferkit.data.validation import DataWarning
from transferkit.errors import ConfigError, DataError

_register_commands()  # cv and the other commands of their own modules
CLASS_NAMES = ("china", "flower", "hopper")
OFF = {"TRANSFERKIT_TRACKING_URI": "off"}


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args), env=OFF)
    assert "Traceback" not in result.output, result.output
    return result


def _load(source, **options):
    """load + validate, returning the dataset and the messages of the warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_data(source, **options)
        validate_dataset(dataset)
    return dataset, [str(w.message) for w in caught]


def _copy(part: Path, tmp_path: Path) -> Path:
    target = tmp_path / part.name
    if part.is_dir():
        shutil.copytree(part, target, symlinks=True)
    else:
        shutil.copyfile(part, target)
    return target


def _photo(size=(96, 64)) -> Image.Image:
    """A crop of a real photograph (scikit-learn's china.jpg)."""
    import sklearn.datasets

    photo = Image.open(Path(sklearn.datasets.__file__).parent / "images" / "china.jpg").convert("RGB")
    return photo.crop((200, 100, 200 + size[0] * 2, 100 + size[1] * 2)).resize(size)


@pytest.fixture(scope="module")
def image_model(messy_corpus, tmp_path_factory) -> Path:
    """A linear probe on the tiny CNN, trained on the messy photo folder and saved."""
    from transferkit import fit

    out = tmp_path_factory.mktemp("messy-image-model") / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(str(messy_corpus["images"]), backbone=TINY_IMAGE_BACKBONE, output=str(out), progress=False,
            device="cpu", report=False, tracking_uri="off")
    return out


@pytest.fixture(scope="module")
def text_model(messy_corpus, tiny_text_model, tmp_path_factory) -> Path:
    from transferkit import fit

    out = tmp_path_factory.mktemp("messy-text-model") / "model"
    fit(str(messy_corpus["text_clean"]), backbone=str(tiny_text_model), output=str(out), progress=False,
        device="cpu", report=False, tracking_uri="off", max_length=32)
    return out


# ----------------------------------------------------------------------------------- 1. images of any kind


def test_fit_default_strategy_on_photos_of_mixed_sizes(messy_corpus, tmp_path: Path) -> None:
    """Thumbnails of 32 px or less among larger photos crashed the raw-pixel baseline."""
    result = _cli("fit", str(messy_corpus["images"]), "--backbone", TINY_IMAGE_BACKBONE, "--no-report",
                  "--output", str(tmp_path / "model"), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "README.txt" in result.output
    assert "baseline: raw" in result.output
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert sorted(config["classes"]) == list(CLASS_NAMES)


def test_fit_auto_strategy_on_photos_of_mixed_sizes(messy_corpus) -> None:
    """The planner's raw-input measurement went through the same crash."""
    result = _cli("fit", str(messy_corpus["images"]), "--backbone", TINY_IMAGE_BACKBONE, "--strategy", "auto",
                  "--no-report", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    assert "auto: Strategy" in result.output and "raw inputs" in result.output


def test_raw_encoder_gives_one_width_for_images_of_every_size(messy_corpus) -> None:
    from transferkit.evaluation.baselines import RawInputEncoder

    for key in ("images", "images_odd_shapes"):
        dataset, _ = _load(messy_corpus[key])
        features = RawInputEncoder().fit_transform(dataset)
        assert features.shape == (len(dataset), 32 * 32 * 3)
        assert np.isfinite(features).all() and features.std(axis=1).min() > 0
    digits = from_arrays(np.random.default_rng(0).integers(0, 255, (6, 8, 8), dtype=np.uint8), list("aabbcc"))
    assert RawInputEncoder().fit_transform(digits).shape == (6, 64)  # small arrays keep their own size


def test_every_file_of_the_photo_folder_decodes_to_upright_rgb(messy_corpus) -> None:
    from transferkit.backbones.vision import ImagePreprocessing

    dataset, _ = _load(messy_corpus["images"])
    preprocess = ImagePreprocessing(input_size=64)
    names = set()
    for path in dataset.items:
        image = load_rgb(path)
        assert image.mode == "RGB", path
        array = np.asarray(image)
        assert array.std() > 3 or min(image.size) <= 8, f"{path} decoded flat"
        tensor = preprocess(image)
        assert tuple(tensor.shape) == (3, 64, 64) and bool(tensor.isfinite().all())
        names.add(Path(path).name)
    expected = {"cmyk.jpg", "grey16.png", "palette_transparent.png", "alpha.png", "grey_alpha.png", "bilevel.png",
                "float.tif", "small.webp", "bitmap.bmp", "CAMERA.JPG", "photo.jpeg", "animated.gif", "pages.tiff",
                "really_a_png.jpg", "exif6.jpg", "exif8.jpg", "thumb24.jpg", "tiny8.png"}
    assert expected <= names


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    upright = _photo((96, 64))
    turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    upright.transpose(turn).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as stored:
        assert stored.size == upright.transpose(turn).size  # the pixels are stored turned
    decoded = load_rgb(path)
    assert decoded.size == upright.size
    assert np.abs(np.asarray(decoded, dtype=float) - np.asarray(upright, dtype=float)).mean() < 8


def test_exif_orientation_same_in_predict_and_serving(messy_corpus, image_model, tmp_path: Path) -> None:
    """A sideways-stored photo is predicted as its upright copy by predict, by the serving predictor given a PIL
    image, and by the HTTP service."""
    from transferkit import predict
    from transferkit.models.artifacts import load_model

    rotated = messy_corpus["images"] / "flower" / "exif6.jpg"
    upright = tmp_path / "upright.png"
    load_rgb(rotated).save(upright)
    by_path = {Path(r["input"]).name: r["probabilities"] for r in
               predict(image_model, str(tmp_path), progress=False)}
    rotated_rows = predict(image_model, str(rotated), progress=False)
    reference = by_path["upright.png"]
    for label, p in rotated_rows[0]["probabilities"].items():
        assert p == pytest.approx(reference[label], abs=1e-5)
    from transferkit.serving.predictor import Predictor

    predictor = Predictor(str(image_model))
    with Image.open(rotated) as raw:
        raw.load()
        from_pil = predictor.predict_proba([raw])[0]
    classes = load_model(image_model).classes
    assert list(from_pil) == pytest.approx([reference[c] for c in classes], abs=1e-5)
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from transferkit.serving.app import create_app
    from transferkit.serving.settings import ServeConfig

    with TestClient(create_app(ServeConfig(model=str(image_model)))) as client:
        answer = client.post("/predict", files=[("files", ("phone.jpg", rotated.read_bytes(), "image/jpeg"))])
    assert answer.status_code == 200, answer.text
    for label, p in answer.json()["predictions"][0]["probabilities"].items():
        assert p == pytest.approx(reference[label], abs=1e-4)


def test_sixteen_bit_and_float_images_keep_their_contrast(tmp_path: Path) -> None:
    grey = np.asarray(_photo().convert("L"), dtype=np.float64)
    Image.fromarray((grey * 257).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray((grey / 255).astype(np.float32), mode="F").save(tmp_path / "float.tif")
    for name in ("deep.png", "float.tif"):
        decoded = np.asarray(load_rgb(tmp_path / name).convert("L"), dtype=np.float64)
        assert np.corrcoef(decoded.ravel(), grey.ravel())[0, 1] > 0.99, name
        assert decoded.max() - decoded.min() > 100, name


def test_transparency_is_composited_on_white_and_cmyk_keeps_its_colours(tmp_path: Path) -> None:
    photo = _photo()
    rgba = photo.convert("RGBA")
    rgba.putalpha(0)
    assert np.asarray(to_rgb(rgba)).min() == 255
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "p.png", transparency=int(np.asarray(palette)[0, 0]))
    assert tuple(load_rgb(tmp_path / "p.png").getpixel((0, 0))) == (255, 255, 255)
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    difference = np.abs(np.asarray(load_rgb(tmp_path / "cmyk.jpg"), dtype=float) - np.asarray(photo, dtype=float))
    assert difference.mean() < 10


def test_long_strip_is_preprocessed_without_a_huge_intermediate(tmp_path: Path) -> None:
    from transferkit.backbones.vision import ImagePreprocessing

    strip = Image.fromarray(np.tile(np.linspace(0, 255, 10000, dtype=np.uint8), (20, 1))).convert("RGB")
    preprocess = ImagePreprocessing(input_size=64, interpolation="bilinear")
    tensor = preprocess(strip)
    assert tuple(tensor.shape) == (3, 64, 64)
    # the same central crop, made the plain way (resize all, then crop)
    full = strip.resize((32000, 64), Image.Resampling.BILINEAR).crop((15968, 0, 16032, 64))
    plain = ImagePreprocessing(input_size=64, interpolation="bilinear")(full)
    assert float((tensor - plain).abs().max()) < 0.05


def test_odd_shapes_fit(messy_corpus) -> None:
    """1x1 and 2x2 images and 1000x10 strips go through fit (features, probe and raw baseline)."""
    result = _cli("fit", str(messy_corpus["images_odd_shapes"]), "--backbone", TINY_IMAGE_BACKBONE, "--no-report",
                  "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output


def test_image_arrays_of_other_types_are_scaled_or_refused() -> None:
    grey = np.asarray(_photo().convert("L"))
    deep = from_arrays(np.stack([grey.astype(np.uint16) * 257] * 2), ["a", "b"])
    assert np.abs(deep.items[0].astype(int) - grey).max() <= 1  # 16-bit arrays are rescaled, not clipped to white
    assert from_arrays(np.ones((2, 4, 4), dtype=bool), ["a", "b"]).items.max() == 255
    with pytest.raises(DataError, match="expected 0..1 or 0..255.*normalisation"):
        from_arrays(np.full((2, 4, 4, 3), -1.5, dtype=np.float32), ["a", "b"])


# ------------------------------------------------------------------------------------------- 2. symbolic links


def test_link_to_the_parent_folder_does_not_relabel_other_classes(messy_corpus) -> None:
    if not (messy_corpus["images_with_links"] / "china" / "up").is_symlink():
        pytest.skip("no symbolic links on this system")
    dataset, messages = _load(messy_corpus["images_with_links"])
    for path, label in zip(dataset.items, dataset.labels):
        assert Path(path).parent.name == label, (path, label)
    assert len(dataset) == 43  # the 42 photos and the link to a photo of the same class
    assert any("china/up" in m and "outside" in m for m in messages)


def test_link_loop_and_broken_link_are_warnings_not_tracebacks(messy_corpus) -> None:
    if not (messy_corpus["images_with_links"] / "hopper" / "loop").is_symlink():
        pytest.skip("no symbolic links on this system")
    result = _cli("fit", str(messy_corpus["images_with_links"]), "--backbone", TINY_IMAGE_BACKBONE,
                  "--no-report", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert any("hopper/loop: a symbolic link loop; skipped" in line for line in warned)
    assert any("flower/gone.jpg: a broken symbolic link" in line for line in warned)
    assert any("china/up: a symbolic link to the folder" in line for line in warned)


def test_link_to_another_class_folder_is_skipped(tmp_path: Path, messy_corpus) -> None:
    root = _copy(messy_corpus["images"], tmp_path)
    os.symlink("../flower", root / "china" / "more")
    os.symlink("a", root / "china" / "b")
    os.symlink("b", root / "china" / "a")
    dataset, messages = _load(root)
    assert dataset.labels.count("china") == 14
    assert any("china/more" in m and "outside" in m for m in messages)
    assert any("china/a" in m and "loop" in m for m in messages)


def test_link_to_an_image_file_elsewhere_is_followed(tmp_path: Path, messy_corpus) -> None:
    """Class folders built by linking images from a pool: the link's folder gives the label."""
    pool = tmp_path / "pool"
    pool.mkdir()
    _photo().save(pool / "extra.jpg")
    root = _copy(messy_corpus["images"], tmp_path)
    os.symlink(pool / "extra.jpg", root / "china" / "linked.jpg")
    dataset, messages = _load(root)
    assert dataset.labels[dataset.items.index(str(root / "china" / "linked.jpg"))] == "china"
    assert not any("linked.jpg" in m for m in messages)


def test_unlabelled_folder_with_links_predicts(messy_corpus, image_model) -> None:
    if not (messy_corpus["images_with_links"] / "china" / "up").is_symlink():
        pytest.skip("no symbolic links on this system")
    result = _cli("predict", str(image_model), str(messy_corpus["images_with_links"]), "--quiet")
    assert result.exit_code == 0, result.output
    assert "warning: " in result.output and "china/up" in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("{")]) == 43


@pytest.mark.parametrize("case", ["folder", "broken link", "loop", "missing", "url"])
def test_bad_entries_of_an_image_path_table_name_the_row(tmp_path: Path, messy_corpus, case: str) -> None:
    images = _copy(messy_corpus["images"], tmp_path)
    value = {"folder": "images/china", "broken link": "gone.jpg", "loop": "loop.jpg", "missing": "nothere.jpg",
             "url": "https://example.com/x.jpg"}[case]
    if case == "broken link":
        os.symlink("nowhere.jpg", tmp_path / "gone.jpg")
    if case == "loop":
        os.symlink("loop.jpg", tmp_path / "loop.jpg")
    table = tmp_path / "index.csv"
    table.write_text(f"path,label\nimages/china/landscape.jpg,china\n{value},flower\n", encoding="utf-8")
    expected = {"folder": "is a folder", "broken link": "broken symbolic link", "loop": "symbolic link loop",
                "missing": "does not exist", "url": "is a URL"}[case]
    with pytest.raises(DataError, match=rf"index.csv line 3: .*{expected}"):
        load_data(table)
    assert images.is_dir()


def test_unreadable_class_folder_is_a_data_error(tmp_path: Path, messy_corpus) -> None:
    if os.geteuid() == 0:
        pytest.skip("permissions do not apply to root")
    root = _copy(messy_corpus["images"], tmp_path)
    (root / "flower").chmod(0)
    try:
        result = _cli("fit", str(root), "--backbone", TINY_IMAGE_BACKBONE, "--no-report")
    finally:
        (root / "flower").chmod(0o755)
    assert result.exit_code == 2
    assert "flower" in result.output and "permission denied" in result.output


# ---------------------------------------------------------------------------- 3. duplicates and label spellings


def test_identical_image_in_two_classes_is_named(messy_corpus) -> None:
    _, messages = _load(messy_corpus["images_conflicting_duplicate"])
    conflict = [m for m in messages if "identical content" in m]
    assert len(conflict) == 1
    assert "china/landscape.jpg labelled 'china'" in conflict[0]
    assert "flower/from_china.jpg labelled 'flower'" in conflict[0]


def test_same_text_under_two_labels_is_named(messy_corpus) -> None:
    with pytest.warns(DataWarning, match=r"reviews_conflict.csv line 2 labelled 'positive' and .*line 26 labelled "
                                         r"'negative'.*correct its label"):
        validate_dataset(load_data(messy_corpus["text_conflicting_duplicates"]))


def test_label_spellings_are_an_error_naming_both(messy_corpus) -> None:
    with pytest.raises(DataError) as error:
        load_data(messy_corpus["text_label_variants"])
    message = str(error.value)
    assert "'positive'" in message and "'Positive'" in message and "'POSITIVE'" in message
    assert "reviews_label_spellings.csv line 2" in message and "line 4" in message
    assert "--normalize-labels" in message
    result = _cli("fit", str(messy_corpus["text_label_variants"]))
    assert result.exit_code == 2 and "error:" in result.output and "--normalize-labels" in result.output


def test_normalize_labels_folds_spellings_into_the_most_frequent(messy_corpus, tiny_text_model, tmp_path) -> None:
    dataset = load_data(messy_corpus["text_label_variants"], normalize_labels=True)
    assert dataset.classes == ["negative", "positive"]
    result = _cli("fit", str(messy_corpus["text_label_variants"]), "--normalize-labels", "--backbone",
                  str(tiny_text_model), "--max-length", "32", "--no-report", "--output", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["classes"] == ["negative", "positive"]


def test_test_data_spelled_otherwise_than_training(messy_corpus, tmp_path: Path) -> None:
    train = load_data(messy_corpus["text_clean"])
    test_file = tmp_path / "test.csv"
    test_file.write_text("text,label\nfine,Positive\nbad,negative\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test.csv line 2: label 'Positive' is spelled 'positive'.*--normalize-labels"):
        validate_splits(train, [load_data(test_file)])
    test = load_data(test_file)
    validate_splits(train, [test], normalize_labels=True)
    assert test.labels == ["positive", "negative"]


def test_copies_stay_on_one_side_of_the_held_out_split(messy_corpus) -> None:
    rows = [(t, lab) for t, lab in zip(load_data(messy_corpus["text_clean"]).items,
                                       load_data(messy_corpus["text_clean"]).labels)]
    texts = [t for t, _ in rows] + [rows[0][0]] * 3 + [rows[1][0]] * 2
    labels = [lab for _, lab in rows] + [rows[0][1]] * 3 + [rows[1][1]] * 2
    dataset = from_arrays(texts, labels)
    for seed in range(5):
        train, held = stratified_split(dataset, 0.3, seed)
        assert not set(train.items) & set(held.items)
        assert set(train.classes) == set(held.classes) == {"negative", "positive"}


def test_copies_across_given_splits_name_both_rows(messy_corpus, tmp_path: Path) -> None:
    train = load_data(messy_corpus["text_clean"])
    test_file = tmp_path / "test.csv"
    test_file.write_text(f"text,label\nsomething new,positive\n\"{train.items[3]}\",{train.labels[3]}\n",
                         encoding="utf-8")
    with pytest.warns(DataWarning, match=r"test.csv line 3, the same as .*reviews.csv line 5"):
        validate_splits(train, [load_data(test_file)])


# ----------------------------------------------------------------------------------------------- 4. tables


@pytest.mark.parametrize("key", ["text_clean", "text_csv_bom", "text_semicolon", "text_excel_sep", "text_tsv",
                                 "text_crlf_quoted", "text_jsonl", "text_parquet", "text_utf16"])
def test_tables_in_every_form_load_the_same_rows(messy_corpus, key: str) -> None:
    if key not in messy_corpus:
        pytest.skip("pyarrow is not installed")
    reference = load_data(messy_corpus["text_clean"])
    dataset, messages = _load(messy_corpus[key])
    assert messages == []
    assert dataset.labels == reference.labels
    assert [" ".join(t.split()) for t in dataset.items] == [" ".join(t.split()) for t in reference.items]


def test_rows_are_named_by_the_line_they_start_on(messy_corpus) -> None:
    dataset = load_data(messy_corpus["text_crlf_quoted"])
    lines = messy_corpus["text_crlf_quoted"].read_bytes().decode("utf-8").split("\r\n")
    for row, text in zip(dataset.row_ids, dataset.items):
        number = int(row.rsplit(" ", 1)[1])
        assert lines[number - 1].startswith(f'"{text.splitlines()[0]}') or lines[number - 1].startswith(text), row
    excel = load_data(messy_corpus["text_excel_sep"])
    assert excel.row_ids[0].endswith("reviews_excel.csv line 3")


def test_delimiter_option(messy_corpus) -> None:
    assert len(load_data(messy_corpus["text_semicolon"], delimiter=";")) == 24
    result = _cli("fit", str(messy_corpus["text_semicolon"]), "--delimiter", ",")
    assert result.exit_code == 2
    assert "one column named 'text;label'" in result.output and "--delimiter ';'" in result.output
    with pytest.raises(ConfigError, match="--delimiter must be one character"):
        load_data(messy_corpus["text_semicolon"], delimiter=";;")
    assert len(load_data(messy_corpus["text_tsv"], delimiter="\\t")) == 24


def test_broken_jsonl_names_the_line(messy_corpus) -> None:
    result = _cli("fit", str(messy_corpus["text_jsonl_broken"]))
    assert result.exit_code == 2
    assert "reviews_broken.jsonl line 4: not valid JSON" in result.output
    assert "'{\"text\": \"A broken record" in result.output
    assert "byte" not in result.output and "position" not in result.output


def test_latin1_table_names_line_and_column_and_the_fix(messy_corpus) -> None:
    result = _cli("fit", str(messy_corpus["text_latin1"]))
    assert result.exit_code == 2
    assert "reviews_latin1.csv line 2, column 11" in result.output and "--encoding latin-1" in result.output
    dataset = load_data(messy_corpus["text_latin1"], encoding="latin-1")
    assert dataset.items[0] == "A wonderfül, moving film."


def test_decimal_label_column_is_refused_as_a_regression_target(messy_corpus) -> None:
    for key in ("text_float_labels", "text_float_labels_parquet"):
        if key not in messy_corpus:
            continue
        with pytest.raises(DataError, match=r"label column 'label' looks numeric \(a regression target\?\): 30 "
                                            r"distinct values.*pass --task-type regression \(task='regression'\); to "
                                            r"classify, give class labels"):
            load_data(messy_corpus[key])
        assert load_data(messy_corpus[key], task="regression").task == "regression"
    half_stars = from_arrays([f"review {i}" for i in range(40)], [f"{(i % 10 + 1) / 2:g}" for i in range(40)])
    assert len(half_stars.classes) == 10  # ten rating classes are classes


def test_header_whitespace_and_case(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(" Text , LABEL \nfine,a\nbad,b\n", encoding="utf-8")
    dataset = load_data(path)
    assert dataset.items == ["fine", "bad"] and dataset.labels == ["a", "b"]
    assert load_data(path, text_column="text", label_column="Label").labels == ["a", "b"]


def test_nul_bytes_name_the_line(messy_corpus) -> None:
    with pytest.raises(DataError, match=r"reviews_nul.csv line 6: contains a NUL byte"):
        load_data(messy_corpus["text_nul"])


@pytest.mark.parametrize("content, message", [
    ('text,label\n"fine,a\nbad,b\n', r"line 2: a quoted field starts here and is never closed"),
    ("text,label\nfine,a,extra\nbad,b\n", r"line 2: 3 fields, but the header has 2"),
    ("text,text,label\nfine,x,a\nbad,y,b\n", r"the column 'text' appears 2 times \(columns 1, 2\)"),
    ("sep=;\ntext;label\n;a\n", r"line 3: the text \('text'\) is missing"),
])
def test_malformed_csv_names_the_line_or_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_data(path)


def test_blank_rows_and_trailing_delimiters_are_not_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\r\n\r\nfine,a,\r\n,,\r\nbad,b,\r\n", encoding="utf-8")
    dataset = load_data(path)
    assert dataset.items == ["fine", "bad"]
    assert dataset.row_ids == [f"{path} line 3", f"{path} line 5"]


def test_json_array_and_non_string_cells(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"text": 12345, "label": 1}, {"text": "fine", "label": 2.0}]), encoding="utf-8")
    dataset = load_data(path)
    assert dataset.items == ["12345", "fine"] and dataset.labels == ["1", "2"]


# --------------------------------------------------------------------------------------- 5., 6., 7. messages


def test_cv_names_classes_and_gives_advice_that_can_be_followed(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"good {i},positive\n" for i in range(6)) + "odd one,neutral\n",
                    encoding="utf-8")
    result = _cli("cv", str(path), "--folds", "2")
    assert result.exit_code == 2
    assert "'neutral' (1)" in result.output
    assert "--folds to" not in result.output and "add examples of that class or remove it" in result.output
    result = _cli("cv", str(path), "--folds", "5")
    assert "'neutral' (1)" in result.output and "'positive'" not in result.output


def test_cv_advice_lowers_folds_to_a_number_that_works() -> None:
    from transferkit.evaluation.cross_validation import stratified_folds

    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(DataError, match=r"'rare' \(3\) has fewer. Lower --folds to 3"):
        stratified_folds(labels, 5, class_names=["common", "rare"])
    assert len(stratified_folds(labels, 3, class_names=["common", "rare"])) == 3


def test_shots_beyond_the_class_sizes_reports_the_real_counts(messy_corpus, caplog) -> None:
    caplog.set_level("INFO", logger="transferkit")
    result = _cli("fit", str(messy_corpus["images"]), "--backbone", TINY_IMAGE_BACKBONE, "--shots", "1000",
                  "--no-report", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "warning: --shots 1000: every class has fewer examples ('china' 14, 'flower' 14, 'hopper' 14)" \
        in result.output
    logged = caplog.text
    assert "1000 per class" not in result.output + logged
    assert "images (14 per class) (train split)" in logged


def test_evaluate_and_predict_check_the_modality_first(messy_corpus, image_model, text_model) -> None:
    cases = [("evaluate", text_model, messy_corpus["images"], "holds image data, but the model .* takes text input"),
             ("evaluate", image_model, messy_corpus["text_clean"], "holds text data, but the model .* takes image input"),
             ("predict", text_model, messy_corpus["images"], "holds image data, but the model .* takes text input")]
    for verb, model, data, message in cases:
        result = _cli(verb, str(model), str(data), "--quiet")
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and re.search(message, errors[0]), result.output
        assert "not seen in training" not in result.output


def test_evaluate_names_a_spelling_of_a_class(messy_corpus, text_model, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\nlovely,Positive\nawful,negative\n", encoding="utf-8")
    result = _cli("evaluate", str(text_model), str(path), "--quiet")
    assert result.exit_code == 2 and "label 'Positive' is spelled 'positive'" in result.output
    result = _cli("evaluate", str(text_model), str(path), "--normalize-labels", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    assert 0.0 <= json.loads(result.output)["accuracy"] <= 1.0


# ----------------------------------------------------------------------------------------- 8. more mess


def test_os_junk_and_hidden_entries_are_skipped_silently(messy_corpus) -> None:
    dataset, messages = _load(messy_corpus["images"])
    assert dataset.classes == list(CLASS_NAMES)  # __MACOSX and .thumbnails are not classes
    joined = " ".join(messages)
    for junk in (".DS_Store", "Thumbs.db", "desktop.ini", "._landscape", "__MACOSX", ".thumbnails"):
        assert junk not in joined and not any(junk in p for p in dataset.items)
    assert len(messages) == 1 and "README.txt" in messages[0]


def test_images_outside_class_folders_and_undecodable_formats_are_named(tmp_path: Path, messy_corpus) -> None:
    root = _copy(messy_corpus["images"], tmp_path)
    _photo().save(root / "loose.jpg")
    (root / "china" / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    _, messages = _load(root)
    assert any("loose.jpg" in m and "outside the class folders" in m for m in messages)
    assert any("IMG_0001.HEIC" in m and "convert them to JPEG or PNG" in m for m in messages)


def test_broken_images_are_listed_before_any_model_runs(messy_corpus) -> None:
    result = _cli("fit", str(messy_corpus["images_broken"]), "--backbone", TINY_IMAGE_BACKBONE)
    assert result.exit_code == 2
    for name in ("empty.jpg", "cut.jpg", "notes.png"):
        assert name in result.output
    assert "3 image file(s) cannot be used" in result.output


def test_file_names_that_are_not_utf8_go_through_fit_and_predict(messy_corpus, tmp_path: Path) -> None:
    result = _cli("fit", str(messy_corpus["images_undecodable_names"]), "--backbone", TINY_IMAGE_BACKBONE,
                  "--output", str(tmp_path / "m"), "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    predicted = _cli("predict", str(tmp_path / "m"), str(messy_corpus["images_undecodable_names"]), "--quiet")
    assert predicted.exit_code == 0, predicted.output
    rows = [json.loads(line) for line in predicted.output.splitlines() if line.startswith("{")]
    assert len(rows) == 10
    if any("caf" in r["input"] for r in rows):
        assert any("caf\\xe9_0.jpg" in r["input"] for r in rows)


def test_predict_one_image_file(messy_corpus, image_model) -> None:
    result = _cli("predict", str(image_model), str(messy_corpus["images"] / "china" / "CAMERA.JPG"), "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0])["input"].endswith("CAMERA.JPG")
    with pytest.raises(DataError, match="is one image file; labelled data is a folder"):
        load_data(messy_corpus["images"] / "china" / "CAMERA.JPG")


def test_utf16_without_a_byte_order_mark_is_recognised(tmp_path: Path) -> None:
    for codec in ("utf-16-le", "utf-16-be"):
        path = tmp_path / f"{codec}.csv"
        path.write_bytes("text,label\nfine,a\nbad,b\n".encode(codec))
        assert load_data(path).items == ["fine", "bad"]


def test_composed_and_decomposed_accents_are_one_label_shown_with_escapes(tmp_path: Path) -> None:
    import unicodedata

    path = tmp_path / "t.csv"
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    path.write_text(f"text,label\none,{nfc}\ntwo,{nfd}\nthree,tea\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"'caf\\xe9' .*'cafe\\u0301'"):
        load_data(path)
    assert load_data(path, normalize_labels=True).classes == ["café", "tea"]


def test_predict_takes_a_list_of_image_files(messy_corpus, image_model) -> None:
    from transferkit import predict

    files = [messy_corpus["images"] / "china" / "exif6.jpg", messy_corpus["images"] / "hopper" / "grey16.png"]
    rows = predict(image_model, [str(f) for f in files], progress=False)
    assert [r["input"] for r in rows] == [str(f) for f in files]
    with pytest.raises(DataError, match="nothere.jpg: no such file"):
        predict(image_model, [str(files[0]), str(files[0].parent / "nothere.jpg")], progress=False)
