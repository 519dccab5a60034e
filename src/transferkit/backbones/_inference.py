"""A faster, frozen copy of a convolutional network for CPU inference.

Eager PyTorch spends much of a frozen CNN's forward pass outside the convolutions: every BatchNorm is a separate
pass over a large activation, the activation function is another, and TensorFlow-style "same" padding (timm's
``Conv2dSame``) copies the input before each strided convolution. For inference all three can go:

- **BatchNorm folding**: ``bn(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(v + eps)`` and
  ``b' = (b - m) * g / sqrt(v + eps) + beta`` (per output channel), exact up to float rounding;
- **activation fusion**: ReLU / ReLU6 run inside the convolution kernel (oneDNN post-op) when PyTorch's oneDNN
  convolution is available, else in place right after it;
- **cheaper same-padding**: the padded copy is written once in the input's own memory layout.

Which convolution feeds which BatchNorm is found by running the network once on an example and matching tensors
(not by module names), so it works for any architecture that applies BatchNorm directly to a convolution's output.
The optimised copy is checked against the original on that example; if they differ by more than the tolerance,
the copy is discarded and the caller keeps the original (never a silently different result).
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("transferkit")

# Activations that run fused into the convolution: (oneDNN post-op name, its scalars).
_FUSABLE: dict[type, tuple[str, list[float]]] = {
    nn.ReLU: ("relu", []),
    nn.ReLU6: ("hardtanh", [0.0, 6.0]),
    nn.Identity: ("none", []),
}


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one spatial axis: ``(before, after)`` so that ``out = ceil(size / stride)``."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_like_input(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Zero-pad the two spatial axes of ``x`` ``(N, C, H, W)``, keeping its memory layout (one write of the copy)."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = x.new_empty((n, h + top + bottom, w + left + right, c)).permute(0, 3, 1, 2)
    else:
        out = x.new_empty((n, c, h + top + bottom, w + left + right))
    if top:
        out[:, :, :top].zero_()
    if bottom:
        out[:, :, top + h:].zero_()
    if left:
        out[:, :, top:top + h, :left].zero_()
    if right:
        out[:, :, top:top + h, left + w:].zero_()
    out[:, :, top:top + h, left:left + w].copy_(x)
    return out


class FusedConv2d(nn.Module):
    """A convolution with a folded BatchNorm and, optionally, its activation, for inference only.

    ``same=True`` applies TensorFlow "same" padding computed from the input size (as timm's ``Conv2dSame``).
    Input and output: ``(N, C, H, W)`` float tensors (channels-last memory is kept).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, *, stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int], groups: int, same: bool,
                 activation: nn.Module | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.groups, self.same = int(groups), bool(same)
        self.kernel_size = tuple(weight.shape[-2:])
        self.activation = activation
        post = _FUSABLE.get(type(activation)) if activation is not None else ("none", [])
        self._post_op = post if _onednn_available() else None
        self._shifted: dict[tuple[int, int], torch.Tensor] = {}

    def _padding_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """The input, weight and symmetric padding that give this layer's output for ``x``."""
        if not self.same:
            return x, self.weight, self.padding
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top == bottom and left == right:  # symmetric: the convolution pads for free
            return x, self.weight, (top, left)
        # "Same" padding puts at most one more row (column) after than before. With one more zero tap at the start of
        # the kernel, symmetric padding by the larger amount computes exactly the same sums without copying the
        # input: cheaper for depthwise convolutions, whose cost is reading the input; dense ones copy instead.
        if self.groups > 1 and self.dilation == (1, 1):
            shift = (bottom - top, right - left)
            weight = self._shifted.get(shift)
            if weight is None or weight.device != self.weight.device:
                weight = F.pad(self.weight, (shift[1], 0, shift[0], 0))
                self._shifted[shift] = weight
            return x, weight, (bottom, right)
        return pad_like_input(x, top, bottom, left, right), self.weight, (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight, padding = self._padding_for(x)
        if self._post_op is not None and x.device.type == "cpu" and x.dtype == torch.float32:
            attr, scalars = self._post_op
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, self.bias, list(padding), list(self.stride), list(self.dilation), self.groups,
                attr, scalars, "")
        out = F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return self.activation(out) if self.activation is not None else out


def _is_same_padding_conv(module: nn.Module) -> bool:
    """timm's ``Conv2dSame`` (dynamic TensorFlow padding); found by name so timm need not be imported here."""
    return isinstance(module, nn.Conv2d) and type(module).__name__ == "Conv2dSame" \
        and tuple(module.padding) == (0, 0) and module.padding_mode == "zeros"


