"""Labelled drum hits from the Hydrogen drum kits (Debian's ``hydrogen-drumkits``, free licences per kit; see each
kit's ``drumkit.xml``): 14 kits recorded in different rooms and set-ups, each instrument's samples named in its
``drumkit.xml``. The instrument names give six classes (kick, snare, tom, hihat, crash, ride); percussion outside
them (claps, cowbells, djembes, ...) is left out. Split by kit, the test kits are recordings a model never heard.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

#: Where Debian installs the kits (``apt-get install hydrogen-drumkits``; ``make audio-data``).
DRUMKITS = Path("/usr/share/hydrogen/data/drumkits")
#: Class -> a pattern of instrument names (lower case), tried in this order (a "crash/ride" is a crash).
CLASSES = (
    ("kick", re.compile(r"\bkick\b|bass ?drum|bassdrum")),
    ("snare", re.compile(r"snare")),
    ("tom", re.compile(r"\btom")),
    ("hihat", re.compile(r"hi-?hat|\bhat\b|\bhh\b|\bohh\b")),
    ("crash", re.compile(r"crash")),
    ("ride", re.compile(r"\bride\b|ride-")),
)


def instrument_class(name: str) -> str | None:
    """The class of an instrument name from a ``drumkit.xml`` (``None``: not one of the six)."""
    lowered = name.lower()
    return next((label for label, pattern in CLASSES if pattern.search(lowered)), None)


def drum_clips(root: Path = DRUMKITS) -> list[tuple[str, str, Path]]:
    """Every labelled sample of every kit below ``root``: ``(kit, class, path)``, sorted; ``[]`` when none."""
    found: list[tuple[str, str, Path]] = []
    for manifest in sorted(root.glob("*/drumkit.xml")):
        tree = ElementTree.parse(manifest).getroot()
        namespace = tree.tag[: tree.tag.index("}") + 1] if tree.tag.startswith("{") else ""
        seen: set[Path] = set()
        for instrument in tree.iter(namespace + "instrument"):
            label = instrument.findtext(namespace + "name")
            label = instrument_class(label) if label else None
            if label is None:
                continue
            for element in instrument.iter(namespace + "filename"):
                path = manifest.parent / (element.text or "")
                if element.text and path.is_file() and path not in seen:
                    seen.add(path)
                    found.append((manifest.parent.name, label, path))
    return sorted(found, key=lambda row: (row[0], row[1], str(row[2])))


def load_drumkit_split(seed: int = 0, test_share: float = 0.3, limit_per_kit: int | None = None,
                       root: Path = DRUMKITS) -> tuple[Any, Any, list[str]]:
    """``(train, test, test kits)``: audio datasets of the labelled hits, whole kits held out as the test set.

    The kits are visited in the order a ``seed``-ed shuffle gives and held out until the test set holds at least
    ``test_share`` of the clips; a kit whose removal would leave the training set without a class is skipped.
    ``limit_per_kit`` keeps at most that many clips of each class of each kit (quick runs). Row ids are
    ``kit/file``. Raises :class:`~transferkit.errors.DataNotFoundError` when no kit is installed under ``root``.
    """
    import numpy as np

    from transferkit.data.dataset import Dataset
    from transferkit.errors import DataNotFoundError

    clips = drum_clips(root)
    if not clips:
        raise DataNotFoundError(f"{root}: no Hydrogen drum kits found; install them with `make audio-data` "
                                "(Debian's hydrogen-drumkits package).")
    if limit_per_kit:
        count: dict[tuple[str, str], int] = {}
        kept = []
        for kit, label, path in clips:
            count[(kit, label)] = count.get((kit, label), 0) + 1
            if count[(kit, label)] <= limit_per_kit:
                kept.append((kit, label, path))
        clips = kept
    classes = {label for _, label, _ in clips}
    test_kits: list[str] = []
    for kit in np.random.default_rng(seed).permutation(sorted({kit for kit, _, _ in clips})):
        if sum(k in test_kits for k, _, _ in clips) >= test_share * len(clips):
            break
        if {label for k, label, _ in clips if k not in test_kits and k != kit} == classes:
            test_kits.append(str(kit))

    def dataset(rows: list[tuple[str, str, Path]], origin: str) -> Any:
        return Dataset("audio", [str(p) for _, _, p in rows], [label for _, label, _ in rows], origin,
                       [f"{kit}/{Path(p).name}" for kit, _, p in rows])

    return (dataset([r for r in clips if r[0] not in test_kits], "drum kits (train)"),
            dataset([r for r in clips if r[0] in test_kits], "drum kits (held-out kits)"), sorted(test_kits))
