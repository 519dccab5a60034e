"""The faster CPU extraction path gives the same features as the plain forward pass: BatchNorm folding, fused
activations, same-padding without copies, chunked batches, the cheaper preprocessing, and the ONNX Runtime option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from conftest import TINY_IMAGE_BACKBONE
from transferkit.backbones import create_backbone
from transferkit.backbones._inference import FusedConv2d, optimize_for_inference, pad_like_input, same_padding
from transferkit.backbones.vision import ImagePreprocessing
from transferkit.data.dataset import Dataset
from transferkit.data.sources import from_arrays
from transferkit.errors import ConfigError
from transferkit.features.extract import cpu_chunk_size, extract_features, forward_batch, run_backbone


def _randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding them is actually tested."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def _tf_lite_backbone():
    """EfficientNet-Lite architecture (TF "same" padding, BatchNorm + ReLU6), random weights, small input."""
    torch.manual_seed(0)
    backbone = create_backbone("random:timm:tf_efficientnet_lite0")
    _randomize_norms(backbone.model)
    return backbone.eval().to(memory_format=torch.channels_last)


def _pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("size", [64, 65])  # even and odd sizes: one-sided and symmetric "same" padding
def test_inference_features_match_forward_features_on_tf_same_padding_net(size: int) -> None:
    backbone = _tf_lite_backbone()
    x = _pixels(3, size)
    with torch.inference_mode():
        expected = backbone.forward_features(x)
        got = backbone.inference_features(x)
    fast = backbone.__dict__["_inference_state"][1]
    assert fast is not None, "the network should have been optimised"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert sum(isinstance(m, FusedConv2d) for m in fast.modules()) == sum(
        isinstance(m, nn.Conv2d) for m in backbone.model.modules())
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # The original network is untouched.
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.model.modules())


def test_inference_copy_follows_weight_changes() -> None:
    backbone = _tf_lite_backbone()
    x = _pixels(2, 64, seed=1)
    with torch.inference_mode():
        before = backbone.inference_features(x)
    with torch.no_grad():  # as an optimizer step would: in place
        backbone.model.conv_stem.weight.mul_(1.5)
        backbone.model.bn2.running_mean.add_(0.3)
    with torch.inference_mode():
        after = backbone.inference_features(x)
        expected = backbone.forward_features(x)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, atol=1e-4, rtol=0)


def test_non_fusable_activation_and_silu_network() -> None:
    torch.manual_seed(0)
    backbone = create_backbone(TINY_IMAGE_BACKBONE)  # BatchNorm + SiLU: folded, activation kept separate
    _randomize_norms(backbone.model, seed=2)
    backbone.eval()
    x = _pixels(2, 48)
    with torch.inference_mode():
        torch.testing.assert_close(backbone.inference_features(x), backbone.forward_features(x), atol=1e-4, rtol=0)
    assert backbone.__dict__["_inference_state"][1] is not None


class _SharedConvOutput(nn.Module):
    """A conv output read by a BatchNorm and by a second branch: folding it would change the second branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_unsafe_fold_is_detected_and_the_original_kept() -> None:
    model = _randomize_norms(_SharedConvOutput()).eval()
    x = torch.randn(2, 3, 8, 8)
    assert optimize_for_inference(model, x) is None
    with torch.inference_mode():
        assert torch.isfinite(model(x)).all()


def test_nothing_to_optimise_returns_none() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2)).eval()
    assert optimize_for_inference(model, torch.randn(2, 3, 2, 2)) is None


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pad_like_input_equals_f_pad_and_keeps_layout(layout) -> None:
    x = torch.randn(2, 5, 7, 6).contiguous(memory_format=layout)
    for pads in [(0, 1, 0, 1), (1, 2, 0, 0), (2, 2, 1, 1)]:
        top, bottom, left, right = pads
        got = pad_like_input(x, top, bottom, left, right)
        assert torch.equal(got, F.pad(x, (left, right, top, bottom)))
        assert got.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("groups", [1, 6])
@pytest.mark.parametrize("size", [10, 11])
def test_fused_same_conv_matches_padded_convolution(groups: int, size: int) -> None:
    torch.manual_seed(groups + size)
    weight, bias = torch.randn(6, 6 // groups, 3, 3), torch.randn(6)
    conv = FusedConv2d(weight, bias, stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=groups, same=True,
                       activation=nn.ReLU6())
    x = torch.randn(2, 6, size, size).contiguous(memory_format=torch.channels_last)
    top, bottom = same_padding(size, 3, 2, 1)
    expected = F.conv2d(F.pad(x, (top, bottom, top, bottom)), weight, bias, 2, 0, 1, groups).clamp(0, 6)
    with torch.inference_mode():
        torch.testing.assert_close(conv(x), expected, atol=1e-5, rtol=0)


def test_chunked_batches_give_the_same_features() -> None:
    backbone = _tf_lite_backbone()
    x = _pixels(9, 224)
    assert cpu_chunk_size(x) == 4
    with torch.inference_mode():
        whole = backbone.forward_features(x)
        chunked = forward_batch(backbone, x)
        custom = forward_batch(backbone, x, output=lambda model, batch: model.forward_features(batch) * 2)
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)
    torch.testing.assert_close(custom, whole * 2, atol=2e-4, rtol=0)


def test_preprocessing_values_and_channels_last_batches() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(50, 37, 3), dtype=np.uint8))
    pre = ImagePreprocessing(input_size=32, mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    out = pre(image)
    resized = np.asarray(image.resize((32, 43), Image.Resampling.BICUBIC).crop((0, 5, 32, 37)), dtype=np.float32)
    expected = (torch.from_numpy(resized / 255.0).permute(2, 0, 1) - torch.tensor(pre.mean)[:, None, None]) \
        / torch.tensor(pre.std)[:, None, None]
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out, expected)
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    batch = backbone.collate([backbone.prepare(image), backbone.prepare(image)])
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_run_backbone_restores_each_submodules_mode() -> None:
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    backbone.train()
    backbone.model.eval()  # a frozen network inside a module in train mode
    data = from_arrays(np.zeros((3, 20, 20, 3), dtype=np.uint8), ["a", "b", "a"])
    run_backbone(backbone, data, progress=False)
    assert backbone.training and not backbone.model.training
    assert not any(m.training for m in backbone.model.modules())


def test_onnx_runtime_extraction_matches_torch(tmp_path, tiny_text_model) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    backbone = create_backbone(TINY_IMAGE_BACKBONE)
    data = from_arrays(np.random.default_rng(1).integers(0, 256, size=(6, 30, 30, 3), dtype=np.uint8),
                       ["a", "b"] * 3)
    expected = run_backbone(backbone, data, progress=False)
    got = extract_features(backbone, data, cache=None, progress=False, runtime="onnx")
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    text = create_backbone(str(tiny_text_model), max_length=32)
    texts = Dataset("text", ["short", "a rather longer text than that", "mid text"], None, "texts")
    np.testing.assert_allclose(run_backbone(text, texts, progress=False, runtime="onnx"),
                               run_backbone(text, texts, progress=False), atol=1e-4, rtol=0)
    with pytest.raises(ConfigError, match="runtime"):
        run_backbone(backbone, data, progress=False, runtime="tensorrt")
    with pytest.raises(ConfigError, match="pooled features only"):
        run_backbone(backbone, data, progress=False, runtime="onnx", output=lambda m, b: m.forward_features(b))
