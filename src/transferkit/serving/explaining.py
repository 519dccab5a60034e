"""The explanations of ``POST /explain`` (the route is in :mod:`transferkit.serving.app`, beside ``/predict``, whose
request reading and limits it shares).

Each input is explained for its predicted class, or for the class the request names (``target``), with the method
it names (``method``) or its modality's default (the building blocks of :mod:`transferkit.explanations`), on the
service's PyTorch model (also when it predicts with ONNX Runtime). Both are checked as ``explain`` checks them, before
any work: an unknown method or class is a 422 naming the field. An answer per input: the prediction, the attribution
(a PNG heat map as base64, or words with weights) and that input's faithfulness figures.
"""

from __future__ import annotations

import base64
from typing import Any

#: Random orders each input's deletion curve is compared with (fewer than the CLI's 5: an answer is awaited).
RANDOM_ORDERS = 3


def check_request(predictor: Any, method: str | None, target: str | None, *, where: str) -> tuple[str, int | None]:
    """``(method, target index)`` of a request, checked before any work; a :class:`ConfigError` names the field
    (``where`` says how the request gives it: ``field`` of a JSON body, ``query parameter``)."""
    from transferkit.explanations.choices import choose_methods, target_index
    from transferkit.explanations.network import explained_network
    from transferkit.modalities import get_modality

    model = predictor.model
    explainer = get_modality(model.modality).explainer()
    network = explained_network(model)
    (chosen,) = choose_methods([method] if method is not None else None, explainer, network, model.modality,
                               field=f"{where} 'method'")
    return chosen, target_index(target, model.classes, field=f"{where} 'target'")


def explain_items(predictor: Any, items: list[Any], names: list[str], method: str,
                  target: int | None = None) -> list[dict[str, Any]]:
    """The answers for decoded, checked request items (``names``: how the request names each), explained by
    ``method`` for class ``target`` (``None``: each input's predicted class); :func:`check_request` gives both."""
    from transferkit.explanations.config import ExplainConfig
    from transferkit.explanations.item import explain_item
    from transferkit.explanations.network import explained_network
    from transferkit.modalities import get_modality

    model = predictor.model
    explainer = get_modality(model.modality).explainer()
    network = explained_network(model).eval()
    options = ExplainConfig(random_orders=RANDOM_ORDERS, seed=0)
    answers = []
    for index, (name, item) in enumerate(zip(names, items)):
        explained = explain_item(explainer, network, item, method, options, target=target,
                                 title=name)
        figures = explained.faithfulness_figures() or {}
        answer = {"index": index, "input": name, "label": str(model.classes[explained.predicted]),
                  "probability": float(explained.proba[explained.predicted]),
                  "target": str(model.classes[explained.target]),
                  "target_probability": float(explained.proba[explained.target]), **explained.rendering.extra,
                  "faithfulness": {key: figures.get(key) for key in ("units", "deletion", "random_deletion")}}
        if explained.rendering.png is not None:
            answer["heatmap_png"] = base64.b64encode(explained.rendering.png).decode("ascii")
        answers.append(answer)
    return answers
