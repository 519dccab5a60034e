"""Data sources, splits and fingerprints on real small files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_image_folder, write_text_csv
from transferkit.data import (
    from_arrays,
    load_data,
    sample_per_class,
    stratified_split,
    validate_dataset,
)
from transferkit.data.images import to_rgb


def test_image_folder_classes_and_row_ids(image_folder: Path) -> None:
    ds = load_data(image_folder)
    assert ds.modality == "image"
    assert ds.classes == ["cat", "dog", "fox"]
    assert len(ds) == 18
    assert all(Path(p).is_file() for p in ds.items)
    assert ds.row_ids[0].endswith("cat/000.png")


def test_image_folder_skips_non_images_with_a_warning(image_folder: Path) -> None:
    (image_folder / "cat" / "notes.txt").write_text("not an image")
    (image_folder / "cat" / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(UserWarning, match="notes.txt"):
        ds = load_data(image_folder)
    assert len(ds) == 18


def test_nested_images_belong_to_their_class_folder(image_folder: Path) -> None:
    nested = image_folder / "dog" / "outdoor"
    nested.mkdir()
    Image.new("RGB", (8, 8), "white").save(nested / "x.png")
    ds = load_data(image_folder)
    assert ds.labels.count("dog") == 7


def test_text_table_csv_jsonl_parquet_agree(tmp_path: Path) -> None:
    import pandas as pd

    csv_path = write_text_csv(tmp_path / "t.csv")
    frame = pd.read_csv(csv_path)
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "t.parquet")
    loaded = [load_data(tmp_path / name) for name in ("t.csv", "t.jsonl", "t.parquet")]
    for ds in loaded:
        assert ds.modality == "text"
        assert ds.classes == ["negative", "positive"]
    assert loaded[0].items == loaded[1].items == loaded[2].items
    assert loaded[0].labels == loaded[2].labels
    assert loaded[0].row_ids[0].endswith("t.csv line 2")
    assert loaded[1].row_ids[0].endswith("t.jsonl line 1")


def test_table_of_image_paths_relative_to_the_table(image_folder: Path) -> None:
    table = image_folder / "index.csv"
    lines = ["path,label"] + [f"{c}/00{i}.png,{c}" for c in ("cat", "dog") for i in range(3)]
    table.write_text("\n".join(lines) + "\n")
    ds = load_data(table)
    assert ds.modality == "image" and len(ds) == 6
    assert Path(ds.items[0]).is_file()


def test_custom_column_names(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sentence_text,y\nhello there,a\ngood bye,b\n")
    ds = load_data(path, text_column="sentence_text", label_column="y")
    assert ds.items == ["hello there", "good bye"] and ds.labels == ["a", "b"]


def test_numeric_labels_sort_numerically() -> None:
    ds = from_arrays(["a", "b", "c", "d"], [10, 2, 1, 2])
    assert ds.classes == ["1", "2", "10"]


def test_float_image_arrays_are_rescaled() -> None:
    images = np.random.default_rng(0).random((4, 8, 8))
    ds = from_arrays(images, ["a", "b", "a", "b"])
    assert ds.items.dtype == np.uint8 and ds.items.max() > 200


def test_every_colour_mode_becomes_rgb() -> None:
    samples = {
        "L": Image.new("L", (4, 4), 128),
        "P": Image.new("P", (4, 4), 3),
        "RGBA": Image.new("RGBA", (4, 4), (255, 0, 0, 0)),
        "LA": Image.new("LA", (4, 4), (10, 255)),
        "CMYK": Image.new("CMYK", (4, 4), (0, 255, 255, 0)),
        "I;16": Image.fromarray(np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000),
        "F": Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)),
        "1": Image.new("1", (4, 4), 1),
    }
    for mode, image in samples.items():
        rgb = to_rgb(image)
        assert rgb.mode == "RGB", mode
        assert np.asarray(rgb).shape == (4, 4, 3), mode
    # transparent red on white is white, not black or red
    assert np.asarray(to_rgb(samples["RGBA"]))[0, 0].tolist() == [255, 255, 255]
    # 16-bit greyscale keeps its range: darkest -> 0, brightest -> 255
    grey16 = np.asarray(to_rgb(samples["I;16"]))[:, :, 0]
    assert grey16.min() == 0 and grey16.max() == 255


def test_mixed_modes_in_one_folder_are_accepted(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", per_class=3)
    Image.new("L", (20, 20), 40).save(root / "cat" / "grey.png")
    Image.new("RGBA", (20, 20), (0, 0, 255, 128)).save(root / "dog" / "alpha.png")
    Image.new("P", (20, 20), 7).save(root / "fox" / "palette.gif")
    ds = load_data(root)
    validate_dataset(ds)
    from transferkit.backbones.vision import load_image_item

    assert {load_image_item(p).mode for p in ds.items} == {"RGB"}


def test_stratified_split_is_disjoint_stratified_and_seeded() -> None:
    labels = ["a"] * 30 + ["b"] * 10
    ds = from_arrays([f"text {i}" for i in range(40)], labels)
    train, held = stratified_split(ds, 0.25, seed=3)
    assert set(train.items).isdisjoint(held.items)
    assert len(train) + len(held) == 40
    assert held.labels.count("a") == 8 and held.labels.count("b") == 2
    again, _ = stratified_split(ds, 0.25, seed=3)
    other, _ = stratified_split(ds, 0.25, seed=4)
    assert again.items == train.items and other.items != train.items


def test_sample_per_class_caps_each_class() -> None:
    ds = from_arrays([f"t{i}" for i in range(50)], ["a"] * 40 + ["b"] * 10)
    few = sample_per_class(ds, 5, seed=0)
    assert few.labels.count("a") == 5 and few.labels.count("b") == 5
    assert sample_per_class(ds, 5, seed=0).items == few.items


def test_item_keys_follow_content_not_position(tmp_path: Path) -> None:
    ds = from_arrays(["x", "y", "x"], ["a", "b", "a"])
    keys = ds.item_keys()
    assert keys[0] == keys[2] != keys[1]
    assert ds.subset([2, 1]).item_keys() == [keys[2], keys[1]]
    images = np.zeros((2, 4, 4), np.uint8)
    images[1, 0, 0] = 1
    assert len(set(from_arrays(images, ["a", "b"]).item_keys())) == 2


def test_fingerprint_changes_with_labels() -> None:
    a = from_arrays(["x", "y"], ["a", "b"])
    b = from_arrays(["x", "y"], ["b", "a"])
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == from_arrays(["x", "y"], ["a", "b"]).fingerprint()


def test_symlink_loop_does_not_hang(image_folder: Path) -> None:
    (image_folder / "cat" / "loop").symlink_to(image_folder / "cat", target_is_directory=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_data(image_folder)
    assert ds.labels.count("cat") == 6
    assert any("loop" in str(w.message) for w in caught)


def test_builtin_vader_is_binary_and_large() -> None:
    from transferkit.data.builtin import load_vader

    ds = load_vader("movies")
    assert ds.classes == ["negative", "positive"]
    assert len(ds) == 10_072  # |valence| >= 0.5, as counted in the datasets README
    assert json.dumps(ds.items[:2])


def test_load_data_takes_the_table_options_as_one_data_options(tmp_path) -> None:
    """``load_data(path, DataOptions(...))`` reads a table as the keywords of the same names do; the options'
    values decide (a wrong delimiter is the error naming it, label spellings are folded only when asked)."""
    from transferkit.data.sources import load_data
    from transferkit.errors import DataError
    from transferkit.options import DataOptions

    table = tmp_path / "reviews.csv"
    table.write_text("text;label\n" + "".join(f"review {i};{'Good' if i % 3 else 'good'}\n" for i in range(6)))
    folded = load_data(str(table), DataOptions(delimiter=";", normalize_labels=True))
    by_keyword = load_data(str(table), delimiter=";", normalize_labels=True)
    assert folded.items == by_keyword.items and folded.labels == by_keyword.labels == ["Good"] * 6
    with pytest.raises(DataError, match="--delimiter ';'"):
        load_data(str(table), DataOptions(delimiter=","))
    with pytest.raises(DataError, match="--normalize-labels"):
        load_data(str(table), DataOptions(delimiter=";"))
