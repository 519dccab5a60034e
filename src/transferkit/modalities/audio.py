"""Audio: clip files (WAV, FLAC, OGG, AIFF, MP3, ...; any sample rate and channel count) in a folder per class or a
table with a path column, or decoded clips (:class:`~transferkit.data.audio.AudioClip`, e.g. service uploads).

Every clip is checked before any backbone runs (unreadable, empty, truncated, too short, silent: named with the
fix; see :func:`transferkit.data.audio.check_audio_file`). Backbones resample and mix down as they need, and fit
each clip to their window by the length policy of :mod:`transferkit.data.audio` (pad with silence, or keep the
loudest window).
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Sequence

import numpy as np

from transferkit.modalities.base import Modality, RawEncoder, check_files

#: The raw baseline's and the report's view of a clip: 16 kHz, 25 ms windows every 10 ms, 64 mel bands.
RAW_PREPROCESSING = {"sample_rate": 16000, "clip_seconds": 2.3, "n_fft": 400, "hop_length": 160, "n_mels": 64,
                     "f_min": 20.0, "f_max": 8000.0}
#: Seconds of a clip that the report's player keeps (the loudest part), at 16 kHz mono.
EXAMPLE_SECONDS = 3.0


def _raw_preprocessing() -> Any:
    from transferkit.backbones.audio import AudioPreprocessing

    return AudioPreprocessing(**RAW_PREPROCESSING)


class RawLogMel(RawEncoder):
    """Clips -> statistics of their log-mel spectrogram (16 kHz, 64 bands, the backbones' length policy on a 2.3 s
    window): per band the mean, standard deviation, minimum and maximum over time and the mean absolute change from
    frame to frame: ``(N, 320)``."""

    standardize = True
    description = "log-mel statistics + logistic regression"

    def fit(self, dataset: Any) -> "RawLogMel":
        self.preprocessing_ = _raw_preprocessing()
        return self

    def transform(self, dataset: Any) -> np.ndarray:
        rows = []
        for item in dataset.items:
            spec = self.preprocessing_(item).numpy()  # (frames, bands)
            change = np.abs(np.diff(spec, axis=0)).mean(axis=0)
            rows.append(np.concatenate([spec.mean(0), spec.std(0), spec.min(0), spec.max(0), change]))
        return np.stack(rows).astype(np.float32)


class AudioModality(Modality):
    name = "audio"
    description = "audio clips: a folder per class, a table of clip paths, or clip files (WAV, FLAC, OGG, MP3, ...)"
    default_backbone = "aisfx"
    input_hint = "a folder of audio clips (one sub-folder per class) or a table with a clip-path column"
    items_are_files = True
    strings_are_items = False
    mixes_batches = False
    augment_summary = "gain, noise, time shift, time and frequency masking"
    word_variants = False
    channels_last = False
    prefers_static_quantization = True
    service_request = "files"
    onnx_inputs = ("spectrogram",)

    def item_keys(self, items: Sequence[Any]) -> list[str]:
        import hashlib

        from transferkit.data.audio import AudioClip
        from transferkit.data.dataset import file_digest

        keys = []
        for item in items:
            if isinstance(item, AudioClip):
                digest = hashlib.blake2b(np.ascontiguousarray(item.samples, dtype=np.float32).tobytes(), digest_size=16)
                digest.update(str(item.sample_rate).encode())
                keys.append(digest.hexdigest())
            else:
                keys.append(file_digest(item))
        return keys

    def check_items(self, dataset: Any) -> None:
        from transferkit.data.audio import check_audio_file

        check_files(dataset, check_audio_file, "audio")  # decoded clips and arrays are not files: nothing to check

    def files_dataset(self, paths: Sequence[str], origin: str) -> Any:
        from transferkit.data.sources import audio_files

        return audio_files(paths, origin)

    def backbone_options(self, *, max_length: int | None = None, image_size: int | None = None) -> dict[str, Any]:
        """None: audio backbones take their window from their preprocessing; ``image_size`` (an image option) is
        ignored with a warning (``max_length`` always has a value, the text default, so it is ignored silently)."""
        if image_size:
            import warnings

            warnings.warn(f"option 'image_size' (--image-size {image_size}) applies to image backbones; the data is "
                          "audio, so it is ignored.", UserWarning, stacklevel=2)
        return {}

    def options_from_preprocessing(self, preprocessing: dict[str, Any]) -> dict[str, Any]:
        return {"clip_seconds": preprocessing["clip_seconds"]}

    def raw_encoder(self, **options: Any) -> RawLogMel:
        return RawLogMel()

    def augmentation(self, preset: str, auto_augment: str | None = None) -> Any:
        from transferkit.data.augmentation import AUDIO_PRESETS
        from transferkit.errors import ConfigError

        if auto_augment:
            raise ConfigError("option 'auto_augment' (RandAugment / TrivialAugment) applies to images, not audio; "
                              "use --augment light / medium / heavy.")
        return AUDIO_PRESETS[preset]

    def training_inputs(self, backbone: Any, augmentation: Any, batch_mixing: Any = None
                        ) -> tuple[Callable[[Any], Any], Any]:
        return (backbone.prepare if augmentation.is_identity else augmentation.build(backbone)), None

    def example(self, item: Any) -> dict[str, Any]:
        """A spectrogram thumbnail (PNG) and the loudest :data:`EXAMPLE_SECONDS` as a 16 kHz WAV, both data URIs;
        ``{}`` when the clip cannot be read any more (the report then shows its row id only)."""
        import io

        from PIL import Image

        from transferkit.data.audio import fit_length, load_waveform, wav_bytes

        try:
            wave = load_waveform(item, 16000)
            spec = _raw_preprocessing()(item).numpy()
        except Exception:  # a clip that moved or broke since training: no example, not a failed fit
            return {}
        low, high = float(spec.min()), float(spec.max())
        pixels = ((spec - low) / (high - low + 1e-9) * 255).astype(np.uint8).T[::-1]  # low frequencies at the bottom
        image = Image.fromarray(np.ascontiguousarray(pixels)).resize((160, 64), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "PNG", optimize=True)
        clip = fit_length(wave, int(EXAMPLE_SECONDS * 16000), 160) if len(wave) > EXAMPLE_SECONDS * 16000 else wave
        return {"spectrogram": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
                "audio": "data:audio/wav;base64," + base64.b64encode(wav_bytes(clip, 16000)).decode("ascii")}

    def _one_html(self, entry: dict, escape: Callable[[Any], str]) -> str:
        row = escape(entry.get("row_id", ""))
        parts = []
        spec, sound = entry.get("spectrogram"), entry.get("audio")
        if isinstance(spec, str) and spec.startswith("data:image/png;base64,"):
            parts.append(f'<img class="thumb" alt="{row}" title="{row}" src="{escape(spec)}">')
        if isinstance(sound, str) and sound.startswith("data:audio/wav;base64,"):
            parts.append(f'<audio controls preload="none" src="{escape(sound)}" title="{row}"></audio>')
        if not parts:
            return f"<span class='muted'>{row}</span>"
        return f"<figure class='clip'>{''.join(parts)}<figcaption class='muted'>{row}</figcaption></figure>"

    def examples_html(self, entries: Sequence[dict], escape: Callable[[Any], str]) -> str:
        return f'<div class="thumbs">{"".join(self._one_html(e, escape) for e in entries)}</div>'

    def example_cell_html(self, entry: dict, escape: Callable[[Any], str]) -> str:
        return self._one_html(entry, escape)

    def decode_upload(self, data: bytes, name: str, settings: Any) -> Any:
        """An uploaded clip: its size checked, then its duration from the header before any sample is decoded."""
        import io

        from transferkit.data.audio import MIN_SECONDS, AudioClip, brief, load_soundfile
        from transferkit.serving.app import refuse

        if len(data) > settings.max_file_bytes:
            raise refuse(413, f"{name}: file is {len(data):,} bytes; the limit is {settings.max_file_bytes:,} bytes.")
        if not data:
            raise refuse(422, f"{name}: the file is empty; send the clip's bytes.")
        soundfile = load_soundfile()
        try:
            with soundfile.SoundFile(io.BytesIO(data)) as handle:
                rate, frames = int(handle.samplerate), int(handle.frames)
                seconds = frames / rate if rate else 0.0
                if seconds > settings.max_audio_seconds:
                    raise refuse(413, f"{name}: clip is {seconds:.1f} s long; the limit is "
                                     f"{settings.max_audio_seconds:g} s. Send a shorter clip.")
                samples = handle.read(dtype="float32", always_2d=True)
        except Exception as exc:
            if getattr(exc, "status_code", None):
                raise
            raise refuse(422, f"{name}: not a readable audio file ({brief(exc)}); send WAV, FLAC, OGG or MP3.") from None
        if len(samples) < MIN_SECONDS * rate:
            raise refuse(422, f"{name}: clip is {1000 * len(samples) / rate:.0f} ms long, shorter than the "
                             f"{MIN_SECONDS * 1000:.0f} ms a clip needs; send a longer clip.")
        if not np.isfinite(samples).all():
            raise refuse(422, f"{name}: the clip holds non-finite samples (NaN or infinity); re-export it.")
        return AudioClip(samples, rate, name)

    def warm_up_item(self) -> Any:
        from transferkit.data.audio import AudioClip

        rng = np.random.default_rng(0)
        return AudioClip((0.1 * rng.standard_normal(16000)).astype(np.float32), 16000, "warm-up")

    def explainer(self) -> Any:
        from transferkit.explanations.grid import GridExplainer

        return GridExplainer(channels=False, fill="min")

    def sample_items(self, count: int, seed: int = 0) -> tuple[list[Any], str]:
        from transferkit.data.audio import AudioClip

        rng = np.random.default_rng(seed)
        items = []
        for i in range(count):
            rate = int(rng.choice([8000, 16000, 22050, 44100, 48000]))
            frames = int(rng.uniform(0.2, 5.0) * rate)
            channels = int(rng.integers(1, 3))
            items.append(AudioClip((0.2 * rng.standard_normal((frames, channels))).astype(np.float32), rate,
                                   f"sample-{i}"))
        return items, "random noise clips of varied length, sample rate and channel count"
