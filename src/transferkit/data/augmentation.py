"""Training-time augmentation: named presets for images (torchvision transforms v2) and token-level options for
text. Nothing here needs a network.

Images go through three stages: colour operations on the decoded picture (before normalisation), the backbone's
own preprocessing (resize, normalise), then geometric operations and random erasing on the normalised tensor (where
a zero fill is the mean colour). Mixup and cutmix mix whole batches and turn labels into class probabilities.

| preset | images | texts |
|---|---|---|
| none | nothing | nothing |
| light | horizontal flip, random resized crop (scale 0.8-1) | 5 % of tokens masked |
| medium | + crop scale 0.5-1, rotation up to 10 degrees, colour jitter 0.2 | 10 % masked, 5 % dropped |
| heavy | + crop scale 0.25-1, rotation 15, colour jitter 0.3, TrivialAugment, random erasing (p 0.25) | 15 % masked, 10 % dropped |

Audio (:class:`AudioAugmentation`, on the samples then the log-mel spectrogram): light = gain +-3 dB, time shift up
to 10 %; medium = gain +-6 dB, white noise at 30-50 dB SNR, shift 20 %, one time and one frequency mask of up to 10 %;
heavy = gain +-9 dB, noise at 20-40 dB SNR, shift 30 %, two masks of each kind up to 15 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import torch

from transferkit.errors import ConfigError

PRESETS = ("none", "light", "medium", "heavy")
AutoAugment = Literal["randaugment", "trivialaugment"]


@dataclass(frozen=True)
class ImageAugmentation:
    """Image augmentation settings. Probabilities in [0, 1]; ``rotation`` in degrees; ``crop_scale`` the area range
    of random resized crops (``None``: no crop)."""

    hflip: float = 0.0
    crop_scale: tuple[float, float] | None = None
    rotation: float = 0.0
    color_jitter: float = 0.0
    auto_augment: AutoAugment | None = None
    erasing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["crop_scale"] = list(self.crop_scale) if self.crop_scale else None
        return data

    @property
    def is_identity(self) -> bool:
        return self == ImageAugmentation()

    def build(self, prepare: Callable[[Any], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
        """A per-example transform: raw item -> augmented, preprocessed tensor (``prepare`` is the backbone's)."""
        from torchvision.transforms import v2

        before: list[Any] = []
        if self.color_jitter:
            c = self.color_jitter
            before.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c))
        if self.auto_augment == "randaugment":
            before.append(v2.RandAugment())
        elif self.auto_augment == "trivialaugment":
            before.append(v2.TrivialAugmentWide())
        after: list[Any] = []
        if self.crop_scale:
            after.append(_SameSizeResizedCrop(self.crop_scale))
        if self.hflip:
            after.append(v2.RandomHorizontalFlip(self.hflip))
        if self.rotation:
            after.append(v2.RandomRotation(self.rotation))
        if self.erasing:
            after.append(v2.RandomErasing(self.erasing, value=0))
        return ImageTrainTransform(prepare, v2.Compose(before) if before else None, v2.Compose(after) if after else None)


class _SameSizeResizedCrop(torch.nn.Module):
    """Random resized crop back to the input's own size (whatever the backbone's input size is)."""

    def __init__(self, scale: tuple[float, float]) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import v2

        return v2.RandomResizedCrop(tuple(image.shape[-2:]), scale=self.scale, antialias=True)(image)


class ImageTrainTransform:
    """Decode, colour-augment, preprocess, then geometric augmentation (picklable for loader workers)."""

    def __init__(self, prepare: Callable[[Any], torch.Tensor], before: Callable | None, after: Callable | None) -> None:
        self.prepare, self.before, self.after = prepare, before, after

    def __call__(self, item: Any) -> torch.Tensor:
        from transferkit.backbones.vision import load_image_item

        image = load_image_item(item)
        if self.before is not None:
            image = self.before(image)
        tensor = self.prepare(image)
        if self.after is not None:
            tensor = self.after(tensor).contiguous()
        return tensor


@dataclass(frozen=True)
class TokenAugmentation:
    """Token-level text augmentation: ``mask`` replaces that fraction of the (non-special) tokens by the mask token
    (or the unknown token); ``drop`` removes that fraction from attention (as if deleted)."""

    mask: float = 0.0
    drop: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_identity(self) -> bool:
        return self.mask == 0 and self.drop == 0

    def build(self, tokenizer: Any) -> "TokenTransform":
        mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
        return TokenTransform(self.mask, self.drop, int(mask_id), sorted(set(tokenizer.all_special_ids)))


