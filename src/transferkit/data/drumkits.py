"""Labelled drum hits from the Hydrogen drum kits (Debian's ``hydrogen-drumkits``, free licences per kit; see each
kit's ``drumkit.xml``): 14 kits recorded in different rooms and set-ups, each instrument's samples named in its
``drumkit.xml``. The instrument names give six classes (kick, snare, tom, hihat, crash, ride); percussion outside
them (claps, cowbells, djembes, ...) is left out. Split by kit, the test kits are recordings a model never heard.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

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
