"""Shared fixtures: small real files (images, tables) and tiny models that make unit tests run in seconds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Runs are not tracked in MLflow unless a test asks for it (tracking costs about a second a run); the tracking
# tests give their own store, and test_reporting checks the default store with this variable removed.
os.environ.setdefault("TRANSFERKIT_TRACKING_URI", "off")

# Property tests explore new inputs on every local run; CI (HYPOTHESIS_PROFILE=ci) replays a fixed sequence, so a
# green or red result there depends on the code, not on the draw. Inputs found locally go in as @example cases.
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    _hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
except ImportError:  # hypothesis comes with the dev extra
    pass

# A tiny random timm CNN (160 px input, 256-d features): unit tests of the image path run in seconds.
TINY_IMAGE_BACKBONE = "random:timm:test_efficientnet"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test session writes its feature cache and unpacked models to a fresh folder."""
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path_factory.getbasetemp() / "tk-cache"))


def _class_image(rng: np.random.Generator, class_index: int, size: int = 32) -> np.ndarray:
    """An RGB image whose colour and stripe direction depend on the class, plus noise."""
    image = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
    channel = class_index % 3
    image[:, :, channel] += 150
    if class_index % 2:
        image[::4, :, :] = 255
    else:
        image[:, ::4, :] = 255
    return image


def write_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 6, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_class_image(rng, index)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


TEXTS = {
    "positive": ["a wonderful, moving film", "great acting and a great story", "I loved every minute",
                 "brilliant and funny", "a delight from start to finish", "superb, heartfelt work",
                 "charming and clever", "one of the best this year"],
    "negative": ["a dull, lifeless mess", "terrible acting and a boring plot", "I hated every minute",
                 "tedious and unfunny", "a chore from start to finish", "awful, cynical work",
                 "clumsy and stupid", "one of the worst this year"],
}


def write_text_csv(path: Path, rows: list[tuple[str, str]] | None = None) -> Path:
    import csv

    rows = rows if rows is not None else [(t, label) for label, texts in TEXTS.items() for t in texts]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture
def text_csv(tmp_path: Path) -> Path:
    return write_text_csv(tmp_path / "reviews.csv")


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer, saved as a local transformers folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from transferkit.backbones.packaged import minilm_folder

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def messy_corpus(tmp_path_factory) -> dict[str, Path]:
    """Real photographs and tables in every messy form users have (see tests/messy_corpus.py for the keys and what
    each should do). Built once per session; tests must not modify it (copy a part first)."""
    from messy_corpus import build_messy_corpus

    return build_messy_corpus(tmp_path_factory.mktemp("messy"))