def _plain_conv(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)) \
        or _is_same_padding_conv(module)


def _foldable_norm(module: nn.Module) -> bool:
    """A BatchNorm in eval mode with running statistics, plain or timm's ``BatchNormAct2d`` (norm, drop, act)."""
    if not isinstance(module, nn.BatchNorm2d) or module.running_mean is None or module.running_var is None:
        return False
    return type(module) is nn.BatchNorm2d or type(module).__name__ == "BatchNormAct2d"


def conv_norm_pairs(model: nn.Module, run: Callable[[], object]) -> list[tuple[str, str]]:
    """``(conv name, norm name)`` for every BatchNorm whose input is exactly a convolution's output, found by
    running ``run()`` (one forward pass of ``model``) with hooks."""
    produced: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def on_conv(name: str):
        def hook(module, inputs, output):
            produced[id(output)] = (name, output)  # the tensor is kept alive so its id stays unique
        return hook

    def on_norm(name: str):
        def hook(module, inputs):
            found = produced.get(id(inputs[0]))
            if found is not None and found[1] is inputs[0]:
                pairs.append((found[0], name))
        return hook

    for name, module in model.named_modules():
        if _plain_conv(module):
            handles.append(module.register_forward_hook(on_conv(name)))
        elif _foldable_norm(module):
            handles.append(module.register_forward_pre_hook(on_norm(name)))
    try:
        with torch.inference_mode():
            run()
    finally:
        for handle in handles:
            handle.remove()
    convs = [c for c, _ in pairs]
    norms = [n for _, n in pairs]
    # A convolution or norm met twice (weight sharing, repeated calls) is left alone.
    return [(c, n) for c, n in pairs if convs.count(c) == 1 and norms.count(n) == 1]


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = (norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)) \
        / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    return weight.detach(), ((bias - norm.running_mean) * scale + shift).detach()


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def _norm_activation(norm: nn.Module) -> nn.Module | None:
    """What remains of a norm layer after folding: timm's BatchNormAct2d keeps its activation."""
    act = getattr(norm, "act", None)
    return act if isinstance(act, nn.Module) and not isinstance(act, nn.Identity) else None


def optimize_for_inference(module: nn.Module, example: torch.Tensor, *, tolerance: float = 1e-4) -> nn.Module | None:
    """A frozen copy of ``module`` with BatchNorms folded, activations fused and same-padding made cheap.

    ``example`` is one input batch (a few examples suffice). Returns ``None`` when there is nothing to optimise or
    when the copy's output on ``example`` differs from the original's by more than ``tolerance`` (absolute, scaled
    by the output's largest magnitude when that is above 1); ``module`` itself is never changed.
    """
    if not any(_plain_conv(m) for m in module.modules()):
        return None
    fast = copy.deepcopy(module).eval().requires_grad_(False)
    pairs = conv_norm_pairs(fast, lambda: fast(example))
    modules = dict(fast.named_modules())
    replaced = 0
    for conv_name, norm_name in pairs:
        conv, norm = modules[conv_name], modules[norm_name]
        activation = _norm_activation(norm)
        fuse = activation is None or type(activation) in _FUSABLE
        weight, bias = _fold(conv, norm)
        _set(fast, conv_name, FusedConv2d(weight, bias, stride=conv.stride, padding=conv.padding,
                                          dilation=conv.dilation, groups=conv.groups,
                                          same=_is_same_padding_conv(conv), activation=activation if fuse else None))
        _set(fast, norm_name, nn.Identity() if fuse else activation)
        replaced += 1
    for name, conv in list(fast.named_modules()):
        if _is_same_padding_conv(conv):  # same-padding convolutions without a norm after them
            bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
            _set(fast, name, FusedConv2d(conv.weight, bias, stride=conv.stride, padding=conv.padding,
                                         dilation=conv.dilation, groups=conv.groups, same=True, activation=None))
            replaced += 1
    if replaced == 0:
        return None
    if example.is_contiguous(memory_format=torch.channels_last):
        fast = fast.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = module(example).float()
        got = fast(example).float()
    difference = float((expected - got).abs().max()) if expected.numel() else 0.0
    allowed = tolerance * max(1.0, float(expected.abs().max()) if expected.numel() else 1.0)
    if not difference <= allowed:
        log.warning("inference optimisation of %s changed its output by %.2e (allowed %.1e); using the original",
                    type(module).__name__, difference, allowed)
        return None
    log.debug("inference copy of %s: %d convolutions folded/fused, max difference %.2e", type(module).__name__,
              replaced, difference)
    return fast
