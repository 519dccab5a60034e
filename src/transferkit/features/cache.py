"""The on-disk feature cache: a frozen backbone never runs twice on the same input.

Layout: ``<root>/<backbone cache key>/`` holds shards, each a pair of ``.npy`` files: ``shard-<id>.keys.npy``
(content hashes of the examples, shape ``(n,)``) and ``shard-<id>.features.npy`` (``(n, d)`` float32). The backbone
key covers its weights and its preprocessing; the example key covers its content, so any subset, fold or
re-ordering of data already seen is served from the cache. Features are read memory-mapped: a lookup reads the rows
it needs, never a whole shard, and extraction writes a shard per chunk of examples (see
:func:`transferkit.features.extract.extract_features`), so memory stays flat at any data size and an interrupted
extraction keeps what it finished. Each file is written to a temporary file and renamed into place, the features
last: a crash mid-write leaves no shard that could be read. Files are loaded with ``allow_pickle=False``; shards of
earlier versions (one ``.npz`` file each) are still read.
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
            shards = [(path, path.with_name(path.name[: -len(".features.npy")] + ".keys.npy"))
                      for path in folder.glob("shard-*.features.npy")]
            shards += [(path, path) for path in folder.glob("shard-*.npz")]
            for shard, keys_file in sorted(shards):
                try:
                    keys = _read_keys(shard, keys_file)
                except Exception:  # a foreign, damaged or half-written file is ignored, never trusted
                    continue
                for row, key in enumerate(keys.tolist()):
                    index[key] = (shard, row)
        self._index[backbone_key] = index
        return index

    def lookup(self, backbone_key: str, keys: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Cached features for ``keys`` in order (rows of misses left as zeros) and a boolean mask of hits.

        Returns ``(None, all False)`` when nothing is cached. Only the rows asked for are read.
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
            block = _open_features(shard)
            if features is None:
                features = np.zeros((len(keys), block.shape[1]), dtype=np.float32)
            positions, rows = (np.asarray(v, dtype=np.int64) for v in zip(*pairs))
            features[positions] = block[rows]
            del block
        return features, hits

    def store(self, backbone_key: str, keys: Sequence[str], features: np.ndarray, meta: dict | None = None) -> Path:
        """Write one shard (keys, then features; each atomically); returns the features file's path."""
        folder = self._folder(backbone_key)
        folder.mkdir(parents=True, exist_ok=True)
        if meta is not None and not (folder / "backbone.json").exists():
            atomic_write_json(folder / "backbone.json", meta)
        stem = f"shard-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        _atomic_save(folder, folder / f"{stem}.keys.npy", np.asarray(list(keys), dtype="U32"))
        path = folder / f"{stem}.features.npy"
        _atomic_save(folder, path, np.asarray(features, dtype=np.float32))
        self._index.pop(backbone_key, None)
        return path

    def size_bytes(self) -> int:
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for pattern in ("*.npz", "*.npy") for p in self.root.rglob(pattern))


def _atomic_save(folder: Path, path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_keys(shard: Path, keys_file: Path) -> np.ndarray:
    """The keys of a shard, checked against its features (2-D float32, one row per key)."""
    if shard.suffix == ".npz":
        with np.load(shard, allow_pickle=False) as data:
            keys, features = data["keys"], data["features"]
            shape, dtype = features.shape, features.dtype
    else:
        keys = np.load(keys_file, allow_pickle=False)
        features = np.load(shard, mmap_mode="r", allow_pickle=False)
        shape, dtype = features.shape, features.dtype
        del features
    if keys.ndim != 1 or keys.dtype.kind != "U" or len(shape) != 2 or shape[0] != len(keys) or dtype != np.float32:
        raise ValueError(f"{shard}: not a feature shard")
    return keys


def _open_features(shard: Path) -> np.ndarray:
    """A shard's features: memory-mapped (``.npy``) or read whole (a ``.npz`` of an earlier version)."""
    if shard.suffix == ".npz":
        with np.load(shard, allow_pickle=False) as data:
            return data["features"]
    return np.load(shard, mmap_mode="r", allow_pickle=False)

