"""The one interface every backbone answers, whatever its family (timm CNN, transformers encoder, ...).

A backbone turns raw examples into a ``(N, num_features)`` tensor of pooled features. It also says how it wants
its input prepared (``preprocessing``, a JSON-able dict that is part of the feature-cache key), which groups of
layers it has from input to output (for freezing and per-layer learning rates), and, where it kept one, the
logits of its source classifier (ImageNet for the EfficientNets; used by LEEP).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

import torch
from torch import nn


class Backbone(nn.Module):
    """Base class. Subclasses set ``modality``, ``num_features`` and implement the abstract methods."""

    modality: str = ""
    num_features: int = 0

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._weights_digest: str | None = None

    # --- input preparation -------------------------------------------------------------------------------
    def prepare(self, item: Any) -> Any:
        """One raw example (a PIL image or a text) -> what :meth:`collate` stacks. Runs in data-loader workers."""
        return item

    def collate(self, prepared: Sequence[Any]) -> Any:
        """A list of prepared examples -> one model input batch."""
        raise NotImplementedError

    @property
    def preprocessing(self) -> dict[str, Any]:
        """How inputs are prepared, as JSON-able data (saved with models, part of the cache key)."""
        raise NotImplementedError

    # --- model ---------------------------------------------------------------------------------------------
    def forward_features(self, batch: Any) -> torch.Tensor:
        """Pooled features, shape ``(N, num_features)``."""
        raise NotImplementedError

    def forward(self, batch: Any) -> torch.Tensor:
        return self.forward_features(batch)

    def feature_map(self, batch: Any) -> torch.Tensor:
        """The last spatial feature map before pooling, ``(N, C, H, W)`` (what Grad-CAM weighs); backbones without
        one (transformers encoders) raise NotImplementedError."""
        raise NotImplementedError(f"backbone '{self.name}' has no spatial feature map")

    def pool_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_features` from :meth:`feature_map`'s output: ``(N, C, H, W)`` -> ``(N, num_features)``."""
        raise NotImplementedError(f"backbone '{self.name}' has no spatial feature map")

    def layer_groups(self) -> list[nn.Module]:
        """Groups of layers from input to output (e.g. stem, stages, head); each parameter is in exactly one."""
        raise NotImplementedError

    @property
    def has_source_head(self) -> bool:
        return False

    def source_logits(self, batch: Any) -> torch.Tensor:
        """Logits of the pretrained source classifier, shape ``(N, source classes)``."""
        raise NotImplementedError(f"backbone '{self.name}' keeps no source classifier")

    def batch_to(self, batch: Any, device: torch.device | str) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        return batch

    # --- identity ------------------------------------------------------------------------------------------
    def weights_digest(self) -> str:
        """A hash of every parameter and buffer: two backbones with equal digests compute the same function."""
        if self._weights_digest is None:
            digest = hashlib.blake2b(digest_size=16)
            for key, tensor in sorted(self.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._weights_digest = digest.hexdigest()
        return self._weights_digest

    def invalidate_digest(self) -> None:
        """Call after changing the weights (fine-tuning) so that cached features are not reused."""
        self._weights_digest = None

    def cache_key(self) -> str:
        """Key of this backbone's features in the cache: its weights and its preprocessing."""
        text = json.dumps({"weights": self.weights_digest(), "preprocessing": self.preprocessing}, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()

    def describe(self) -> dict[str, Any]:
        """What a saved model records about its backbone (enough to rebuild it from the registry)."""
        described = {"name": self.name, "modality": self.modality, "num_features": self.num_features,
                     "preprocessing": self.preprocessing}
        changes = getattr(self, "architecture_changes", None)  # layers shrunk by structured pruning
        return {**described, "architecture_changes": changes} if changes else described
