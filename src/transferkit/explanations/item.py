"""One raw item explained by one method, start to end: prepared, predicted, attributed, drawn and measured against
random orders. What the service (``POST /explain``) and the report's explanations section do per input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transferkit.explanations.base import Rendering


@dataclass
class ItemExplanation:
    """``proba``: what the model predicts ``(classes,)``; ``predicted`` and ``target``: class indices (the target
    is the explained class); ``attribution`` as drawn; ``measured``: :func:`faithfulness.measure`'s figures
    (``None`` when not measured)."""

    proba: np.ndarray
    predicted: int
    target: int
    attribution: np.ndarray
    rendering: Rendering
    measured: dict[str, Any] | None

    def faithfulness_figures(self) -> dict[str, Any] | None:
        """The input's deletion and insertion areas, and the mean areas of the random orders."""
        if self.measured is None:
            return None
        figures: dict[str, Any] = {"units": self.measured["units"]}
        for name in ("deletion", "insertion"):
            randoms = self.measured[f"random_{name}"]
            figures[name] = self.measured[name]
            figures[f"random_{name}"] = float(np.mean(randoms)) if randoms else None
        return figures


def explain_item(explainer: Any, network: Any, item: Any, method: str, options: Any, *, target: int | None = None,
                 title: str = "", device: Any = None) -> ItemExplanation:
    """Explain ``network``'s output for ``item`` by ``method``: class ``target`` (``None``: the predicted class).
    ``options`` is an :class:`~transferkit.explanations.config.ExplainConfig` (steps, samples, random orders, seed,
    batch size; no faithfulness measured when its ``faithfulness`` is false)."""
    from transferkit.explanations import faithfulness

    prepared = explainer.prepare(network.backbone, item)
    if device is not None:
        prepared.batch = explainer.to(prepared.batch, device)
    proba = network.predict(prepared.batch)[0]
    predicted = int(np.argmax(proba))
    chosen = predicted if target is None else int(target)
    attribution = explainer.attribute(network, prepared, chosen, method, options)
    rendering = explainer.render(prepared, attribution, title)
    measured = None
    if options.faithfulness:
        measured = faithfulness.measure(network.predict, explainer.units(prepared, attribution), chosen,
                                        random_orders=options.random_orders, seed=options.seed,
                                        batch_size=options.batch_size)
    return ItemExplanation(proba, predicted, chosen, attribution, rendering, measured)
