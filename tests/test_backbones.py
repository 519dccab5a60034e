"""The backbone contract, checked over every kind of backbone name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_IMAGE_BACKBONE
from transferkit.backbones import Backbone, create_backbone, list_backbones
from transferkit.backbones.registry import registered_backbones
from transferkit.data import Dataset
from transferkit.features import run_backbone
from transferkit.modalities import get_modality, modality_names


def _sample(backbone: Backbone):
    """Two items of the backbone's modality, as its registry entry describes them (so a new modality needs no branch)."""
    items, _ = get_modality(backbone.modality).sample_items(2)
    return Dataset(backbone.modality, items, ["a", "b"], "sample", ["sample[0]", "sample[1]"])


@pytest.fixture(params=["tiny-image", "tiny-text"])
def tiny_backbone(request, tiny_text_model: Path) -> Backbone:
    if request.param == "tiny-image":
        return create_backbone(TINY_IMAGE_BACKBONE)
    return create_backbone(str(tiny_text_model))


def test_features_have_the_declared_width(tiny_backbone: Backbone) -> None:
    features = run_backbone(tiny_backbone, _sample(tiny_backbone), progress=False)
    assert features.shape == (2, tiny_backbone.num_features)
    assert np.isfinite(features).all()
    assert not np.allclose(features[0], features[1])


def test_layer_groups_partition_the_trainable_parameters(tiny_backbone: Backbone) -> None:
    groups = tiny_backbone.layer_groups()
    assert len(groups) >= 3
    seen: set[int] = set()
    for group in groups:
        ids = {id(p) for p in group.parameters()}
        assert ids, "an empty layer group"
        assert not ids & seen, "a parameter in two groups"
        seen |= ids
    head = getattr(tiny_backbone.model, "get_classifier", lambda: None)()
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, torch.nn.Module) else set()
    all_ids = {id(p) for p in tiny_backbone.parameters()} - head_ids
    assert seen == all_ids


def test_preprocessing_is_json_and_part_of_the_cache_key(tiny_text_model: Path) -> None:
    short = create_backbone(str(tiny_text_model), max_length=16)
    long = create_backbone(str(tiny_text_model), max_length=64)
    assert json.loads(json.dumps(short.preprocessing)) == short.preprocessing
    assert short.weights_digest() == long.weights_digest()
    assert short.cache_key() != long.cache_key()


def test_weights_digest_follows_the_weights() -> None:
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    before = backbone.cache_key()
    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)
    backbone.invalidate_digest()
    assert backbone.cache_key() != before


def test_random_prefix_gives_random_weights_with_its_name(tiny_text_model: Path) -> None:
    pretrained = create_backbone(str(tiny_text_model))
    random = create_backbone(f"random:{tiny_text_model}")
    assert random.name.startswith("random:")
    assert random.weights_digest() != pretrained.weights_digest()


def test_timm_weights_from_a_local_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = create_backbone(TINY_IMAGE_BACKBONE)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    loaded = create_backbone(f"timm:test_efficientnet@{path}")
    assert loaded.weights_digest() == source.weights_digest()


def test_registry_lists_the_packaged_models() -> None:
    names = {entry["name"] for entry in list_backbones()}
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "all-MiniLM-L6-v2",
            "all-mpnet-base-v2"} <= names
    for entry in list_backbones():
        assert entry["modality"] in modality_names() and entry["description"] and entry["install"]
    assert {"image", "text", "audio"} <= {entry["modality"] for entry in list_backbones()}


@pytest.mark.integration
@pytest.mark.parametrize("entry", registered_backbones(), ids=lambda e: e.name)
def test_every_registered_backbone_honours_the_contract(entry) -> None:
    """Runs over the registry, so a new entry is tested the day it is added (skipped if its weights are absent)."""
    if not entry.is_available():
        pytest.skip(f"{entry.name}: weights not installed ({entry.install_hint})")
    backbone = create_backbone(entry.name)
    assert backbone.modality == entry.modality
    features = run_backbone(backbone, _sample(backbone), progress=False)
    assert features.shape == (2, backbone.num_features)
    assert np.isfinite(features).all()


@pytest.mark.integration
def test_packaged_lite0_is_really_pretrained() -> None:
    """The mapped ImageNet weights make the source head confident on a natural-looking input, unlike random weights."""
    from transferkit.backbones.vision import TimmBackbone

    pretrained = create_backbone("efficientnet_lite0")
    random = create_backbone("random:efficientnet_lite0")
    assert isinstance(pretrained, TimmBackbone) and pretrained.has_source_head
    # A smooth image with one bright disc; a trained network's BatchNorm statistics keep activations in range,
    # and its first-layer filters are smooth: features of a trained and a random network differ a lot.
    yy, xx = np.mgrid[:224, :224]
    disc = (((yy - 112) ** 2 + (xx - 112) ** 2) < 60**2).astype(np.float32)
    image = np.stack([disc * 200 + 30] * 3, axis=-1).astype(np.uint8)
    batch = pretrained.collate([pretrained.prepare(image)])
    with torch.inference_mode():
        logits_pre = pretrained.eval().source_logits(batch)
        logits_rand = random.eval().source_logits(batch)
    assert logits_pre.shape == (1, 1000)
    assert torch.softmax(logits_pre, 1).max() > 5 * torch.softmax(logits_rand, 1).max()
