"""Audio backbones: a log-mel front end and a convolutional network behind the :class:`Backbone` interface.

The packaged one is the aiSFX sound-effects embedding network (A. B. Ma and A. Lerch, "Representation Learning for
the Automatic Indexing of Sound Effects Libraries", ISMIR 2022; weights in the PyPI package ``aisfx`` 0.1.2, whose
licence file is CC BY 4.0): four blocks of two 3x3 convolutions with batch norm and ReLU (64, 128, 256, 512
channels; 2x2 max pooling after the first three), the mean over frequency, then the maximum over time: a 512-d
embedding of a log-mel spectrogram (44.1 kHz, 2048-sample window, 1024-sample hop, 96 HTK mel bands,
``log10(1 + 10^4 * power)`` scaled by the maximum seen in training). The network here is written for transferkit and
takes the package's trained tensors, key by key, shape by shape.

Input flow: an item (a file path or an :class:`~transferkit.data.audio.AudioClip`) -> mono samples at the backbone's
rate (:meth:`AudioPreprocessing.waveform`: resampled with soxr, channels averaged, fitted to ``clip_seconds`` by the
length policy of :mod:`transferkit.data.audio`, peak-normalised) -> spectrogram ``(frames, n_mels)``
(:meth:`AudioPreprocessing.spectrogram`) in ``prepare``; batches ``(N, frames, n_mels)`` go through the network. Audio
augmentation works on the samples and on the spectrogram between those two steps.
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

from transferkit.backbones.base import Backbone


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, each normalised to unit area (sum 1): ``(n_fft // 2 + 1, n_mels)``."""
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bins = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(np.array(f_min)), to_mel(np.array(f_max)), n_mels + 2))
    weights = np.zeros((n_mels, len(bins)))
    for band in range(n_mels):
        low, centre, high = edges[band], edges[band + 1], edges[band + 2]
        rising = (bins - low) / max(centre - low, 1e-9)
        falling = (high - bins) / max(high - centre, 1e-9)
        weights[band] = np.maximum(0.0, np.minimum(rising, falling))
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    return torch.from_numpy(weights.T.astype(np.float32))


