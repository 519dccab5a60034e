"""The modality registry: every entry answers every hook on real data of its kind and a tiny backbone of its kind;
no string branch on a modality's name is left outside the registry modules."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_IMAGE_BACKBONE, write_image_folder, write_text_csv
from transferkit.data import load_data
from transferkit.errors import ConfigError
from transferkit.modalities import (ATTRIBUTES, HOOKS, MODALITIES, Modality, get_modality, modality_names,
                                    register_modality)

SRC = Path(__file__).resolve().parents[1] / "src" / "transferkit"


# --- per-modality test material: a new modality adds a line to each ----------------------------------------------
def _image_data(tmp_path: Path, _text_model: Path):
    return load_data(str(write_image_folder(tmp_path / "images", per_class=2)))


def _text_data(tmp_path: Path, _text_model: Path):
    return load_data(str(write_text_csv(tmp_path / "reviews.csv")))


def _audio_data(tmp_path: Path, _text_model: Path):
    from _audio_clips import write_drum_folder

    return load_data(str(write_drum_folder(tmp_path / "drums", per_class=1, seconds=0.3)))


DATA = {"image": _image_data, "text": _text_data, "audio": _audio_data}
BACKBONES = {"image": lambda text_model: TINY_IMAGE_BACKBONE, "text": lambda text_model: str(text_model),
             "audio": lambda text_model: "random:aisfx"}


@pytest.fixture(params=modality_names())
def entry(request) -> Modality:
    return get_modality(request.param)


@pytest.fixture
def data(entry, tmp_path, tiny_text_model):
    return DATA[entry.name](tmp_path, tiny_text_model)


@pytest.fixture
def backbone(entry, tiny_text_model):
    import torch

    from transferkit.backbones import create_backbone

    torch.manual_seed(0)
    return create_backbone(BACKBONES[entry.name](tiny_text_model), **entry.backbone_options(max_length=32)).eval()


def test_every_modality_has_test_material() -> None:
    assert set(DATA) == set(MODALITIES) == set(BACKBONES)


# --- the contract --------------------------------------------------------------------------------------------------
def test_entry_declares_every_attribute_and_hook(entry) -> None:
    assert isinstance(entry, Modality)
    assert MODALITIES[entry.name] is entry
    for name in ATTRIBUTES:
        assert hasattr(entry, name), name
    for name in ("name", "description", "default_backbone", "input_hint"):
        assert isinstance(getattr(entry, name), str) and getattr(entry, name), name
    for name in ("items_are_files", "strings_are_items", "mixes_batches", "word_variants", "channels_last",
                 "prefers_static_quantization"):
        assert isinstance(getattr(entry, name), bool), name
    assert entry.service_request in ("files", "json")
    assert entry.mixes_batches or entry.augment_summary  # what --augment does instead of mixup
    for name in HOOKS:
        assert callable(getattr(entry, name)), name


def test_default_backbone_is_a_registered_backbone_of_the_modality(entry) -> None:
    from transferkit.backbones.registry import registered_backbones

    modality_of = {b.name: b.modality for b in registered_backbones()}
    assert modality_of.get(entry.default_backbone) == entry.name


def test_items_keys_and_checks(entry, data) -> None:
    assert data.modality == entry.name
    keys = entry.item_keys(list(data.items))
    assert len(keys) == len(data) and all(re.fullmatch(r"[0-9a-f]{32}", k) for k in keys)
    assert entry.item_keys([data.items[0], data.items[0]]) == [keys[0], keys[0]]
    assert data.item_keys() == keys
    entry.check_items(data)
    order = entry.batch_order(list(data.items))
    assert order is None or sorted(order.tolist()) == list(range(len(data)))
    assert data.from_files == entry.items_are_files
    if entry.items_are_files:
        again = entry.files_dataset(list(data.items[:2]), "inputs")
        assert again.modality == entry.name and list(again.items) == list(data.items[:2]) and again.labels is None


def test_raw_encoder_gives_one_finite_row_per_example(entry, data) -> None:
    import scipy.sparse as sp

    encoder = entry.raw_encoder()
    X = encoder.fit(data).transform(data)
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    assert dense.shape[0] == len(data) and dense.shape[1] > 0 and np.isfinite(dense).all()
    assert isinstance(encoder.standardize, bool) and encoder.description


def test_augmentation_presets_and_training_inputs(entry, data, backbone) -> None:
    from transferkit.data.augmentation import PRESETS

    for preset in PRESETS:
        augmentation = entry.augmentation(preset)
        assert augmentation.is_identity == (preset == "none")
    prepare, batch_transform = entry.training_inputs(backbone, entry.augmentation("light"))
    batch = backbone.collate([prepare(item) for item in list(data.items[:2])])
    assert batch_transform is None or callable(batch_transform)
    plain, none = entry.training_inputs(backbone, entry.augmentation("none"))
    assert plain == backbone.prepare and none is None
    assert batch is not None


def test_backbone_options_reproduce_the_preprocessing(entry, backbone, tiny_text_model) -> None:
    from transferkit.backbones import create_backbone

    assert backbone.modality == entry.name
    assert backbone.preprocessing["kind"] == entry.name
    options = entry.options_from_preprocessing(backbone.preprocessing)
    again = create_backbone(BACKBONES[entry.name](tiny_text_model), **options)
    assert again.preprocessing == backbone.preprocessing


def test_report_examples_are_json_and_html(entry, data) -> None:
    from transferkit.reporting.report import _e

    shown = {"row_id": "row <7>", **entry.example(data.items[0])}
    assert json.loads(json.dumps(shown)) == shown
    html = entry.examples_html([shown], _e)
    assert "row &lt;7&gt;" in html and "<7>" not in html
    assert isinstance(entry.example_cell_html(shown, _e), str) and entry.example_cell_html(shown, _e)


def test_warm_up_and_sample_items_run_through_the_backbone(entry, backbone) -> None:
    import torch

    from transferkit.backbones.onnx_graph import input_names

    items, description = entry.sample_items(3)
    assert len(items) == 3 and description
    for batch in (backbone.collate([backbone.prepare(entry.warm_up_item())]),
                  backbone.collate([backbone.prepare(item) for item in items])):
        with torch.no_grad():
            features = backbone.forward_features(batch)
        assert features.shape == (len(batch["input_ids"]) if isinstance(batch, dict) else len(batch),
                                  backbone.num_features)
    names = input_names(entry.name)
    assert set(names) <= set(batch) if isinstance(batch, dict) else len(names) == 1


# --- the registry itself -------------------------------------------------------------------------------------------
def test_unknown_modality_names_the_option_and_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        get_modality("audio-ish", option="--modality")
    message = str(caught.value)
    assert "--modality" in message and "audio-ish" in message and "image, text" in message


def test_a_dataset_of_an_unknown_modality_is_refused_when_built() -> None:
    from transferkit.data import Dataset
    from transferkit.errors import DataError

    with pytest.raises(DataError) as caught:
        Dataset("imgae", ["a.png"], None, "my list")
    message = str(caught.value)
    assert "my list" in message and "'imgae'" in message and "image, text" in message


def test_register_refuses_a_taken_name_and_adds_a_new_one() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_modality(type(get_modality("text"))())

    class Extra(type(get_modality("text"))):
        name = "extra-text"

    try:
        register_modality(Extra())
        assert get_modality("extra-text").name == "extra-text" and "extra-text" in modality_names()
    finally:
        MODALITIES.pop("extra-text", None)


def test_the_registry_imports_nothing_heavy() -> None:
    code = ("import sys, transferkit.modalities as m; [m.get_modality(n).backbone_options(max_length=8) "
            "for n in m.modality_names()]; sys.exit(any(k in sys.modules for k in ('torch', 'PIL', 'sklearn')))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- no string branches on a modality outside the registry -----------------------------------------------------------
BRANCH = re.compile(r"""modality\s*[!=]=\s*["']|["'](?:image|text)["']\s*[!=]=|[!=]=\s*["'](?:image|text)["']|"""
                    r"""modality\s+(?:not\s+)?in\s*[(\[{]|["'](?:image|text)["']\s+if\b""")
#: Lines allowed to name a modality in a comparison, each with the reason.
ALLOWED: dict[str, str] = {}


def test_no_modality_string_branches_outside_the_registry() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("modalities/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BRANCH.search(line) and f"{relative}: {line.strip()}" not in ALLOWED:
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "ask the modality registry entry instead:\n" + "\n".join(found)


def test_the_branch_pattern_catches_the_usual_forms() -> None:
    for line in ('if dataset.modality == "text":', "if modality != 'image':", 'x = 1 if kind == "image" else 2',
                 'give = "a" if wanted == "text" else "b"', 'if data.modality in ("image", "audio"):'):
        assert BRANCH.search(line), line
    for line in ("if data.modality != backbone.modality:", 'entry = get_modality("text")'):
        assert not BRANCH.search(line), line
