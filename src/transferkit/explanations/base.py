"""What a modality's explainer answers (:meth:`transferkit.modalities.base.Modality.explainer` gives one).

An explainer turns one raw item into the backbone's input batch of one, attributes a target output of an
:class:`~transferkit.explanations.network.ExplainedNetwork` to the parts of that input with a named method, splits
the input into *units* (cells of an image or spectrogram, words of a text) that the faithfulness curves remove in turn,
and draws an attribution (a PNG heat map, or highlighted HTML).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Prepared:
    """One item ready to explain: ``batch`` (the backbone's input for one example) and what drawing it needs."""

    batch: Any
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Units:
    """The parts of one input that faithfulness curves remove: their attribution ``scores`` ``(U,)`` and
    ``remove(masks)``, the input batch ``(S, ...)`` with the units where ``masks`` ``(S, U)`` is True removed."""

    scores: np.ndarray
    remove: Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class Rendering:
    """A drawn explanation: a PNG (images, spectrograms) or an HTML fragment (highlighted text), and the JSON
    form of the attribution a user reads (``tokens``: ``[[word, weight], ...]``)."""

    png: bytes | None = None
    html: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Explainer(ABC):
    """One modality's explanations: its methods are :meth:`attributions`, the default first."""

    @property
    def methods(self) -> tuple[str, ...]:
        """The method names offered, the default first."""
        return tuple(self.attributions())

    def available(self, network: Any) -> dict[str, str]:
        """Methods that cannot explain ``network`` -> why (Grad-CAM needs one spatial feature map)."""
        return {}

    @abstractmethod
    def prepare(self, backbone: Any, item: Any) -> Prepared:
        """One raw item as the backbone's input batch of one example."""

    @abstractmethod
    def attributions(self) -> dict[str, Callable[[Any, Prepared, int, Any], np.ndarray]]:
        """Method name -> the function ``(network, prepared, target, options)`` computing its attribution, the
        default first."""

    def attribute(self, network: Any, prepared: Prepared, target: int, method: str, options: Any) -> np.ndarray:
        """The attribution of output ``target`` to the input by ``method``, as drawn: ``(H, W)`` for an image,
        ``(frames, bands)`` for a spectrogram, ``(words,)`` for a text. ``options`` is the run's
        :class:`ExplainConfig`."""
        return self.attributions()[method](network, prepared, target, options)

    @abstractmethod
    def units(self, prepared: Prepared, attribution: np.ndarray) -> Units:
        """The input's removable units and their attribution scores (most important first when sorted)."""

    @abstractmethod
    def render(self, prepared: Prepared, attribution: np.ndarray, title: str) -> Rendering:
        """The explanation drawn for a person."""

    def to(self, batch: Any, device: Any) -> Any:
        import torch

        if isinstance(batch, dict):
            return {k: v.to(device) for k, v in batch.items()}
        return batch.to(device) if isinstance(batch, torch.Tensor) else batch