@dataclass(frozen=True)
class AudioPreprocessing:
    """How a clip becomes the network's input (JSON-able; part of the feature-cache key and of saved models)."""

    sample_rate: int = 44100
    clip_seconds: float = 2.3
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 96
    f_min: float = 0.0
    f_max: float = 22050.0
    log_scale: float = 10000.0
    value_max: float = 9.457798957824707
    peak_normalize: bool = True

    @property
    def samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def frames(self) -> int:
        return 1 + self.samples // self.hop_length

    def waveform(self, item: Any) -> np.ndarray:
        """An item as ``samples`` mono float32 samples at ``sample_rate`` (length policy, peak normalisation)."""
        from transferkit.data.audio import fit_length, load_waveform

        wave = fit_length(load_waveform(item, self.sample_rate), self.samples, step=max(1, self.sample_rate // 100))
        if self.peak_normalize:
            peak = float(np.max(np.abs(wave))) if wave.size else 0.0
            if peak > 0:
                wave = wave / peak
        return np.ascontiguousarray(wave, dtype=np.float32)

    def spectrogram(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Samples ``(samples,)`` -> the scaled log-mel spectrogram ``(frames, n_mels)``, float32."""
        signal = torch.as_tensor(wave, dtype=torch.float32)
        window = torch.hann_window(self.n_fft)
        spec = torch.stft(signal, self.n_fft, self.hop_length, window=window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (n_fft // 2 + 1, frames)
        mel = power.T @ mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.f_min, self.f_max)
        return torch.log10(1.0 + self.log_scale * mel) / self.value_max

    def __call__(self, item: Any) -> torch.Tensor:
        return self.spectrogram(self.waveform(item))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "audio", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioPreprocessing":
        return cls(**{k: v for k, v in data.items() if k != "kind"})


class _ConvBlock(nn.Module):
    """Two 3x3 convolutions (no bias), each followed by batch norm and ReLU; optional 2x2 max pooling."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool = pool
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class SpectrogramCNN(nn.Module):
    """Log-mel spectrogram ``(N, frames, n_mels)`` -> embedding ``(N, channels[-1])``: conv blocks, the mean over
    frequency, the maximum over time (so a sound anywhere in the clip counts)."""

    def __init__(self, channels: Sequence[int] = (64, 128, 256, 512)) -> None:
        super().__init__()
        widths = [1, *channels]
        self.blocks = nn.ModuleList(
            _ConvBlock(widths[i], widths[i + 1], pool=i < len(channels) - 1) for i in range(len(channels)))
        self.num_features = int(channels[-1])

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(spectrogram))

    def feature_map(self, spectrogram: torch.Tensor) -> torch.Tensor:
        """``(N, frames, bands)`` -> the last block's map ``(N, C, frames', bands')``."""
        x = spectrogram.unsqueeze(1)
        for block in self.blocks:
            x = block(x)
        return x

    @staticmethod
    def pool(feature_map: torch.Tensor) -> torch.Tensor:
        """Mean over frequency, then max over time: ``(N, C, T, F)`` -> ``(N, C)``."""
        return feature_map.mean(dim=3).amax(dim=2)


class SpectrogramBackbone(Backbone):
    """An audio network on log-mel spectrograms and the preprocessing that makes them from a clip (``model`` has
    ``num_features``; ``preprocessing`` has ``waveform``, ``spectrogram``, ``to_dict`` and is called on a clip)."""

    modality = "audio"

    def __init__(self, model: nn.Module, name: str, preprocessing: Any) -> None:
        super().__init__(name)
        self.model = model
        self.num_features = model.num_features
        self.audio_preprocessing = preprocessing

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.audio_preprocessing.to_dict()

    def waveform(self, item: Any) -> np.ndarray:
        return self.audio_preprocessing.waveform(item)

    def spectrogram(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.audio_preprocessing.spectrogram(wave)

    def prepare(self, item: Any) -> torch.Tensor:
        return self.audio_preprocessing(item)

    def collate(self, prepared: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(prepared))

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch)


class AudioCNNBackbone(SpectrogramBackbone):
    """A :class:`SpectrogramCNN` and its :class:`AudioPreprocessing`."""

    def feature_map(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model.feature_map(batch)

    def pool_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.model.pool(feature_map)

    def layer_groups(self) -> list[nn.Module]:
        return list(self.model.blocks)


def build_aisfx(pretrained: bool = True, clip_seconds: float | None = None, **_: Any) -> Backbone:
    from transferkit.backbones import packaged
    from transferkit.errors import BackboneError

    preprocessing = AudioPreprocessing() if clip_seconds is None else AudioPreprocessing(clip_seconds=float(clip_seconds))
    if not math.isfinite(preprocessing.clip_seconds) or preprocessing.clip_seconds < 0.1:
        raise BackboneError(f"option 'clip_seconds' must be at least 0.1 seconds; got {clip_seconds!r}.")
    model = SpectrogramCNN()
    if pretrained:
        weights = packaged.aisfx_state_dict()
        target = model.state_dict()
        if set(weights) != set(target):
            missing = sorted(set(target) - set(weights))[:3]
            raise BackboneError(f"the aisfx weights do not fit the network (missing {missing}); reinstall aisfx==0.1.2 "
                                f"and delete {packaged.aisfx_cache_path()}.")
        for key, tensor in weights.items():
            if tuple(tensor.shape) != tuple(target[key].shape):
                raise BackboneError(f"aisfx tensor {key} is {tuple(tensor.shape)}, the network needs "
                                    f"{tuple(target[key].shape)}; reinstall aisfx==0.1.2.")
        model.load_state_dict(weights, strict=True)
    return AudioCNNBackbone(model.eval(), "aisfx", preprocessing)


# --- transformers audio encoders (hf:MODEL_ID or a local folder) ----------------------------------------------

#: transformers model types read as audio encoders (the folder's feature extractor prepares their input).
HF_AUDIO_TYPES = frozenset({"wav2vec2", "wav2vec2-conformer", "wav2vec2-bert", "hubert", "wavlm", "data2vec-audio",
                            "unispeech", "unispeech-sat", "sew", "sew-d", "audio-spectrogram-transformer",
                            "whisper"})


class HFAudioBackbone(Backbone):
    """A transformers audio encoder (wav2vec2, HuBERT, WavLM, AST, the Whisper encoder, ...) and its feature
    extractor: clips are resampled to the extractor's rate, fitted to ``clip_seconds`` by the length policy of
    :mod:`transferkit.data.audio`, turned into the extractor's input (samples or a spectrogram); features are the
    mean of the encoder's last hidden states over time."""

    modality = "audio"

    def __init__(self, model: nn.Module, feature_extractor: Any, name: str, clip_seconds: float = 2.3) -> None:
        super().__init__(name)
        self.encoder = model.get_encoder() if hasattr(model, "get_encoder") and model.config.is_encoder_decoder \
            else model
        self.feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.clip_seconds = float(clip_seconds)
        self.input_name = feature_extractor.model_input_names[0]
        config = model.config
        self.num_features = int(getattr(config, "hidden_size", None) or getattr(config, "d_model"))

    @property
    def preprocessing(self) -> dict[str, Any]:
        return {"kind": "audio", "source": "transformers", "sample_rate": self.sample_rate,
                "clip_seconds": self.clip_seconds, "input": self.input_name}

    def waveform(self, item: Any) -> np.ndarray:
        from transferkit.data.audio import fit_length, load_waveform

        samples = int(round(self.clip_seconds * self.sample_rate))
        wave = fit_length(load_waveform(item, self.sample_rate), samples, step=max(1, self.sample_rate // 100))
        return np.ascontiguousarray(wave, dtype=np.float32)

    def spectrogram(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The extractor's input for one clip: samples ``(samples,)`` or a spectrogram ``(frames, bands)``."""
        values = np.asarray(wave, dtype=np.float32)
        inputs = self.feature_extractor(values, sampling_rate=self.sample_rate, return_tensors="pt")
        return inputs[self.input_name][0]

    def prepare(self, item: Any) -> torch.Tensor:
        return self.spectrogram(self.waveform(item))

    def collate(self, prepared: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(prepared))

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.encoder(**{self.input_name: batch}).last_hidden_state.mean(dim=1)

    def layer_groups(self) -> list[nn.Module]:
        """The input encoder (convolutions or patch embeddings), each transformer layer, then the rest."""
        from transferkit.backbones.text import _uncovered

        first = next((getattr(self.encoder, n) for n in ("feature_extractor", "embeddings", "conv1")
                      if isinstance(getattr(self.encoder, n, None), nn.Module)), None)
        body = getattr(self.encoder, "encoder", self.encoder)
        layers = getattr(body, "layers", None) or getattr(body, "layer", None)
        groups: list[nn.Module] = ([first] if first is not None else []) + list(layers or [])
        covered = {id(p) for g in groups for p in g.parameters()}
        return groups + _uncovered(self.encoder, covered)


def is_hf_audio_folder(folder: str) -> bool:
    """Whether a local transformers folder holds an audio model (by ``config.json``'s ``model_type``)."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return config.get("model_type") in HF_AUDIO_TYPES


def build_hf_audio(name: str, model_id: str, *, pretrained: bool, clip_seconds: float | None = None,
                   **_: Any) -> Backbone:
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
    from transformers.utils import logging as hf_logging

    from transferkit.errors import BackboneError

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    try:
        extractor = AutoFeatureExtractor.from_pretrained(model_id)
        model = AutoModel.from_pretrained(model_id) if pretrained else \
            AutoModel.from_config(AutoConfig.from_pretrained(model_id))
    except (OSError, ValueError) as exc:
        raise BackboneError(
            f"backbone '{name}' could not be loaded as an audio model ({type(exc).__name__}: {exc}); give a folder "
            "with config.json, the weights and preprocessor_config.json (the feature extractor)."
        ) from exc
    return HFAudioBackbone(model.eval(), extractor, name, 2.3 if clip_seconds is None else float(clip_seconds))
