"""The on-disk feature cache: a frozen backbone never runs twice on the same input.

Layout: ``<root>/<backbone cache key>/`` holds shards, each one ``.npz`` file with ``keys`` (content hashes of
the examples, shape ``(n,)``) and ``features`` (``(n, d)`` float32). The backbone key covers its weights and its
preprocessing; the example key covers its content, so any subset, fold or re-ordering of data already seen is
served from the cache. Shards are written to a temporary file and renamed into place, so a crash mid-write leaves
no half-written shard that could be read; files are loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from transferkit._io import atomic_write_json


def default_cache_dir() -> Path:
    """The feature cache's default folder: ``features/`` under transferkit's cache root (``TRANSFERKIT_CACHE``)."""
    from transferkit.backbones.packaged import cache_root

    return cache_root() / "features"


class FeatureCache:
    """Features by (backbone key, example key). ``root`` is created on first write."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._index: dict[str, dict[str, tuple[Path, int]]] = {}

    def _folder(self, backbone_key: str) -> Path:
        return self.root / backbone_key

    def _load_index(self, backbone_key: str) -> dict[str, tuple[Path, int]]:
        index: dict[str, tuple[Path, int]] = {}
        folder = self._folder(backbone_key)
        if folder.is_dir():
            for shard in sorted(folder.glob("shard-*.npz")):
                try:
                    with np.load(shard, allow_pickle=False) as data:
                        keys = data["keys"]
                except Exception:  # a foreign or damaged file is ignored, never trusted
                    continue
                for row, key in enumerate(keys.tolist()):
                    index[key] = (shard, row)
        self._index[backbone_key] = index
        return index

    def lookup(self, backbone_key: str, keys: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Cached features for ``keys`` in order (rows of misses left as zeros) and a boolean mask of hits.

        Returns ``(None, all False)`` when nothing is cached.
        """
        index = self._load_index(backbone_key)
        hits = np.fromiter((key in index for key in keys), dtype=bool, count=len(keys))
        if not hits.any():
            return None, hits
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            if hits[position]:
                shard, row = index[key]
                by_shard.setdefault(shard, []).append((position, row))
        features = None
        for shard, pairs in by_shard.items():
            with np.load(shard, allow_pickle=False) as data:
                block = data["features"]
            if features is None:
                features = np.zeros((len(keys), block.shape[1]), dtype=np.float32)
            positions, rows = zip(*pairs)
            features[list(positions)] = block[list(rows)]
        return features, hits

    def store(self, backbone_key: str, keys: Sequence[str], features: np.ndarray, meta: dict | None = None) -> Path:
        """Write one shard atomically; returns its path."""
        folder = self._folder(backbone_key)
        folder.mkdir(parents=True, exist_ok=True)
        if meta is not None and not (folder / "backbone.json").exists():
            atomic_write_json(folder / "backbone.json", meta)
        name = f"shard-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.npz"
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, keys=np.asarray(list(keys), dtype="U32"), features=features.astype(np.float32))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._index.pop(backbone_key, None)
        return folder / name

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*.npz")) if self.root.exists() else 0

