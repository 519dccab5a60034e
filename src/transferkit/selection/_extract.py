"""Pooled features and source-classifier logits of a backbone in one pass over the data, both through the cache.

The features are stored under the backbone's usual cache key (so ``fit`` and the linear probe reuse them), the
logits under a key derived from it. Only examples missing from either are run, each once.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from dataclasses import dataclass

import numpy as np

from transferkit.backbones.base import Backbone
from transferkit.data.dataset import Dataset
from transferkit.features.cache import FeatureCache
from transferkit.features.extract import run_backbone
from transferkit.features.sharded import extract_features_sharded


@dataclass
class Extraction:
    """Features ``(N, D)``, source logits ``(N, Z)`` or ``None``, and what it cost."""

    features: np.ndarray
    source_logits: np.ndarray | None
    computed: int
    from_cache: int
    seconds: float


def source_logits_key(backbone: Backbone) -> str:
    """Cache key of a backbone's source-classifier logits (distinct from its feature key)."""
    return hashlib.blake2b(f"{backbone.cache_key()}:source_logits".encode(), digest_size=16).hexdigest()


def _shares_trunk(backbone: Backbone) -> bool:
    """Whether the timm fast path computes exactly ``forward_features`` and ``source_logits`` of this backbone."""
    from transferkit.backbones.vision import TimmBackbone

    return (isinstance(backbone, TimmBackbone)
            and type(backbone).forward_features is TimmBackbone.forward_features
            and type(backbone).source_logits is TimmBackbone.source_logits)


# Per backbone: whether its source logits are its classifier applied to its pooled features (checked once).
_HEAD_ON_FEATURES: "weakref.WeakKeyDictionary[Backbone, bool]" = weakref.WeakKeyDictionary()


def _classifier_on_features(backbone: Backbone, batch):
    """The timm classifier if ``source_logits(x) == classifier(forward_features(x))`` for this backbone (checked
    on two examples of the first batch, in eval mode), else ``None``."""
    import torch

    classifier = backbone.model.get_classifier() if hasattr(backbone.model, "get_classifier") else None
    if not isinstance(classifier, torch.nn.Module):
        return None
    if backbone not in _HEAD_ON_FEATURES:
        sample = batch[:2]
        reference = backbone.source_logits(sample)
        mapped = classifier(backbone.forward_features(sample))
        scale = float(reference.abs().max()) + 1.0
        _HEAD_ON_FEATURES[backbone] = bool(mapped.shape == reference.shape
                                           and torch.allclose(mapped, reference, rtol=1e-5, atol=1e-5 * scale))
    return classifier if _HEAD_ON_FEATURES[backbone] else None


def features_and_logits(backbone: Backbone, batch):
    """``[features | source logits]`` for one batch, shape ``(n, D + Z)``; the network trunk runs once.

    For timm backbones the features come from the same (fast, frozen) path as ordinary feature extraction and
    the logits from the classifier applied to them; otherwise each output runs on its own.
    """
    import torch

    if _shares_trunk(backbone):
        classifier = _classifier_on_features(backbone, batch)
        if classifier is not None:
            fast = getattr(backbone, "inference_features", backbone.forward_features)
            features = fast(batch)
            return torch.cat([features.float(), classifier(features).float()], dim=1)
        model = backbone.model
        trunk = model.forward_features(batch)
        features, logits = model.forward_head(trunk, pre_logits=True), model.forward_head(trunk)
    else:
        features, logits = backbone.forward_features(batch), backbone.source_logits(batch)
    return torch.cat([features.float(), logits.float()], dim=1)


def extract(backbone: Backbone, dataset: Dataset, *, with_logits: bool, cache: FeatureCache | None,
            batch_size: int = 64, device: str = "auto", num_workers: int = 0, progress: bool = True,
            runtime: str = "auto", processes: int = 1) -> Extraction:
    """Features of every example of ``dataset``, and its source logits when ``with_logits`` (needs a source head;
    PyTorch in this process computes both, whatever ``runtime`` and ``processes`` say)."""
    start = time.perf_counter()
    run = dict(batch_size=batch_size, device=device, num_workers=num_workers, progress=progress)
    if not with_logits:
        from transferkit.features.extract import ExtractionStats

        stats = ExtractionStats()
        features = extract_features_sharded(backbone, dataset, cache=cache, stats=stats, runtime=runtime,
                                            processes=processes, **run)
        return Extraction(features, None, stats.computed, stats.from_cache, time.perf_counter() - start)
    width = backbone.num_features
    if cache is None:
        both = run_backbone(backbone, dataset, output=features_and_logits, **run)
        return Extraction(both[:, :width], both[:, width:], len(dataset), 0, time.perf_counter() - start)
    keys = dataset.item_keys()
    feature_key, logit_key = backbone.cache_key(), source_logits_key(backbone)
    features, feature_hits = cache.lookup(feature_key, keys)
    logits, logit_hits = cache.lookup(logit_key, keys)
    missing = np.flatnonzero(~(feature_hits & logit_hits))
    computed = 0
    if len(missing):
        first_of: dict[str, int] = {}
        for i in missing:
            first_of.setdefault(keys[i], int(i))
        unique = np.fromiter(first_of.values(), dtype=np.int64)
        both = run_backbone(backbone, dataset.subset(unique), output=features_and_logits, **run)
        unique_keys = [keys[i] for i in unique]
        cache.store(feature_key, unique_keys, both[:, :width], meta=backbone.describe())
        cache.store(logit_key, unique_keys, both[:, width:], meta={**backbone.describe(), "output": "source_logits"})
        row_of = {key: row for row, key in enumerate(unique_keys)}
        rows = [row_of[keys[i]] for i in missing]
        if features is None:
            features = np.zeros((len(dataset), width), dtype=np.float32)
        if logits is None:
            logits = np.zeros((len(dataset), both.shape[1] - width), dtype=np.float32)
        features[missing] = both[rows, :width]
        logits[missing] = both[rows, width:]
        computed = len(unique)
    return Extraction(features, logits, computed, len(dataset) - len(missing), time.perf_counter() - start)
