"""The explanations of ``POST /explain`` (the route is in :mod:`transferkit.serving.app`, beside ``/predict``, whose
request reading and limits it shares).

Each input is explained with its modality's default method for its predicted class
(:func:`transferkit.workflows.explain.explain`) on the service's PyTorch model (also when it predicts with ONNX
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
    from transferkit.workflows.explain import explain

    import numpy as np

    method, answers = "", []
    for index, (name, item) in enumerate(zip(names, items)):
        one = np.asarray(item)[None] if hasattr(item, "getbands") else [item]  # a decoded image as a batch of one
        result = explain(predictor.model, one, device=str(predictor.device), random_orders=RANDOM_ORDERS,
                         progress=False)
        method, record, drawn = result.methods[0], result.records[0], result.renderings[0]
        entry = record["methods"][method]
        answer = {"index": index, "input": name, "label": record["label"], "probability": record["probability"],
                  **{k: v for k, v in entry.items() if k != "file"}}
        if drawn[method].png is not None:
            answer["heatmap_png"] = base64.b64encode(drawn[method].png).decode("ascii")
        answers.append(answer)
    return method, answers
