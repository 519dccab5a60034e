"""Augmentation presets: images keep their shape and change, text masking spares special tokens, mixing gives
probabilities, and mixup trains through the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_IMAGE_BACKBONE, _class_image
from transferkit.backbones import create_backbone
from transferkit.config import make_config
from transferkit.data.augmentation import (IMAGE_PRESETS, PRESETS, TEXT_PRESETS, BatchMixing, TokenAugmentation,
                                           augmentation_for)
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError
from transferkit.strategies.run import train_with_strategy


@pytest.fixture(scope="module")
def backbone():
    return create_backbone(TINY_IMAGE_BACKBONE)


@pytest.mark.parametrize("preset", PRESETS)
def test_image_presets_keep_the_shape_and_change_the_pixels(preset, backbone) -> None:
    image = _class_image(np.random.default_rng(0), 1, size=40)
    plain = backbone.prepare(image)
    transform = IMAGE_PRESETS[preset].build(backbone.prepare)
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(6)]
    assert all(o.shape == plain.shape and o.dtype == torch.float32 for o in outputs)
    changed = [not torch.allclose(o, plain) for o in outputs]
    assert any(changed) == (preset != "none")


def test_image_augmentation_is_reproducible_from_the_seed(backbone) -> None:
    image = _class_image(np.random.default_rng(0), 2, size=40)
    transform = augmentation_for("image", "heavy").build(backbone.prepare)
    torch.manual_seed(5)
    first = transform(image)
    torch.manual_seed(5)
    assert torch.equal(first, transform(image))


def test_auto_augment_override_and_bad_presets() -> None:
    assert augmentation_for("image", "light", "randaugment").auto_augment == "randaugment"
    assert augmentation_for("image", "heavy", "none").auto_augment is None
    with pytest.raises(ConfigError, match="'augment' must be one of none, light, medium, heavy"):
        augmentation_for("image", "extreme")
    with pytest.raises(ConfigError, match="applies to images"):
        augmentation_for("text", "light", "randaugment")


def test_token_masking_and_dropout_spare_special_tokens_and_padding(tiny_text_model: Path) -> None:
    text_backbone = create_backbone(str(tiny_text_model))
    tokenizer = text_backbone.tokenizer
    batch = text_backbone.collate(["a wonderful film", "dull"])
    ordinary = (batch["attention_mask"] == 1) & ~torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
    masked, _ = TokenAugmentation(mask=1.0).build(tokenizer)(batch, torch.tensor([1, 0]))
    assert torch.all(masked["input_ids"][ordinary] == tokenizer.mask_token_id)
    assert torch.equal(masked["input_ids"][~ordinary], batch["input_ids"][~ordinary])
    dropped, _ = TokenAugmentation(drop=1.0).build(tokenizer)(batch, torch.tensor([1, 0]))
    assert torch.all(dropped["attention_mask"][ordinary] == 0)
    assert torch.equal(dropped["attention_mask"][~ordinary], batch["attention_mask"][~ordinary])
    assert TEXT_PRESETS["none"].is_identity and TEXT_PRESETS["heavy"].mask == 0.15


def test_mixup_and_cutmix_give_class_probabilities() -> None:
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    for mixup, cutmix in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        mixed, targets = BatchMixing(4, mixup, cutmix)(images, labels)
        assert mixed.shape == images.shape and targets.shape == (8, 4)
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(8))


def test_mixup_trains_through_the_engine_and_the_preset_is_recorded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [c for c in ("a", "b") for _ in range(8)]
    data = from_arrays(np.stack([_class_image(rng, i // 8, size=24) for i in range(16)]), labels, origin="tiny")
    config = make_config(strategy="finetune", epochs=1, batch_size=4, tracking_uri="off", progress=False,
                         work_dir=str(tmp_path), augment="heavy", mixup=0.2, cutmix=1.0, device="cpu")
    trained = train_with_strategy(config, create_backbone(TINY_IMAGE_BACKBONE), data, None, data.classes)
    assert trained.facts["augmentation"]["preset"] == "heavy"
    assert trained.facts["augmentation"]["auto_augment"] == "trivialaugment"
    assert np.isfinite(trained.outcome.history[0]["train_loss"])
