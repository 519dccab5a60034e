"""The feature cache: a frozen backbone never runs twice on the same input; damaged entries are never read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.backbones import create_backbone
from transferkit.data import from_arrays
from transferkit.features import ExtractionStats, FeatureCache, extract_features


class CountingBackbone:
    """Wraps a backbone's forward_features to count the examples it really runs on."""

    def __init__(self, backbone):
        self.seen = 0
        original = backbone.forward_features

        def counted(batch):
            out = original(batch)
            self.seen += out.shape[0]
            return out

        backbone.forward_features = counted


@pytest.fixture
def text_backbone(tiny_text_model: Path):
    return create_backbone(str(tiny_text_model))


def _texts(n: int, offset: int = 0):
    return from_arrays([f"example sentence number {i}" for i in range(offset, offset + n)],
                       ["a" if i % 2 else "b" for i in range(offset, offset + n)])


def test_second_run_does_no_forward_pass(text_backbone, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    counter = CountingBackbone(text_backbone)
    data = _texts(10)
    first = extract_features(text_backbone, data, cache=cache, progress=False)
    assert counter.seen == 10
    stats = ExtractionStats()
    second = extract_features(text_backbone, data, cache=cache, progress=False, stats=stats)
    assert counter.seen == 10 and stats.computed == 0 and stats.from_cache == 10
    np.testing.assert_array_equal(first, second)


def test_subsets_and_new_examples(text_backbone, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    counter = CountingBackbone(text_backbone)
    full = extract_features(text_backbone, _texts(10), cache=cache, progress=False)
    # a re-ordered subset comes entirely from the cache
    subset = _texts(10).subset([7, 2, 5])
    np.testing.assert_array_equal(extract_features(text_backbone, subset, cache=cache, progress=False), full[[7, 2, 5]])
    assert counter.seen == 10
    # overlapping data computes only what is new
    extract_features(text_backbone, _texts(10, offset=5), cache=cache, progress=False)
    assert counter.seen == 15


def test_cached_equals_uncached(text_backbone, tmp_path: Path) -> None:
    data = _texts(6)
    uncached = extract_features(text_backbone, data, cache=None, progress=False)
    cached = extract_features(text_backbone, data, cache=FeatureCache(tmp_path / "c"), progress=False)
    np.testing.assert_allclose(cached, uncached, atol=1e-5)


def test_repeated_examples_run_once(text_backbone, tmp_path: Path) -> None:
    counter = CountingBackbone(text_backbone)
    data = from_arrays(["same text"] * 5 + ["other"], ["a"] * 5 + ["b"])
    features = extract_features(text_backbone, data, cache=FeatureCache(tmp_path / "c"), progress=False)
    assert counter.seen == 2
    assert np.allclose(features[0], features[4])


def test_damaged_or_partial_files_are_ignored(text_backbone, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    data = _texts(4)
    good = extract_features(text_backbone, data, cache=cache, progress=False)
    folder = tmp_path / "cache" / text_backbone.cache_key()
    (folder / "shard-0000-garbage.npz").write_bytes(b"this is not a zip file")  # e.g. a crash mid-copy
    (folder / "tmpabc.tmp").write_bytes(b"\x00" * 100)  # a crash mid-write leaves only a temp file
    counter = CountingBackbone(text_backbone)
    again = extract_features(text_backbone, data, cache=cache, progress=False)
    assert counter.seen == 0
    np.testing.assert_array_equal(good, again)


def test_pickled_shard_is_not_loaded(text_backbone, tmp_path: Path) -> None:
    """A shard holding pickled objects is refused (allow_pickle=False) and the examples are recomputed."""
    cache = FeatureCache(tmp_path / "cache")
    data = _texts(3)
    folder = tmp_path / "cache" / text_backbone.cache_key()
    folder.mkdir(parents=True)
    keys = np.array(data.item_keys(), dtype=object)
    np.savez(folder / "shard-evil.npz", keys=keys, features=np.zeros((3, 4), dtype=object))
    counter = CountingBackbone(text_backbone)
    features = extract_features(text_backbone, data, cache=cache, progress=False)
    assert counter.seen == 3 and features.shape == (3, text_backbone.num_features)


def test_different_weights_do_not_share_entries(tiny_text_model: Path, tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    pretrained = create_backbone(str(tiny_text_model))
    random = create_backbone(f"random:{tiny_text_model}")
    data = _texts(3)
    a = extract_features(pretrained, data, cache=cache, progress=False)
    counter = CountingBackbone(random)
    b = extract_features(random, data, cache=cache, progress=False)
    assert counter.seen == 3 and not np.allclose(a, b)
