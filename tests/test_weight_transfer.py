"""Cross-architecture weight transfer: partial loads are reported, 1- and 3-channel stems convert both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import transferkit as tk
from conftest import TINY_IMAGE_BACKBONE, _class_image
from transferkit.backbones import create_backbone
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError
from transferkit.strategies.weight_transfer import adapt_input_channels, load_backbone_weights, load_matching


def _net(in_chans: int = 3, num_classes: int = 5, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("test_efficientnet", pretrained=False, in_chans=in_chans, num_classes=num_classes).eval()


def test_matching_tensors_load_and_the_rest_is_reported() -> None:
    source, target = _net(num_classes=5, seed=1), _net(num_classes=7, seed=2)
    report = load_matching(target, source.state_dict())
    assert {k for k, _, _ in report.mismatched} == {"classifier.weight", "classifier.bias"}
    assert report.missing == ["classifier.weight", "classifier.bias"] and not report.unexpected
    for key in report.loaded:
        assert torch.equal(target.state_dict()[key], source.state_dict()[key])
    assert not torch.equal(target.classifier.weight[:5], source.classifier.weight)
    assert "2 skipped for their shape" in str(report)


def test_three_channel_stem_to_one_channel_and_back() -> None:
    rgb = _net(in_chans=3, seed=1)
    grey = _net(in_chans=1, seed=2)
    report = load_matching(grey, rgb.state_dict())
    assert [k for k, _, _ in report.adapted] == ["conv_stem.weight"] and not report.missing
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(grey(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-4)
    back = _net(in_chans=3, seed=3)
    load_matching(back, grey.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(back(x.repeat(1, 3, 1, 1)), grey(x), atol=1e-5, rtol=1e-4)


def test_adapt_input_channels_shapes() -> None:
    weight = torch.randn(4, 3, 3, 3)
    assert adapt_input_channels(weight, 1).shape == (4, 1, 3, 3)
    five = adapt_input_channels(weight, 5)
    assert five.shape == (4, 5, 3, 3)
    torch.testing.assert_close(five[:, 3], weight[:, 0] * 3 / 5)
    torch.testing.assert_close(adapt_input_channels(weight, 6).sum(dim=1), weight.sum(dim=1))


def test_init_from_a_file_and_a_model_folder(tmp_path: Path) -> None:
    donor = create_backbone(TINY_IMAGE_BACKBONE)
    with torch.no_grad():
        for p in donor.parameters():
            p.add_(0.5)
    path = tmp_path / "donor.safetensors"
    save_file({k: v.contiguous() for k, v in donor.model.state_dict().items()}, str(path))
    receiver = create_backbone(TINY_IMAGE_BACKBONE)
    report = load_backbone_weights(receiver, path)
    assert not report.missing and receiver.weights_digest() == donor.weights_digest()

    with pytest.raises(ConfigError, match="none of the 1 tensors"):
        save_file({"unrelated": torch.zeros(3)}, str(tmp_path / "bad.safetensors"))
        load_backbone_weights(create_backbone(TINY_IMAGE_BACKBONE), tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="does not exist"):
        load_backbone_weights(receiver, tmp_path / "missing.safetensors")


def test_fit_init_from_a_saved_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [name for name in ("a", "b") for _ in range(8)]
    data = from_arrays(np.stack([_class_image(rng, i % 2, size=24) for i in range(16)]), labels, origin="tiny")
    options = dict(backbone=TINY_IMAGE_BACKBONE, strategy="finetune", epochs=1, batch_size=4, tracking_uri="off",
                   progress=False, baselines=["raw"], device="cpu", test_fraction=0.25)
    first = tk.fit(data, output=str(tmp_path / "first"), work_dir=str(tmp_path / "w1"), **options)
    second = tk.fit(data, init_from=str(tmp_path / "first"), work_dir=str(tmp_path / "w2"), epochs=1,
                    **{k: v for k, v in options.items() if k != "epochs"})
    init = second.config["training"]["init_from"]
    assert init["loaded"] == len(first.model.backbone.state_dict()) and init["mismatched"] == 0