class TokenTransform:
    """Batch transform on tokenised text: ``(inputs dict, targets) -> (inputs dict, targets)``."""

    def __init__(self, mask: float, drop: float, mask_id: int, special_ids: list[int]) -> None:
        self.mask, self.drop, self.mask_id = mask, drop, mask_id
        self.special_ids = torch.tensor(special_ids, dtype=torch.int64)

    def __call__(self, inputs: dict[str, torch.Tensor], targets: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        ids, attention = inputs["input_ids"], inputs["attention_mask"]
        ordinary = (attention == 1) & ~torch.isin(ids, self.special_ids)
        out = dict(inputs)
        if self.mask:
            masked = ordinary & (torch.rand(ids.shape) < self.mask)
            out["input_ids"] = ids.masked_fill(masked, self.mask_id)
        if self.drop:
            dropped = ordinary & (torch.rand(ids.shape) < self.drop)
            out["attention_mask"] = attention.masked_fill(dropped, 0)
        return out, targets


class BatchMixing:
    """Mixup and/or cutmix on an image batch (one of them, at random, when both are on); labels become
    probabilities ``(N, classes)``."""

    def __init__(self, num_classes: int, mixup: float, cutmix: float) -> None:
        from torchvision.transforms import v2

        choices = []
        if mixup:
            choices.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
        if cutmix:
            choices.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        self.transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(images, targets)


IMAGE_PRESETS = {
    "none": ImageAugmentation(),
    "light": ImageAugmentation(hflip=0.5, crop_scale=(0.8, 1.0)),
    "medium": ImageAugmentation(hflip=0.5, crop_scale=(0.5, 1.0), rotation=10, color_jitter=0.2),
    "heavy": ImageAugmentation(hflip=0.5, crop_scale=(0.25, 1.0), rotation=15, color_jitter=0.3,
                               auto_augment="trivialaugment", erasing=0.25),
}
TEXT_PRESETS = {
    "none": TokenAugmentation(),
    "light": TokenAugmentation(mask=0.05),
    "medium": TokenAugmentation(mask=0.10, drop=0.05),
    "heavy": TokenAugmentation(mask=0.15, drop=0.10),
}


@dataclass(frozen=True)
class AudioAugmentation:
    """Audio augmentation settings, applied per example on the backbone's fitted, peak-normalised samples and then
    on its log-mel spectrogram. ``gain_db``: a random gain in +-``gain_db`` decibels; ``noise_snr_db``: white noise
    at a random signal-to-noise ratio between this and 20 dB more (``None``: no noise); ``shift``: a circular time
    shift of up to this fraction of the clip; ``time_mask`` / ``freq_mask``: ``masks`` bands of up to this fraction
    of the frames / mel bands set to zero (SpecAugment's masking)."""

    gain_db: float = 0.0
    noise_snr_db: float | None = None
    shift: float = 0.0
    time_mask: float = 0.0
    freq_mask: float = 0.0
    masks: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_identity(self) -> bool:
        return self == AudioAugmentation()

    def build(self, backbone: Any) -> "AudioTrainTransform":
        """A per-example transform: raw item -> augmented spectrogram (``backbone`` has ``waveform`` and
        ``spectrogram``, as :class:`transferkit.backbones.audio.AudioCNNBackbone`)."""
        return AudioTrainTransform(backbone, self)


class AudioTrainTransform:
    """Item -> samples -> gain, noise, shift -> spectrogram -> masks (runs in data-loader workers: picklable)."""

    def __init__(self, backbone: Any, augmentation: AudioAugmentation) -> None:
        self.backbone = backbone
        self.augmentation = augmentation

    def __call__(self, item: Any) -> torch.Tensor:
        a = self.augmentation
        wave = torch.as_tensor(self.backbone.waveform(item))
        if a.gain_db:
            wave = wave * 10.0 ** (float(torch.empty(1).uniform_(-a.gain_db, a.gain_db)) / 20.0)
        if a.noise_snr_db is not None:
            snr = float(torch.empty(1).uniform_(a.noise_snr_db, a.noise_snr_db + 20.0))
            power = float(wave.pow(2).mean())
            if power > 0:
                wave = wave + torch.randn_like(wave) * (power / 10.0 ** (snr / 10.0)) ** 0.5
        if a.shift:
            limit = int(a.shift * len(wave))
            if limit:
                wave = torch.roll(wave, int(torch.randint(-limit, limit + 1, (1,))))
        spec = self.backbone.spectrogram(wave)
        # masks apply to spectrograms (frames, bands); an encoder that takes the samples themselves gets none
        for _ in range(a.masks if (a.time_mask or a.freq_mask) and spec.dim() == 2 else 0):
            for axis, fraction in ((0, a.time_mask), (1, a.freq_mask)):
                width = int(torch.randint(0, int(fraction * spec.shape[axis]) + 1, (1,)))
                if width:
                    start = int(torch.randint(0, spec.shape[axis] - width + 1, (1,)))
                    spec = spec.clone()
                    spec.narrow(axis, start, width).zero_()
        return spec


AUDIO_PRESETS = {
    "none": AudioAugmentation(),
    "light": AudioAugmentation(gain_db=3.0, shift=0.1),
    "medium": AudioAugmentation(gain_db=6.0, noise_snr_db=30.0, shift=0.2, time_mask=0.1, freq_mask=0.1),
    "heavy": AudioAugmentation(gain_db=9.0, noise_snr_db=20.0, shift=0.3, time_mask=0.15, freq_mask=0.15, masks=2),
}


def augmentation_for(modality: str, preset: str, auto_augment: str | None = None) -> ImageAugmentation | TokenAugmentation:
    """The augmentation of ``preset`` for ``modality``; ``auto_augment`` (images) overrides the preset's choice."""
    if preset not in PRESETS:
        raise ConfigError(f"option 'augment' must be one of {', '.join(PRESETS)}; got {preset!r}.")
    from transferkit.modalities import get_modality

    return get_modality(modality).augmentation(preset, auto_augment)
