"""Audio decoding with the conversions every audio backbone needs: any file format libsndfile reads, any sample
rate and channel count in; mono float32 at the backbone's sample rate and a fixed length out.

Length policy (one rule for every audio backbone, stated in its preprocessing as ``clip_seconds``): a clip shorter
than the backbone's window is padded with silence at its end; a longer clip is cropped to the window of that length
with the most energy (for a sound event, the part where it happens), searched in steps of 10 ms. Clips shorter than
:data:`MIN_SECONDS` are refused before any backbone runs (too little sound to classify), as are silent clips.

``soundfile`` (libsndfile) decodes and ``soxr`` resamples; both are imported when a clip is read, so that this
module costs nothing at ``import transferkit``.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferkit.errors import DataError

#: File extensions read as audio (libsndfile's formats; MP3 needs libsndfile 1.1 or newer, which soundfile ships).
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".aifc", ".mp3",
                            ".au", ".snd", ".caf", ".w64", ".rf64"})
#: Audio files libsndfile cannot decode: skipped with a warning that says to convert them.
UNSUPPORTED_AUDIO_SUFFIXES = frozenset({".m4a", ".aac", ".wma", ".amr", ".mid", ".midi"})
#: Clips shorter than this (seconds) are refused: a 10 ms click carries too little to classify.
MIN_SECONDS = 0.05
#: A clip whose largest absolute sample is below this (about -80 dBFS) is silent.
SILENCE_PEAK = 1e-4
#: Clips longer than this (seconds) are refused when checked: decoding them whole would take gigabytes of memory.
MAX_SECONDS = 3600.0


@dataclass
class AudioClip:
    """Decoded audio held in memory (an upload to the service, a synthetic sample): ``samples`` shaped
    ``(frames,)`` or ``(frames, channels)``, float in -1..1, at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int
    name: str = "clip"

    @property
    def seconds(self) -> float:
        return len(self.samples) / float(self.sample_rate)


def load_soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:  # pragma: no cover - the audio extra is part of the standard install
        raise DataError("reading audio needs the 'soundfile' package: pip install 'transferkit[audio]'.") from exc
    return soundfile


def wav_truncation(path: str | Path) -> str | None:
    """A problem description when a RIFF/WAVE file's ``data`` chunk claims more bytes than the file holds (a copy
    cut short: libsndfile reads such a file without complaint, shorter than it was), else ``None``."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[:4] not in (b"RIFF", b"RIFX") or header[8:12] != b"WAVE":
                return None
            endian = "<" if header[:4] == b"RIFF" else ">"
            size = Path(path).stat().st_size
            position = 12
            while position + 8 <= size:
                handle.seek(position)
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                chunk_id, chunk_size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
                if chunk_id == b"data":
                    available = size - position - 8
                    if chunk_size != 0xFFFFFFFF and chunk_size > available:
                        return (f"is truncated: its header announces {chunk_size:,} bytes of samples but the file holds "
                                f"{available:,}; copy it again from its source or remove it")
                    return None
                position += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return None
    return None


def check_audio_file(path: str | Path) -> str | None:
    """A problem description if ``path`` cannot be used as a clip, else ``None``: unreadable, empty (no bytes or no
    samples), truncated, not decodable, shorter than :data:`MIN_SECONDS`, longer than :data:`MAX_SECONDS` or silent.
    The whole clip is decoded (silence and decoding errors past the header are only found that way)."""
    soundfile = load_soundfile()
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is an empty (zero-byte) file; remove it or replace it with the recording"
    truncated = wav_truncation(path)
    if truncated:
        return truncated
    try:
        info = soundfile.info(str(path))
    except PermissionError:
        return "cannot be read (permission denied); give read access (chmod u+r) or remove it"
    except Exception as exc:  # libsndfile raises its own error type for every broken file
        return f"is not a readable audio file ({brief(exc)}); convert it to WAV or FLAC, or remove it"
    if info.frames <= 0 or info.samplerate <= 0:
        return "holds no samples (an empty recording); remove it or replace it with the recording"
    seconds = info.frames / info.samplerate
    if seconds > MAX_SECONDS:
        return f"is {seconds / 60:.0f} minutes long, more than the {MAX_SECONDS / 60:.0f} allowed; cut it into clips first"
    if seconds < MIN_SECONDS:
        return (f"is {seconds * 1000:.0f} ms long, shorter than the {MIN_SECONDS * 1000:.0f} ms a clip needs; record a "
                "longer clip or remove it")
    try:
        peak = 0.0
        for block in soundfile.blocks(str(path), blocksize=1 << 18, dtype="float32", always_2d=True):
            if block.size:
                peak = max(peak, float(np.max(np.abs(block))))
    except Exception as exc:
        return f"cannot be decoded past its header ({brief(exc)}); it is damaged: re-export it or remove it"
    if not np.isfinite(peak):
        return "holds non-finite samples (NaN or infinity); re-export it"
    if peak < SILENCE_PEAK:
        return "is silent (every sample below -80 dBFS); remove it, or record the sound it should hold"
    return None


def brief(exc: Exception) -> str:
    """libsndfile's message without the file object or path it repeats ("Error opening <...>: ")."""
    import re

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^Error opening (<[^>]*>|'[^']*'|\S+): ", "", text)[:200]


def read_audio(item: Any) -> tuple[np.ndarray, int]:
    """A dataset item (a path, or an :class:`AudioClip`) as float32 samples ``(frames, channels)`` and its rate."""
    if isinstance(item, AudioClip):
        samples = np.asarray(item.samples, dtype=np.float32)
        return (samples[:, None] if samples.ndim == 1 else samples), int(item.sample_rate)
    soundfile = load_soundfile()
    try:
        samples, rate = soundfile.read(str(item), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataError(f"{item}: not a readable audio file ({brief(exc)}); convert it to WAV or FLAC.") from exc
    return samples, int(rate)


def decode_audio_bytes(data: bytes, name: str) -> AudioClip:
    """Bytes of an uploaded audio file as an :class:`AudioClip`; a DataError naming ``name`` when undecodable."""
    soundfile = load_soundfile()
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataError(f"{name}: not a readable audio file ({brief(exc)}); send WAV, FLAC, OGG or MP3.") from exc
    return AudioClip(samples, int(rate), name)


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``(frames, channels)`` -> ``(frames,)``: the mean of the channels (mix-down)."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Mono samples from ``rate`` to ``target_rate`` Hz (soxr, high quality); unchanged when the rates agree."""
    if rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(np.ascontiguousarray(samples, dtype=np.float32), rate, target_rate, quality="HQ").astype(
        np.float32, copy=False)


def load_waveform(item: Any, sample_rate: int) -> np.ndarray:
    """An item as mono float32 samples at ``sample_rate`` Hz, shape ``(frames,)``."""
    samples, rate = read_audio(item)
    return resample(to_mono(samples), rate, sample_rate)


def fit_length(wave: np.ndarray, length: int, step: int) -> np.ndarray:
    """``wave`` as exactly ``length`` samples: padded with silence at its end when shorter, else the window of
    ``length`` samples with the most energy, its start searched every ``step`` samples."""
    if len(wave) == length:
        return wave
    if len(wave) < length:
        return np.pad(wave, (0, length - len(wave)))
    energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
    starts = np.arange(0, len(wave) - length + 1, max(1, step))
    totals = energy[starts + length] - energy[starts]
    start = int(starts[int(np.argmax(totals))])
    return wave[start:start + length]


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """Mono samples as a 16-bit PCM WAV file's bytes (for a report's ``<audio>`` player)."""
    soundfile = load_soundfile()
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
