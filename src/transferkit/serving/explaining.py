"""The explanations of ``POST /explain`` (the route is in :mod:`transferkit.serving.app`, beside ``/predict``, whose
request reading and limits it shares).

Each input is explained with its modality's default method for its predicted class
(the building blocks of :mod:`transferkit.explanations`) on the service's PyTorch model (also when it predicts with ONNX
Runtime). An answer per input: the prediction, the attribution (a PNG heat map as base64, or words with weights) and
that input's faithfulness figures.
"""

from __future__ import annotations

import base64
from typing import Any

#: Random orders each input's deletion curve is compared with (fewer than the CLI's 5: an answer is awaited).
RANDOM_ORDERS = 3


def explain_items(predictor: Any, items: list[Any], names: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """``(method, answers)`` for decoded, checked request items (``names``: how the request names each)."""
    import numpy as np

    from transferkit.explanations import faithfulness
    from transferkit.explanations.config import ExplainConfig
    from transferkit.explanations.network import explained_network
    from transferkit.modalities import get_modality

    model = predictor.model
    explainer = get_modality(model.modality).explainer()
    network = explained_network(model).eval()
    options = ExplainConfig(random_orders=RANDOM_ORDERS)
    method = [m for m in explainer.methods if m not in explainer.available(network)][0]
    answers = []
    for index, (name, item) in enumerate(zip(names, items)):
        prepared = explainer.prepare(network.backbone, item)
        proba = network.predict(prepared.batch)[0]
        target = int(np.argmax(proba))
        attribution = explainer.attribute(network, prepared, target, method, options)
        rendering = explainer.render(prepared, attribution, f"{name}: {model.classes[target]}")
        measured = faithfulness.measure(network.predict, explainer.units(prepared, attribution), target,
                                        random_orders=RANDOM_ORDERS, seed=0, batch_size=options.batch_size)
        answer = {"index": index, "input": name, "label": str(model.classes[target]),
                  "probability": float(proba[target]), **rendering.extra,
                  "faithfulness": {"units": measured["units"], "deletion": measured["deletion"],
                                   "random_deletion": float(np.mean(measured["random_deletion"]))
                                   if measured["random_deletion"] else None}}
        if rendering.png is not None:
            answer["heatmap_png"] = base64.b64encode(rendering.png).decode("ascii")
        answers.append(answer)
    return method, answers
