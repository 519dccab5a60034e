"""Real drum clips for the audio tests: a few hits per class from Debian's hydrogen-drumkits (`make audio-data`),
read in place and written cut short into the test's folder (nothing is copied into the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.data.drumkits import DRUMKITS, drum_clips

#: Kits the tests take clips from, and the classes.
KITS = ("BJA_Pacific", "ForzeeStereo", "The Black Pearl 1.0")
CLASSES = ("hihat", "kick", "snare")


def require_drumkits() -> None:
    if not DRUMKITS.is_dir():
        pytest.skip(f"{DRUMKITS} is missing: install Debian's hydrogen-drumkits (`make audio-data`)")


def pick_clips(per_class: int, classes=CLASSES, kits=KITS) -> list[tuple[str, Path]]:
    """``per_class`` clips of each class, taken in turn from ``kits``."""
    require_drumkits()
    by_class: dict[str, list[Path]] = {c: [] for c in classes}
    clips = drum_clips()
    for round_ in range(50):
        for kit in kits:
            for label in classes:
                pool = [p for k, c, p in clips if k == kit and c == label]
                if round_ < len(pool) and len(by_class[label]) < per_class:
                    by_class[label].append(pool[round_])
    return [(label, path) for label in classes for path in by_class[label]]


def write_clip(source: Path, target: Path, seconds: float = 0.5) -> Path:
    """The first ``seconds`` of ``source`` written to ``target`` (format by its extension)."""
    import soundfile

    samples, rate = soundfile.read(str(source), dtype="float32", always_2d=True, frames=int(seconds * 48000))
    samples = samples[: int(seconds * rate)]
    target.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(target), samples, rate)
    return target


def write_drum_folder(root: Path, per_class: int = 2, seconds: float = 0.5, classes=CLASSES) -> Path:
    """``root/<class>/<n>.wav`` (every third clip as FLAC): real hits cut to ``seconds``."""
    for i, (label, source) in enumerate(pick_clips(per_class, classes)):
        write_clip(source, root / label / f"{i:02d}.{'flac' if i % 3 == 2 else 'wav'}", seconds)
    return root


def write_drum_table(path: Path, per_class: int = 2, seconds: float = 0.5) -> Path:
    """A CSV (``path,label``) of real hits cut short, the clips in ``path``'s folder under ``clips/``."""
    rows = ["path,label"]
    for i, (label, source) in enumerate(pick_clips(per_class)):
        write_clip(source, path.parent / "clips" / f"{i:02d}.wav", seconds)
        rows.append(f"clips/{i:02d}.wav,{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def tone(seconds: float, rate: int = 16000, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (amplitude * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)
